"""Advertiser identifiers found on a page, and the name cores used to group leads.

``extract_all`` returns every identifier a flagged page shows: phones (mobile
and landline, spaced, hyphenated, full-width or written in Chinese digit
words), WeChat and QQ ids, 统一社会信用代码, 办学许可证号, institution names,
addresses, prices and teacher names, each as (kind, normalised value, raw
text as written, width-folded). Masked numbers, shared service hotlines and generic names
are never returned, since they would merge unrelated sellers.

``extract_identifiers`` and ``lead_key`` are the narrower interface (phones,
WeChat ids, names) the key of a new lead is built from.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from storage.scan import StartChars, finditer_from, finditer_near
from storage.width import width_fold as _width_fold

LEAD_KEY_LENGTH = 255
VALUE_LENGTH = 255

# Kinds that link findings into one lead on a single shared value.
STRONG_KINDS = frozenset({"phone", "wechat", "qq", "uscc", "license", "url"})
KIND_NAMES = {
    "phone": "电话",
    "wechat": "微信",
    "qq": "QQ",
    "uscc": "统一社会信用代码",
    "license": "办学许可证号",
    "name": "机构名称",
    "address": "地址",
    "price": "价格",
    "teacher": "教师",
    "url": "网址",
}

_CN_DIGITS = {**dict.fromkeys("零〇○", "0"), **dict.fromkeys("一幺壹", "1"), **dict.fromkeys("二两贰", "2"),
              **dict.fromkeys("三叁", "3"), **dict.fromkeys("四肆", "4"), **dict.fromkeys("五伍", "5"),
              **dict.fromkeys("六陆", "6"), **dict.fromkeys("七柒", "7"), **dict.fromkeys("八捌", "8"),
              **dict.fromkeys("九玖", "9")}
_CN_RUN = re.compile(rf"[{''.join(_CN_DIGITS)}0-9](?:[ \-]?[{''.join(_CN_DIGITS)}0-9]){{6,}}")

_SEP = r"[ \t\-.]?"
# 11-digit mobile, optionally +86/0086 prefixed, separators between any digits.
_MOBILE = re.compile(rf"(?<![\d*])(?:(?:\+|00)?86{_SEP})?(1[3-9](?:{_SEP}\d){{9}})(?![\d*])")
# Landline with area code: 010-12345678, (0571)8888666, 0755 88886666, 02112345678.
_LANDLINE = re.compile(
    r"(?<![\d*])(?:\((0\d{2,3})\)[ \-]?|(0\d{2,3})[ \-]|(?=0))(\d{7,8}|0\d{9,10})(?![\d*])"
)
# Every _MOBILE match starts with "+", "00", "86" or "1", every _LANDLINE match with "(" or "0"; both
# hold a run of seven digits with at most one separator between two (the 11-digit mobile number, or
# the 7-8 digit subscriber part of a landline), so a text without one holds no phone.
_MOBILE_START = re.compile(r"[+018]")
_LANDLINE_START = re.compile(r"[(0]")
_PHONE_DIGITS = re.compile(r"\d(?:[ \t\-.]?\d){6}")
# Shared service lines that must never link sellers (complaints, banks, 400/800).
_HOTLINE = re.compile(r"^(?:400|800|95\d|1231\d|1234\d|1235\d|110$|120$|119$)")

_WECHAT = re.compile(
    r"(?:微信号?|(?<![A-Za-z0-9])(?:v信|vx|wx|加v)|威信|薇信|徽信)"
    r"[ \t]*(?:号)?[ \t]*[:：]?[ \t]*"
    r"([A-Za-z][A-Za-z0-9_\-]{5,19})(?![A-Za-z0-9_\-])",
    re.IGNORECASE,
)
# The first character of every _WECHAT match (same flags, so case folding is the same).
_WECHAT_START = re.compile("[微vw加威薇徽]", re.IGNORECASE)
# The characters each start class matches, listed for one lookup pass (a test checks every code point).
_STARTS = StartChars({"mobile": "+018", "landline": "(0", "wechat": "微vVwW加威薇徽"})
_QQ_WORDS = ("扣扣", "企鹅")
_QQ_LATIN = re.compile("qq", re.IGNORECASE)  # only "q" and "Q" fold to "q"
_QQ = re.compile(r"(?:(?<![A-Za-z])qq|扣扣|企鹅)(?:号|群)?[ \t]*[:：]?[ \t]*([1-9]\d{4,10})(?!\d)", re.IGNORECASE)
_USCC = re.compile(r"统一社会信用代码[ \t]*[:：]?[ \t]*([0-9A-HJ-NPQRTUWXY]{18})(?![0-9A-Z])", re.IGNORECASE)
_LICENSE = re.compile(r"办学许可证(?:号|编号)?[ \t]*[:：]?[ \t]*([\u4e00-\u9fff]{0,4}\d{6,24})号?")

_CJK = "\u4e00-\u9fff"
_NAME = re.compile(
    rf"[{_CJK}]{{2,12}}(?:教育科技有限公司|有限公司|培训学校|培训中心|学习中心|工作室|学校|中心)(?![园区])"
    rf"|[{_CJK}]{{2,10}}\([{_CJK}]{{2,8}}(?:校区|校區|分校)\)"
)
# Every _NAME match holds one of these, starting at most 19 characters after the match does (at most
# two characters after an earlier one it overlaps, which the anchor search skips).
_NAME_ANCHOR = re.compile("公司|学校|中心|工作室|校区|校區|分校")
_NAME_REACH = 20
# Words an ad puts in front of a name ("欢迎来到XX培训学校") that are not part of it.
_NAME_LEADERS = ("欢迎来到", "欢迎加入", "欢迎咨询", "欢迎", "咨询", "联系", "来到", "报名", "加入", "选择",
                 "我们是", "这里是", "推荐", "本")
_NAME_BREAK = re.compile(r"[是为由的在和与及请到]")
# "考上理想学校" is a goal, not an institution.
_GENERIC_SCHOOL = re.compile(r"(?:理想|重点|名牌|目标|心仪|梦想|好|名|各|其他|所在|全市|全国)学校$")
# "位于市中心", "大学校园": places, not institutions.
_PLACE = re.compile(r"(?:[市城区镇]中心|大学校)$")
_TITLE_SPLIT = re.compile(r"\s*[-_|｜–—·•]+\s*")
_TITLE_NAME = re.compile(
    rf"[{_CJK}A-Za-z0-9]{{1,12}}(?:教育|学堂|课堂|培训|学校|工作室|中心|机构|书院|学院|学苑|网校|堂|馆|家政)"
    rf"(?:\([{_CJK}]{{2,8}}\))?"
)

_ADDRESS = re.compile(
    rf"(?:[{_CJK}]{{2,4}}[省市])?[{_CJK}]{{2,4}}[区县][{_CJK}0-9]{{1,10}}?(?:大道|路|街|巷|弄|道)"
    rf"\d{{1,5}}号(?:[{_CJK}A-Za-z0-9]{{0,10}}?\d{{1,3}}(?:楼|层|室))?"
)
# Every _ADDRESS match holds "号" at most 27 characters after its start.
_ADDRESS_ANCHOR = re.compile("号")
_ADDRESS_REACH = 27
_PRICE = re.compile(
    r"(原价|现价|特价|优惠价)?[:：]?[ \t]*[¥￥]?(\d{1,6}(?:\.\d{1,2})?)[ \t]*元(?:[ \t]*/[ \t]*([\u4e00-\u9fff\d]{1,6}))?"
)
_SURNAMES = set("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚"
                "卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_TEACHER = re.compile(rf"([{_CJK}]{{1,3}})老师")

_FIELD_WECHAT = {"wechat", "weixin", "wx", "微信", "微信号"}
_FIELD_NAME = {"institution", "organization", "org", "company", "机构", "机构名称", "公司"}
_WECHAT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{5,19}")

# Legal-form and trade words stripped from the end of a name before comparing.
_NAME_SUFFIXES = (
    "有限责任公司", "股份有限公司", "有限公司", "分公司", "公司", "集团", "教育信息咨询", "教育科技", "教育咨询",
    "文化传播", "文化传媒", "文化艺术", "信息咨询", "网络科技", "信息技术", "科技", "咨询", "服务", "管理",
    "培训学校", "培训中心", "培训机构", "培训", "学校", "校区", "分校", "中心", "教育", "文化", "传播",
    "传媒", "工作室", "机构",
)
_CITY_PREFIX = re.compile(rf"^[{_CJK}]{{1,8}}?[省市]")
# Words that on their own name a kind of business, not one advertiser.
_GENERIC_WORDS = frozenset(
    "思维 学习 课程 帮助 个人 用户 会员 客服 服务 首页 培训 教育 辅导 家教 补习 作业 托管 晚托 午托 数学 语文 英语 "
    "物理 化学 少儿 儿童 幼儿 小学 初中 高中 中小学 名师 名校 优秀 专业 学科 兴趣 素质 艺术 美术 音乐 舞蹈 编程 "
    "阅读 写作 考研 一对一 精品 在线 网络 我们 本 联系 关于 平台 学生 学员 家长".split()
)


@dataclass(frozen=True)
class Identifier:
    kind: str
    value: str
    raw: str


@dataclass
class Identifiers:
    phones: list[str] = field(default_factory=list)
    wechat: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _fold_chinese_digits(text: str) -> str:
    def convert(match: re.Match[str]) -> str:
        run = match.group(0)
        if not any(c in _CN_DIGITS for c in run):
            return run
        return "".join(_CN_DIGITS.get(c, c) for c in run)

    return _CN_RUN.sub(convert, text)


def _normalise(text: str) -> str:
    # Chinese digit folding maps one character to one, so spans stay aligned
    # with _width_fold(text) and the raw form can be cut from it.
    return _fold_chinese_digits(_width_fold(text))


def _add(target: list[str], value: str) -> None:
    if value and value not in target:
        target.append(value)


def _landline(match: re.Match[str]) -> str | None:
    area = match.group(1) or match.group(2)
    number = match.group(3)
    if area is None:
        # Written without a separator: 010 and 02x are three-digit area codes.
        area_length = 3 if number[1] in "12" else 4
        area, number = number[:area_length], number[area_length:]
    if not 7 <= len(number) <= 8 or number.startswith("0"):
        return None
    return f"{area}-{number}"


def _phone_matches(text: str, raw_text: str | None = None,
                   starts: dict[str, list[int]] | None = None) -> list[tuple[str, str]]:
    """(normalised number, raw text) for every phone in normalised ``text``; ``raw_text`` is the same
    text before Chinese digit folding (same length), ``starts`` its ``_STARTS.positions`` if known."""
    raw_text = text if raw_text is None else raw_text
    found: list[tuple[int, str, str]] = []
    taken: list[tuple[int, int]] = []
    if _PHONE_DIGITS.search(text) is None:
        return []
    starts = _STARTS.positions(text) if starts is None else starts
    for match in finditer_from(_MOBILE, _MOBILE_START, text, starts["mobile"]):
        found.append((match.start(), re.sub(r"\D", "", match.group(1)), raw_text[slice(*match.span())]))
        taken.append(match.span())
    for match in finditer_from(_LANDLINE, _LANDLINE_START, text, starts["landline"]):
        if any(start < match.end() and match.start() < end for start, end in taken):
            continue
        number = _landline(match)
        if number is not None:
            found.append((match.start(), number, raw_text[slice(*match.span())]))
    return [(number, raw) for _, number, raw in sorted(found) if not _HOTLINE.match(number)]


def _clean_name(name: str) -> str | None:
    name = _NAME_BREAK.split(name)[-1]
    stripped = True
    while stripped:
        stripped = False
        for leader in _NAME_LEADERS:
            if name.startswith(leader) and len(name) - len(leader) >= 4:
                name, stripped = name[len(leader):], True
                break
    if _GENERIC_SCHOOL.search(name) or _PLACE.search(name) or is_generic_name(name):
        return None
    return name


def _names(text: str) -> list[str]:
    names: list[str] = []
    for match in finditer_near(_NAME, _NAME_ANCHOR, text, _NAME_REACH, after=2):
        name = _clean_name(match.group(0))
        if name is not None:
            _add(names, name)
    return names


def _title_names(title: str) -> list[str]:
    names: list[str] = []
    for segment in _TITLE_SPLIT.split(_normalise(title).strip()):
        if _TITLE_NAME.fullmatch(segment) and not is_generic_name(segment):
            _add(names, segment)
    return names


def extract_identifiers(text: str, fields: dict[str, list[str]]) -> Identifiers:
    """Phones, WeChat ids and institution names in ``text`` and selector ``fields``.

    Values of fields named like ``wechat`` or ``institution`` count as such
    directly; every field value is also searched like page text. Field values
    come first, since selectors point at the advertiser's own contact block.
    """
    return _identifiers_in(_chunks(text, fields))


_Scan = tuple[list[tuple[str, str]], list[re.Match[str]]]


def _scan(chunk: str, raw_chunk: str) -> _Scan:
    """The phones (normalised, raw) and _WECHAT matches of one chunk, shared by both passes over it."""
    at = _STARTS.positions(chunk)
    return _phone_matches(chunk, raw_chunk, at), list(finditer_from(_WECHAT, _WECHAT_START, chunk, at["wechat"]))


def _identifiers_in(chunks: list[tuple[str, str, str]], scans: list[_Scan] | None = None) -> Identifiers:
    ids = Identifiers()
    for n, (chunk, raw_chunk, label) in enumerate(chunks):
        if label in _FIELD_WECHAT and _WECHAT_ID.fullmatch(chunk.strip()):
            _add(ids.wechat, chunk.strip().lower())
        elif label in _FIELD_NAME and chunk.strip():
            _add(ids.names, chunk.strip())
        phones, wechat = scans[n] if scans is not None else _scan(chunk, raw_chunk)
        for phone, _raw in phones:
            _add(ids.phones, phone)
        for match in wechat:
            _add(ids.wechat, match.group(1).lower())
        for name in _names(chunk):
            _add(ids.names, name)
    return ids


def _chunks(text: str, fields: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(normalised, width-folded, field label) for each field value, then the text."""
    pieces = [(raw, key.strip().lower()) for key, values in fields.items() for raw in values]
    pieces.append((text, ""))
    folded = [(_width_fold(raw), label) for raw, label in pieces]
    return [(_fold_chinese_digits(wide), wide, label) for wide, label in folded]


def extract_all(title: str, text: str, fields: dict[str, list[str]] | None = None) -> list[Identifier]:
    """Every identifier on a page, in order of first appearance, without duplicates."""
    return extract_page(title, text, fields)[0]


def _has(chunk: str, words: tuple[str, ...]) -> bool:
    """Cheap substring gate: a pattern that needs one of ``words`` cannot match a chunk without them."""
    return any(word in chunk for word in words)


def extract_page(title: str, text: str,
                 fields: dict[str, list[str]] | None = None) -> tuple[list[Identifier], Identifiers]:
    """``extract_all`` and ``extract_identifiers(title + text, fields)`` from one normalisation pass."""
    found: dict[tuple[str, str], Identifier] = {}

    def add(kind: str, value: str, raw: str) -> None:
        value = value.strip()[:VALUE_LENGTH]
        known = found.get((kind, value))
        # One raw form per value and page; for names the registered one (…公司) wins.
        if value and (known is None or (kind == "name" and "公司" in raw and "公司" not in known.raw)):
            found[(kind, value)] = Identifier(kind, value, raw.strip())

    for name in _title_names(title):
        add("name", name_core(name) or name, name)
    chunks = _chunks(f"{title}\n{text}", fields or {})
    scans = [_scan(chunk, raw_chunk) for chunk, raw_chunk, _label in chunks]
    ids = _identifiers_in(chunks, scans)
    for name in ids.names:
        if name_core(name):
            add("name", name_core(name), name)
    for (chunk, _raw_chunk, _label), (phones, wechat) in zip(chunks, scans):
        for number, raw in phones:
            add("phone", number, raw)
        for match in wechat:
            add("wechat", match.group(1).lower(), match.group(0))
        if _has(chunk, _QQ_WORDS) or (("q" in chunk or "Q" in chunk) and _QQ_LATIN.search(chunk)):
            for match in _QQ.finditer(chunk):
                add("qq", match.group(1), match.group(0))
        if "统一社会信用代码" in chunk:
            for match in _USCC.finditer(chunk):
                add("uscc", match.group(1).upper(), match.group(0))
        if "办学许可证" in chunk:
            for match in _LICENSE.finditer(chunk):
                add("license", match.group(1), match.group(0))
        if "区" in chunk or "县" in chunk:
            for match in finditer_near(_ADDRESS, _ADDRESS_ANCHOR, chunk, _ADDRESS_REACH):
                add("address", _CITY_PREFIX.sub("", match.group(0)), match.group(0))
        if "元" in chunk:
            for match in _PRICE.finditer(chunk):
                label, amount, unit = match.groups()
                value = f"{label if label == '原价' else ''}{amount}元" + (f"/{unit}" if unit else "")
                add("price", value, match.group(0))
        if "老师" in chunk:
            for match in _TEACHER.finditer(chunk):
                teacher = match.group(1)[-2:] if match.group(1)[-2:-1] in _SURNAMES else match.group(1)[-1:]
                if teacher[:1] in _SURNAMES:
                    add("teacher", f"{teacher}老师", match.group(0))
    for number in ids.wechat:
        add("wechat", number, number)
    return list(found.values()), ids


@lru_cache(maxsize=1)
def _t2s():  # noqa: ANN202 - opencc has no type hints
    from opencc import OpenCC

    return OpenCC("t2s")


@lru_cache(maxsize=4096)
def name_core(name: str) -> str:
    """The distinctive part of an institution name, for fuzzy comparison.

    NFKC, traditional to simplified, lower case; parenthesised branch markers
    (（东城校区）), punctuation, a leading city or province and trailing legal
    and trade words (有限公司, 教育科技, 培训学校, 中心 ...) removed. Returns ""
    for a generic name that cannot tell advertisers apart.
    """
    text = _t2s().convert(unicodedata.normalize("NFKC", name)).lower()
    text = re.sub(r"\([^)]*\)", "", text)
    text = re.sub(r"[\W_]+", "", text)
    text = _CITY_PREFIX.sub("", text, count=1) if len(_CITY_PREFIX.sub("", text, count=1)) >= 2 else text
    changed = True
    while changed:
        changed = False
        for suffix in _NAME_SUFFIXES:
            if text.endswith(suffix) and len(text) - len(suffix) >= 2:
                text, changed = text[: -len(suffix)], True
                break
    if len(text) < 2 or _only_generic_words(text):
        return ""
    return text


def _only_generic_words(text: str) -> bool:
    reachable = [True] + [False] * len(text)
    for end in range(1, len(text) + 1):
        reachable[end] = any(reachable[start] and text[start:end] in _GENERIC_WORDS for start in range(end))
    return reachable[-1]


def is_generic_name(name: str) -> bool:
    """True for names like 思维教育 or 学习中心 that many advertisers could use."""
    return name_core(name) == ""


def normalise_name(name: str) -> str:
    return re.sub(r"\s+", "", _normalise(name))


def lead_key(ids: Identifiers, url: str) -> str:
    """The grouping key: first phone, else WeChat id, else name, else the URL."""
    if ids.phones:
        kind, value = "phone", ids.phones[0]
    elif ids.wechat:
        kind, value = "wechat", ids.wechat[0]
    elif ids.names:
        kind, value = "name", normalise_name(ids.names[0])
    else:
        kind, value = "url", url
    key = f"{kind}:{value}"
    if len(key) > LEAD_KEY_LENGTH:
        # Too long for the key column: a digest keeps it unique and stable.
        key = f"{kind}-sha256:{hashlib.sha256(value.encode('utf-8')).hexdigest()}"
    return key

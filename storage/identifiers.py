"""Contact identifiers (phones, WeChat ids, institution names) and lead keys.

Deliberately small: it finds the strong keys an ad usually shows so that
pages of one advertiser share a lead. Masked numbers and shared service
hotlines are never returned, since they would merge unrelated sellers.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

LEAD_KEY_LENGTH = 255

# Dash-like characters NFKC leaves alone but people type inside phone numbers.
_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−"})

_SEP = r"[ \t\-.]?"
# 11-digit mobile, optionally +86/0086 prefixed, separators between any digits.
_MOBILE = re.compile(rf"(?<![\d*])(?:(?:\+|00)?86{_SEP})?(1[3-9](?:{_SEP}\d){{9}})(?![\d*])")
# Landline with area code: 010-12345678, (0571)8888666, 0755 88886666, 02112345678.
_LANDLINE = re.compile(
    r"(?<![\d*])(?:\((0\d{2,3})\)[ \-]?|(0\d{2,3})[ \-]|(?=0))(\d{7,8}|0\d{9,10})(?![\d*])"
)

_WECHAT = re.compile(
    r"(?:微信号?|(?<![A-Za-z0-9])(?:v信|vx|wx|加v)|威信|薇信)"
    r"[ \t]*(?:号)?[ \t]*[:：]?[ \t]*"
    r"([A-Za-z][A-Za-z0-9_\-]{5,19})(?![A-Za-z0-9_\-])",
    re.IGNORECASE,
)

_CJK = "\u4e00-\u9fff"
_NAME = re.compile(
    rf"[{_CJK}]{{2,10}}(?:教育科技有限公司|培训学校|培训中心|工作室|学校)"
)
# Words an ad puts in front of a name ("欢迎来到XX培训学校") that are not part of it.
_NAME_LEADERS = ("欢迎来到", "欢迎加入", "欢迎", "来到", "报名", "加入", "选择", "我们是", "这里是", "本")
# "考上理想学校" is a goal, not an institution.
_GENERIC_SCHOOL = re.compile(r"(?:理想|重点|名牌|目标|心仪|梦想|好|名|各|其他|所在|全市|全国)学校$")

_FIELD_WECHAT = {"wechat", "weixin", "wx", "微信", "微信号"}
_FIELD_NAME = {"institution", "organization", "org", "company", "机构", "机构名称", "公司"}
_WECHAT_ID = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{5,19}")


@dataclass
class Identifiers:
    phones: list[str] = field(default_factory=list)
    wechat: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_DASHES)


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


def _phones(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for match in _MOBILE.finditer(text):
        found.append((match.start(), re.sub(r"\D", "", match.group(1))))
        taken.append(match.span())
    for match in _LANDLINE.finditer(text):
        if any(start < match.end() and match.start() < end for start, end in taken):
            continue
        number = _landline(match)
        if number is not None:
            found.append((match.start(), number))
    # 12315, 12345, 400-/800- and 95xxx service lines never match the patterns
    # above: they are not 11-digit mobiles and carry no 0-prefixed area code.
    return [number for _, number in sorted(found)]


def _names(text: str) -> list[str]:
    names: list[str] = []
    for match in _NAME.finditer(text):
        name = match.group(0)
        for leader in _NAME_LEADERS:
            if name.startswith(leader) and len(name) - len(leader) >= 4:
                name = name[len(leader):]
                break
        if _GENERIC_SCHOOL.search(name):
            continue
        _add(names, name)
    return names


def extract_identifiers(text: str, fields: dict[str, list[str]]) -> Identifiers:
    """Phones, WeChat ids and institution names in ``text`` and selector ``fields``.

    Values of fields named like ``wechat`` or ``institution`` count as such
    directly; every field value is also searched like page text. Field values
    come first, since selectors point at the advertiser's own contact block.
    """
    ids = Identifiers()
    chunks: list[str] = []
    for key, values in fields.items():
        label = key.strip().lower()
        for raw in values:
            value = _normalise(raw).strip()
            if label in _FIELD_WECHAT and _WECHAT_ID.fullmatch(value):
                _add(ids.wechat, value.lower())
            elif label in _FIELD_NAME and value:
                _add(ids.names, value)
            chunks.append(value)
    chunks.append(_normalise(text))
    for chunk in chunks:
        for phone in _phones(chunk):
            _add(ids.phones, phone)
        for match in _WECHAT.finditer(chunk):
            _add(ids.wechat, match.group(1).lower())
        for name in _names(chunk):
            _add(ids.names, name)
    return ids


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

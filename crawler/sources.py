"""The source registry: ``sources.toml`` loaded into checked, immutable ``Source`` objects.

Every problem is reported as one ``SourcesError`` line naming the file, the line, the source and the
field, in the Chinese an inspector reads.  Values may use ``${VAR}`` or ``${VAR:-default}`` to take
part of a string from the environment (the demo uses it for its ephemeral port).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from parsel import Selector

DEFAULT_SOURCES_FILE = "sources.toml"
KINDS = ("listing", "site", "sitemap")
SELECTOR_KEYS = ("title", "body", "contact", "price", "next_page", "detail_link")
# Depth and page limits applied when a source does not set its own.
DEFAULT_MAX_DEPTH = {"listing": 50, "site": 3, "sitemap": 2}
DEFAULT_MAX_PAGES = 500
# A real sources file is a few kilobytes; a bigger one is a mistake or an attack on the loader.
MAX_SOURCES_FILE_BYTES = 5 * 1024 * 1024

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CRON_FIELD_RE = re.compile(r"^[\d*/,\-A-Za-z?]+$")


class SourcesError(Exception):
    """A sources file that cannot be used; ``str()`` is one line naming file, line, source and field."""


@dataclass(frozen=True)
class Selectors:
    title: str | None = None
    body: str | None = None
    contact: str | None = None
    price: str | None = None
    next_page: str | None = None
    detail_link: str | None = None

    def items(self) -> list[tuple[str, str]]:
        return [(key, getattr(self, key)) for key in SELECTOR_KEYS if getattr(self, key)]


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    start_urls: tuple[str, ...]
    allowed_domains: tuple[str, ...] = ()
    follow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    max_depth: int = 3
    max_pages: int = DEFAULT_MAX_PAGES
    render: bool = False
    selectors: Selectors = field(default_factory=Selectors)
    schedule: str | None = None
    delay: float | None = None
    concurrency: int | None = None
    max_minutes: float | None = None  # per-run time limit (CLOSESPIDER_TIMEOUT); None = the global setting
    # the network policy refuses loopback, private and other non-public addresses unless this is set
    # (the bundled demo and the tests, which serve on 127.0.0.1)
    allow_private: bool = False
    max_bytes: int | None = None  # largest response body accepted (DOWNLOAD_MAXSIZE); None = the global setting
    file: str = ""
    line: int = 0

    def as_config(self) -> dict:
        """A JSON-ready copy, stored with each crawl run."""
        return {
            "name": self.name,
            "kind": self.kind,
            "start_urls": list(self.start_urls),
            "allowed_domains": list(self.allowed_domains),
            "follow": list(self.follow),
            "deny": list(self.deny),
            "max_depth": self.max_depth,
            "max_pages": self.max_pages,
            "render": self.render,
            "selectors": dict(self.selectors.items()),
            "schedule": self.schedule,
            "delay": self.delay,
            "concurrency": self.concurrency,
            "max_minutes": self.max_minutes,
            "allow_private": self.allow_private,
            "max_bytes": self.max_bytes,
        }


def selector_query(sel: Selector, query: str):
    """Apply a selector string: ``xpath:...`` (or one starting with ``/`` or ``(``) is XPath, else CSS."""
    if query.startswith("xpath:"):
        return sel.xpath(query[6:])
    if query.startswith("css:"):
        return sel.css(query[4:])
    if query.startswith(("/", "(")):
        return sel.xpath(query)
    return sel.css(query)


def _shown(text: str, limit: int = 60) -> str:
    """A name or key from the file as one line of a message: control characters escaped, cut at ``limit``."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


class _Locator:
    """Finds the line of a source table or of a field inside it, for error messages."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.tables = [i + 1 for i, ln in enumerate(self.lines) if ln.strip().startswith("[[source]]")]

    def table_line(self, index: int) -> int:
        return self.tables[index] if index < len(self.tables) else 0

    def field_line(self, index: int, key: str) -> int:
        start = self.table_line(index)
        if not start:
            return 0
        end = self.tables[index + 1] if index + 1 < len(self.tables) else len(self.lines) + 1
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for lineno in range(start, end - 1):
            if pattern.match(self.lines[lineno]):
                return lineno + 1
        return start


class _Checker:
    def __init__(self, path: str, locator: _Locator, index: int, name: str | None):
        self.path, self.locator, self.index, self.name = path, locator, index, name

    def fail(self, key: str | None, message: str) -> SourcesError:
        line = self.locator.field_line(self.index, key.split(".")[0]) if key else self.locator.table_line(self.index)
        where = f"{self.path}:{line}" if line else self.path
        who = f"来源 \"{_shown(self.name)}\"" if self.name else f"第 {self.index + 1} 个 [[source]]"
        what = f"，字段 \"{_shown(key)}\"" if key else ""
        return SourcesError(f"{where}: {who}{what}：{message}")

    def expand(self, key: str, value: str) -> str:
        def repl(match: re.Match) -> str:
            var, default = match.group(1), match.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise self.fail(key, f"环境变量 {var} 未设置（可写成 ${{{var}:-默认值}}）")

        return _ENV_RE.sub(repl, value)

    def string(self, raw: dict, key: str, *, required: bool = False) -> str | None:
        if key not in raw:
            if required:
                raise self.fail(None, f"缺少必填字段 \"{key}\"")
            return None
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"应为非空字符串，实际为 {value!r}")
        return self.expand(key, value.strip())

    def string_list(self, raw: dict, key: str, *, required: bool = False) -> tuple[str, ...]:
        if key not in raw:
            if required:
                raise self.fail(None, f"缺少必填字段 \"{key}\"")
            return ()
        value = raw[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, f"应为字符串列表，实际为 {value!r}")
        if required and not value:
            raise self.fail(key, "不能为空列表")
        return tuple(self.expand(key, v.strip()) for v in value)

    def integer(self, raw: dict, key: str, low: int, high: int) -> int | None:
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"应为 {low} 到 {high} 之间的整数，实际为 {value!r}")
        return value

    def number(self, raw: dict, key: str, low: float, high: float) -> float | None:
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(key, f"应为 {low} 到 {high} 之间的数值（秒），实际为 {value!r}")
        return float(value)


_FIELDS = {
    "name", "kind", "start_urls", "allowed_domains", "follow", "deny", "max_depth", "max_pages",
    "render", "selectors", "schedule", "delay", "concurrency", "max_minutes", "allow_private", "max_bytes",
}


def _minutes(check: _Checker, raw: dict) -> float | None:
    if "max_minutes" not in raw:
        return None
    value = raw["max_minutes"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10080:
        raise check.fail("max_minutes", f"应为大于 0、不超过 10080 的数值（分钟），实际为 {value!r}")
    return float(value)


def _check_url(check: _Checker, url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket, a host name that changes under NFKC
        raise check.fail("start_urls", f"不是有效的 http(s) 网址：{url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise check.fail("start_urls", f"不是有效的 http(s) 网址：{url!r}")
    try:
        valid_port = parts.port != 0
    except ValueError:  # not a number, or over 65535
        valid_port = False
    if not valid_port:
        raise check.fail("start_urls", f"端口无效（应为 1 到 65535 的整数）：{url!r}")


def _check_regexes(check: _Checker, key: str, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        shown = pattern if len(pattern) <= 60 else pattern[:60] + "…"
        try:
            re.compile(pattern)
        except re.error as exc:
            raise check.fail(key, f"正则表达式 {shown!r} 无效：{exc}") from None
        except (OverflowError, RecursionError) as exc:  # a{4294967296}; a thousand nested groups
            problem = "重复次数过大" if isinstance(exc, OverflowError) else "括号嵌套过深"
            raise check.fail(key, f"正则表达式 {shown!r} 无效：{problem}") from None


def _check_cron(check: _Checker, expr: str) -> None:
    fields = expr.split()
    if len(fields) != 5 or not all(_CRON_FIELD_RE.match(f) for f in fields):
        raise check.fail("schedule", f"应为 5 段 cron 表达式（分 时 日 月 周），实际为 {expr!r}")
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expr, timezone="Asia/Shanghai")
    except ValueError as exc:
        raise check.fail("schedule", f"cron 表达式 {expr!r} 无效：{exc}") from None


def _parse_selectors(check: _Checker, raw: object) -> Selectors:
    if raw is None:
        return Selectors()
    if not isinstance(raw, dict):
        raise check.fail("selectors", "应为表（[source.selectors]）")
    probe = Selector(text="<html><body></body></html>")
    values: dict[str, str] = {}
    for key, query in raw.items():
        if key not in SELECTOR_KEYS:
            hint = key.replace("-", "_")
            extra = f"（是否应为 \"{hint}\"？）" if hint in SELECTOR_KEYS else ""
            raise check.fail(f"selectors.{key}", f"未知的选择器{extra}；可用：{', '.join(SELECTOR_KEYS)}")
        if not isinstance(query, str) or not query.strip():
            raise check.fail(f"selectors.{key}", f"应为非空字符串，实际为 {query!r}")
        try:
            selector_query(probe, query.strip())
        except Exception as exc:  # parsel raises several types for bad CSS/XPath
            raise check.fail(f"selectors.{key}", f"选择器 {query!r} 无效：{exc}") from None
        values[key] = query.strip()
    return Selectors(**values)


def _parse_source(path: str, locator: _Locator, index: int, raw: object) -> Source:
    check = _Checker(path, locator, index, None)
    if not isinstance(raw, dict):
        raise check.fail(None, "应为表")
    name = check.string(raw, "name", required=True)
    check.name = name
    if not _NAME_RE.match(name):
        raise check.fail("name", f"名称 {name!r} 只能包含小写字母、数字、- 和 _，且以字母或数字开头")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise check.fail(unknown[0], f"未知字段；可用字段：{', '.join(sorted(_FIELDS))}")
    kind = check.string(raw, "kind", required=True)
    if kind not in KINDS:
        raise check.fail("kind", f"取值 {kind!r} 无效，应为 {'、'.join(KINDS)} 之一")
    start_urls = check.string_list(raw, "start_urls", required=True)
    for url in start_urls:
        _check_url(check, url)
    allowed = check.string_list(raw, "allowed_domains")
    if not allowed:
        allowed = tuple(dict.fromkeys(urlsplit(u).hostname for u in start_urls))
    follow = check.string_list(raw, "follow")
    deny = check.string_list(raw, "deny")
    _check_regexes(check, "follow", follow)
    _check_regexes(check, "deny", deny)
    render = raw.get("render", False)
    if not isinstance(render, bool):
        raise check.fail("render", f"应为 true 或 false，实际为 {render!r}")
    allow_private = raw.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise check.fail("allow_private", f"应为 true 或 false，实际为 {allow_private!r}")
    schedule = check.string(raw, "schedule")
    if schedule:
        _check_cron(check, schedule)
    max_depth = check.integer(raw, "max_depth", 0, 1000)
    max_pages = check.integer(raw, "max_pages", 1, 10_000_000)
    selectors = _parse_selectors(check, raw.get("selectors"))
    if kind == "listing" and not selectors.detail_link:
        raise check.fail("selectors", "listing 类型的来源必须设置 selectors.detail_link（详情页链接选择器）")
    return Source(
        name=name,
        kind=kind,
        start_urls=start_urls,
        allowed_domains=allowed,
        follow=follow,
        deny=deny,
        max_depth=DEFAULT_MAX_DEPTH[kind] if max_depth is None else max_depth,
        max_pages=DEFAULT_MAX_PAGES if max_pages is None else max_pages,
        render=render,
        selectors=selectors,
        schedule=schedule,
        delay=check.number(raw, "delay", 0.0, 3600.0),
        concurrency=check.integer(raw, "concurrency", 1, 256),
        max_minutes=_minutes(check, raw),
        allow_private=allow_private,
        max_bytes=check.integer(raw, "max_bytes", 1024, 1 << 30),
        file=path,
        line=locator.table_line(index),
    )


def load_sources(path: str | os.PathLike | None = None) -> list[Source]:
    """Load and check a sources file; raise ``SourcesError`` (one line) on any problem."""
    path = str(path or DEFAULT_SOURCES_FILE)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SOURCES_FILE_BYTES + 1)
        if len(raw) > MAX_SOURCES_FILE_BYTES:
            raise SourcesError(f"{path}: 来源配置文件过大（超过 {MAX_SOURCES_FILE_BYTES // (1024 * 1024)} MB）")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SourcesError(f"{path}: 找不到来源配置文件（用 --sources 指定路径）") from None
    except UnicodeDecodeError as exc:
        raise SourcesError(f"{path}: 文件不是 UTF-8 编码（第 {exc.start} 字节）") from None
    except OSError as exc:
        raise SourcesError(f"{path}: 无法读取来源配置文件：{exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"{path}: TOML 语法错误：{exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise SourcesError(f"{path}: TOML 数组或内联表嵌套过深") from None
    extra = sorted(set(data) - {"source"})
    if extra:
        raise SourcesError(f"{path}: 未知的顶层键 \"{_shown(extra[0])}\"；来源应写成 [[source]] 表")
    raw_sources = data.get("source", [])
    if not isinstance(raw_sources, list) or not raw_sources:
        raise SourcesError(f"{path}: 没有任何 [[source]] 表")
    locator = _Locator(text)
    sources: list[Source] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_sources):
        source = _parse_source(path, locator, index, raw)
        if source.name in seen:
            raise SourcesError(
                f"{path}:{source.line}: 来源 \"{source.name}\"，字段 \"name\"：名称重复（第 {seen[source.name]} 行已定义）"
            )
        seen[source.name] = source.line
        sources.append(source)
    return sources


def find_source(sources: list[Source], name: str) -> Source:
    for source in sources:
        if source.name == name:
            return source
    known = "、".join(s.name for s in sources)
    file = sources[0].file if sources else DEFAULT_SOURCES_FILE
    raise SourcesError(f"{file}: 没有名为 \"{name}\" 的来源；已配置：{known}")

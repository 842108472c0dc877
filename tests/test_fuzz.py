"""Property-based tests (Hypothesis) for the three doors hostile text comes through: the detection engine's
offset map, the sources loader and `xunjian detect`'s input lines.

Each property runs a bounded number of examples with no deadline (the engine's first call loads rule
packs) and no example database on disk, so the whole file stays within a few seconds of the suite.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re

from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crawler.detect_cli import detect
from crawler.sources import (
    _FIELDS,
    KINDS,
    SELECTOR_KEYS,
    Source,
    SourcesError,
    load_sources,
)
from detectors import get_engine

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- the engine's offset map ----------------------------------------------------------------------

AD_PHRASES = ["初二数学一对一 保提分 13800000000", "暑假初二数学同步提高班火热报名中，试听免费，报名电话13800001111",
              "高中物理家教上门辅导，保过，微信 abc12345", "初二數學一對一，保提分", "ＸＸ初二数学一对一　保提分"]
SEPARATORS = [" ", "　", "*", ".", "·", "-", "_", "\u200b", "\u0301", "😀", "|", "/", "\n"]
# combining marks, emoji, full-width forms, traditional characters, separators, any other Unicode
_NOISE = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(categories=["Mn", "Me", "Cf", "Zs"]), max_size=4),
    st.text(st.sampled_from("ＡＢＣ０１２３４５６７８９，．！？＊　數學補習輔導保證"), max_size=6),
    st.sampled_from(SEPARATORS + ["😀👍🏻", "🇨🇳", "e\u0301", "ﬁ", "①②③", "Ⅻ", "\U0001F9D1\u200d\U0001F393"]),
)


@st.composite
def spaced(draw, phrase: str) -> str:
    """``phrase`` with separators drawn between its characters, as evasive ads write it."""
    return "".join(ch + draw(st.sampled_from([""] * 3 + SEPARATORS)) for ch in phrase)


AD_TEXT = st.lists(st.one_of(_NOISE, st.sampled_from(AD_PHRASES), st.sampled_from(AD_PHRASES).flatmap(spaced)),
                   min_size=1, max_size=8).map("".join)


@FAST
@given(AD_TEXT)
@example("初 二 数 学 一*对*一 保.提.分 １３８００００００００")
@example("😀初二😀数学一对一辅导，保提分，电话138-0000-0000")
def test_every_finding_is_the_slice_of_the_original_text_it_names(text):
    for finding in get_engine().detect(text).findings:
        assert 0 <= finding.start < finding.end <= len(text), finding
        assert text[finding.start:finding.end] == finding.text, (text, finding)


def test_the_fuzzed_texts_do_produce_findings():
    """The property above is only worth something if its inputs are caught: the phrases and their spaced
    and decorated forms each give findings."""
    for text in AD_PHRASES[:2] + ["初 二 数 学 一*对*一 保.提.分", "e\u0301初二数学一对一😀保提分"]:
        assert get_engine().detect(text).findings, text


# --- the sources loader ---------------------------------------------------------------------------

def toml_value(value) -> str:
    """``value`` as a TOML literal (the test writes documents tomllib can read back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, str):  # JSON string escapes are TOML's, except DEL which TOML wants escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


_SCALARS = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(), st.booleans(),
    st.datetimes(min_value=dt.datetime(1000, 1, 1)), st.dates(min_value=dt.date(1000, 1, 1)), st.times(),
    st.sampled_from(list(KINDS) + ["http://127.0.0.1:8000/a", "http://[::1/x", "http://h:99999/",
                                   "${HOME}", "${NO_SUCH_VAR_XJ}", "${NO_SUCH_VAR_XJ:-http://h/}",
                                   "0 6 * * *", "61 25 * * *", "*/0 * * * *",
                                   "h1.title", "xpath://h1[", "css:::", "demo-1"]),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
# known fields and near misses (other unknown keys come from the nested tables)
_KEYS = st.sampled_from(sorted(_FIELDS) + ["colour", "Name", "start-urls", ""])
_URLS = st.sampled_from(["http://127.0.0.1:8000/", "https://example.org/x", "http://[::1/x", "http://h:99999/",
                         "http://h:0/", "http://h:x/", "ftp://h/", "${NO_SUCH_VAR_XJ:-http://h/}"])
_REGEXES = st.sampled_from(["/board/", r"\.pdf$", "a{4294967296}", "(" * 1200 + ")" * 1200, "(?:" * 1200 + ")" * 1200,
                           "(", "[a-", "(?P<x>a)(?P<x>b)"])
_SOURCE = st.fixed_dictionaries(
    {"name": st.one_of(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True), _SCALARS),
     "kind": st.one_of(st.sampled_from(KINDS), _SCALARS),
     "start_urls": st.one_of(st.lists(_URLS, max_size=3), _VALUES)},
    optional={"follow": st.one_of(st.lists(_REGEXES, max_size=2), _VALUES),
              "deny": st.one_of(st.lists(_REGEXES, max_size=2), _VALUES),
              "selectors": st.one_of(st.dictionaries(st.sampled_from(SELECTOR_KEYS + ("titel",)), _SCALARS),
                                     _VALUES)},
).flatmap(lambda fixed: st.dictionaries(_KEYS, _VALUES, max_size=3).map(lambda extra: {**extra, **fixed}))


def sources_document(sources: list[dict], top: dict) -> str:
    lines = [f"{toml_value(k)} = {toml_value(v)}" for k, v in top.items()]
    for source in sources:
        lines.append("[[source]]")
        lines += [f"{toml_value(k)} = {toml_value(v)}" for k, v in source.items()]
    return "\n".join(lines) + "\n"


def assert_loads_or_fails_cleanly(path) -> None:
    try:
        sources = load_sources(path)
    except SourcesError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message and "Traceback" not in message, message
    else:
        assert sources and all(isinstance(s, Source) for s in sources)


@FAST
@given(st.lists(_SOURCE, max_size=3), st.dictionaries(st.text(max_size=6), _SCALARS, max_size=1))
def test_any_toml_document_gives_sources_or_one_clean_line(tmp_path, sources, top):
    path = tmp_path / "sources.toml"
    path.write_text(sources_document(sources, top), encoding="utf-8")
    assert_loads_or_fails_cleanly(path)


@FAST
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.sampled_from([b"[[source]]\nname = [" * 50, b"a = " + b"[" * 100_000])))
def test_any_file_content_gives_sources_or_one_clean_line(tmp_path, content):
    path = tmp_path / "sources.toml"
    path.write_bytes(content)
    assert_loads_or_fails_cleanly(path)


# --- `xunjian detect` input lines -----------------------------------------------------------------

GOOD_TEXT = "初二数学一对一 保提分 13800000000"
_JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                        max_leaves=8)
_DOC = st.dictionaries(st.sampled_from(["id", "text", "title", "url", "x"]), _JSONISH, max_size=4)
BAD_LINES = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
    _DOC.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8")),  # NaN and Infinity included
    st.sampled_from([b'{"text": "\\ud800"}', b'{"id": "\\udfff", "text": "x"}', b"[" * 100_000,
                     b'{"text": "x", "n": ' + b"9" * 100_000 + b"}", b'{"text": "x", "id": NaN}',
                     b'{"text": "x", "id": -Infinity}', b'{"text": "x", "id": 1e999}', b'{"text": "x", "title": 5}',
                     b'{"text": "x", "url": ["a"]}', b"\x00", b"\xed\xa0\x80"]),
)
_ERROR_LINE = re.compile(r"^错误：标准输入：第 (\d+) 行：.+，已跳过$")


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON: the output must stay readable by any JSON parser")


@FAST
@given(st.lists(st.tuples(st.booleans(), BAD_LINES), min_size=1, max_size=8))
def test_no_input_line_stops_detect_and_every_good_line_is_answered(lines):
    good_ids, raw = [], []
    for number, (good, bad) in enumerate(lines):
        if good:
            good_ids.append(f"good-{number}")
            raw.append(json.dumps({"id": good_ids[-1], "text": GOOD_TEXT}, ensure_ascii=False).encode("utf-8"))
        raw.append(bad.replace(b"\n", b" "))
    result = CliRunner().invoke(detect, [], input=b"\n".join(raw) + b"\n")
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    out = [json.loads(line, parse_constant=_not_json) for line in result.stdout.splitlines()]
    assert [o["id"] for o in out if o["id"] in good_ids] == good_ids
    assert all(o["findings"] for o in out if o["id"] in good_ids)
    errors = result.stderr.splitlines()
    assert all(_ERROR_LINE.match(e) for e in errors), errors
    assert result.exit_code == (1 if errors else 0)

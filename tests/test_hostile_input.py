"""Bad input that used to end in a traceback (issue 14, point 9) and the webhook as an outbound door
(point 6): each gives one `错误：` line naming what and where, and the good input around it still works."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crawler.detect_cli import _lines
from crawler.health import WEBHOOK_ALLOW_PRIVATE_ENV, alert, redact_url
from crawler.sources import SourcesError, load_sources
from detectors.errors import RulePackError
from detectors.loader import load_rules
from tests.conftest import ROOT, run_cli

AD = "初二数学一对一 保提分 13800000000"
DEEP_GROUPS = "(" * 1200 + "a" + ")" * 1200

# --- `xunjian detect` ---------------------------------------------------------------------------------


def good(n: int) -> bytes:
    return json.dumps({"id": f"good-{n}", "text": AD}, ensure_ascii=False).encode("utf-8")


BAD_DETECT_LINES = [
    (b'{"id": "s", "text": "\\ud800 abc"}', '字段 "text" 含有不成对的代理字符 U+D800'),
    (b'{"id": "\\udc00", "text": "abc"}', '字段 "id" 含有不成对的代理字符 U+DC00'),
    (b"[" * 100_000 + b"]" * 100_000, "JSON 嵌套过深"),
    (b'{"text": "x", "n": ' + b"9" * 100_000 + b"}", "数字过长（100000 位"),
    (b'{"id": NaN, "text": "x"}', "含有 NaN"),
    (b'{"id": 1e999, "text": "x"}', "数值 1e999 超出范围"),
    (b'{"id": 2, "text": "x", "title": 5}', '字段 "title" 应为字符串，实际为 int'),
    (b'{"id": 3, "text": "x", "url": {"a": 1}}', '字段 "url" 应为字符串，实际为 dict'),
    (b'{"id": 4, "text": "' + b"x" * (11 * 1024 * 1024) + b'"}', "超过 10 MB 的行长度上限"),
]


def test_detect_reports_each_hostile_line_and_keeps_every_good_line_after_it():
    data = good(0) + b"\n" + b"".join(bad + b"\n" + good(n) + b"\n" for n, (bad, _) in enumerate(BAD_DETECT_LINES, 1))
    proc = subprocess.run([sys.executable, "-m", "crawler.cli", "detect"], input=data, cwd=ROOT, check=False,
                          capture_output=True, timeout=180)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    out = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert [o["id"] for o in out] == [f"good-{n}" for n in range(len(BAD_DETECT_LINES) + 1)]
    assert all(o["findings"] for o in out)
    errors = proc.stderr.decode("utf-8").splitlines()
    assert len(errors) == len(BAD_DETECT_LINES), errors
    for n, (error, (_, reason)) in enumerate(zip(errors, BAD_DETECT_LINES), 1):
        assert error.startswith(f"错误：标准输入：第 {2 * n} 行：") and reason in error and error.endswith("，已跳过"), error
        assert len(error) < 200, error


def test_an_over_long_line_is_dropped_in_bounded_reads_and_the_next_line_is_whole():
    stream = io.BytesIO(b"0123456789\n" + b"x" * 25 + b"\nabc\n" + b"y" * 11 + b"\n" + b"z" * 10)
    assert list(_lines(stream, limit=10)) == [(1, b"0123456789\n"), (2, None), (3, b"abc\n"), (4, None),
                                              (5, b"z" * 10)]


# --- regexes and start URLs in sources.toml ---------------------------------------------------------

SOURCE = """\
[[source]]
name = "alpha"
kind = "site"
start_urls = [{url}]
{extra}
"""


@pytest.mark.parametrize(("url", "extra", "field", "fragment"), [
    ('"http://h/"', 'follow = ["a{4294967296}"]', "follow", "重复次数过大"),
    ('"http://h/"', f'deny = ["/ok/", "{DEEP_GROUPS}"]', "deny", "括号嵌套过深"),
    ('"http://h/"', 'follow = ["' + "(?:" * 1200 + ")" * 1200 + '"]', "follow", "括号嵌套过深"),
    ('"http://[::1/x"', "", "start_urls", "不是有效的 http(s) 网址：'http://[::1/x'"),
    ('"http://127.0.0.1:99999/"', "", "start_urls", "端口无效（应为 1 到 65535 的整数）：'http://127.0.0.1:99999/'"),
    ('"http://h:0/"', "", "start_urls", "端口无效"),
    ('"http://h:abc/"', "", "start_urls", "端口无效"),
], ids=["huge-repeat", "nested-groups", "nested-non-capturing", "unclosed-ipv6", "port-99999", "port-0", "port-nan"])
def test_bad_regex_or_start_url_is_one_line_naming_file_source_and_field(tmp_path, url, extra, field, fragment):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCE.format(url=url, extra=extra), encoding="utf-8")
    with pytest.raises(SourcesError) as info:
        load_sources(path)
    message = str(info.value)
    line = 5 if field in ("follow", "deny") else 4
    assert message.startswith(f"{path}:{line}: 来源 \"alpha\"，字段 \"{field}\"：") and fragment in message, message
    assert "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize(("text", "shown"), [
    ('"top\\nkey" = 1\n' + SOURCE.format(url='"http://h/"', extra=""), '未知的顶层键 "top\\nkey"'),
    (SOURCE.format(url='"http://h/"', extra='"x\\u2028y" = 1'), '来源 "alpha"，字段 "x\\u2028y"：未知字段'),
    (SOURCE.format(url='"http://h/"', extra="").replace('"alpha"', '"al\\tpha"'), '来源 "al\\tpha"，字段 "name"'),
    (SOURCE.format(url='"http://h/"', extra=f'"{"k" * 500}" = 1'), f'字段 "{"k" * 60}…"：未知字段'),
], ids=["top-level-key", "field-key", "name", "long-key"])
def test_names_and_keys_from_the_file_cannot_break_the_one_line(tmp_path, text, shown):
    """Found by tests/test_fuzz.py: a quoted TOML key with a newline split the error over two lines."""
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourcesError) as info:
        load_sources(path)
    assert shown in str(info.value) and str(info.value).isprintable(), str(info.value)


def test_a_crawl_with_port_99999_stops_before_starting_with_one_line(tmp_path):
    path = tmp_path / "sources.toml"
    path.write_text(SOURCE.format(url='"http://127.0.0.1:99999/"', extra=""), encoding="utf-8")
    result = run_cli("crawl", "--sources", str(path), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.code == 2 and result.out == "", result
    assert result.err.startswith(f"错误：{path}:4: 来源 \"alpha\"，字段 \"start_urls\"：端口无效"), result.err
    assert len(result.err.strip().splitlines()) == 1


# --- regexes in rule packs -----------------------------------------------------------------------------

PACK = """\
version: "2026.1.1"
lexicons:
  zz_terms:
    regex: ['{lexicon_regex}']
rules:
  - id: ZZ.hostile
    category: exaggerated_marketing
    subcategory: EM4
    severity: 2
    basis: 《中华人民共和国广告法》第九条
    explanation: 使用绝对化用语“{{match}}”。
    anchor_regex: ['{anchor_regex}']
    examples:
      match: [全城最棒]
      no_match: [美术班]
"""


@pytest.mark.parametrize(("lexicon_regex", "anchor_regex", "item", "field", "fragment"), [
    ("ok", "a{4294967296}", "ZZ.hostile", "anchor_regex[0]", "重复次数过大"),
    (DEEP_GROUPS, "ok", "词表 zz_terms", "regex[0]", "括号嵌套过深"),
], ids=["rule-huge-repeat", "lexicon-nested-groups"])
def test_rule_pack_regex_that_python_cannot_compile_is_named(tmp_path, lexicon_regex, anchor_regex, item, field,
                                                            fragment):
    (tmp_path / "zz_bad.yaml").write_text(PACK.format(lexicon_regex=lexicon_regex, anchor_regex=anchor_regex),
                                          encoding="utf-8")
    with pytest.raises(RulePackError) as info:
        load_rules(tmp_path)
    err = info.value
    assert (err.path, err.item, err.field) == ("zz_bad.yaml", item, field)
    assert fragment in str(err) and "\n" not in str(err)


def test_rules_check_reports_the_regex_on_one_line(tmp_path):
    (tmp_path / "zz_bad.yaml").write_text(PACK.format(lexicon_regex="ok", anchor_regex="a{4294967296}"),
                                          encoding="utf-8")
    result = run_cli("rules", "check", str(tmp_path))
    assert result.code == 1
    assert result.err.strip() == "错误：规则包错误 zz_bad.yaml：规则 ZZ.hostile：字段 anchor_regex[0]：正则表达式无效：重复次数过大"


# --- the webhook ---------------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    """Real HTTP servers on 127.0.0.1: ``start(status, headers)`` returns (url, list of requests seen)."""
    servers = []

    def start(status: int = 204, headers: dict | None = None):
        seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.do_GET()

            def do_GET(self):
                seen.append(f"{self.command} {self.path}")
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def webhook_log(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "xunjian.health" and "告警推送" in r.getMessage()]


@pytest.mark.parametrize(("url", "shown", "reason"), [
    ("file:///etc/passwd", "file:///etc/passwd", "不允许的网址协议"),
    ("gopher://127.0.0.1:70/x", "gopher://127.0.0.1:70/x", "不允许的网址协议"),
    ("http://169.254.169.254/latest/meta-data?token=s3cret", "http://169.254.169.254/latest/meta-data?…", "链路本地地址"),
    ("https://admin:s3cret@10.1.2.3/hook", "https://10.1.2.3/hook", "内网地址"),
    ("http://127.0.0.1:99999/hook", "http://127.0.0.1:99999/hook", "网址无效"),
])
def test_webhook_outside_the_policy_is_refused_with_one_redacted_line(caplog, monkeypatch, url, shown, reason):
    monkeypatch.delenv(WEBHOOK_ALLOW_PRIVATE_ENV, raising=False)
    with caplog.at_level(logging.ERROR, logger="xunjian.health"):
        alert("canary", "自检失败", webhook_url=url)
    [line] = webhook_log(caplog)
    assert line.startswith(f"告警推送被拒绝：{shown}（{reason}") and "s3cret" not in line, line


def test_a_private_receiver_needs_the_operators_explicit_allowance(caplog, monkeypatch, receiver):
    base, seen = receiver()
    monkeypatch.delenv(WEBHOOK_ALLOW_PRIVATE_ENV, raising=False)
    with caplog.at_level(logging.ERROR, logger="xunjian.health"):
        alert("canary", "自检失败", webhook_url=f"{base}/hook")
    assert seen == []
    assert webhook_log(caplog) == [f"告警推送被拒绝：{base}/hook（本机回环地址；内网接收端请设置 {WEBHOOK_ALLOW_PRIVATE_ENV}=1）"]
    monkeypatch.setenv(WEBHOOK_ALLOW_PRIVATE_ENV, "1")
    alert("canary", "自检失败", webhook_url=f"{base}/hook")
    assert seen == ["POST /hook"]


def test_a_failed_delivery_logs_the_url_without_credentials_or_query(caplog, monkeypatch, receiver):
    base, seen = receiver(status=500)
    monkeypatch.setenv(WEBHOOK_ALLOW_PRIVATE_ENV, "1")
    with caplog.at_level(logging.ERROR, logger="xunjian.health"):
        alert("canary", "自检失败", webhook_url=f"{base}/hook?token=s3cret#frag")
        alert("canary", "自检失败", webhook_url=f"{base.replace('//', '//bot:s3cret@')}/hook")
    assert seen == ["POST /hook?token=s3cret"]
    first, second = webhook_log(caplog)
    assert first == f"告警推送失败：{base}/hook?…#…（HTTP Error 500: Internal Server Error）"
    assert second.startswith(f"告警推送失败：{base}/hook（") and "s3cret" not in second and "bot" not in second


def test_a_redirecting_webhook_is_not_followed(caplog, monkeypatch, receiver):
    target, target_seen = receiver()
    base, seen = receiver(status=302, headers={"Location": f"{target}/internal"})
    monkeypatch.setenv(WEBHOOK_ALLOW_PRIVATE_ENV, "1")
    with caplog.at_level(logging.ERROR, logger="xunjian.health"):
        alert("canary", "自检失败", webhook_url=f"{base}/hook")
    assert seen == ["POST /hook"] and target_seen == []
    assert webhook_log(caplog) == [f"告警推送失败：{base}/hook（HTTP Error 302: Found）"]


@pytest.mark.parametrize(("url", "shown"), [
    ("https://u:p@alerts.example.org/x/y?token=1&b=2#f", "https://alerts.example.org/x/y?…#…"),
    ("https://alerts.example.org/hook", "https://alerts.example.org/hook"),
    ("http://@h:8080/", "http://h:8080/"),
    ("http://[::1/x?token=1", "（无法解析的网址）"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


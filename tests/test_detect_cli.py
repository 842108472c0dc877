"""`xunjian detect`: JSON Lines in and out, bad lines reported and skipped, awkward input survived."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

AD = "暑假初二数学同步提高班火热报名中，每班限8人，试听一节免费，报名电话13800001111。"
NEWS = "记者走访发现，暑期部分机构以“研学营”名义开设数学课，教育部门已介入调查。"


def detect(*args: str, data: bytes = b"", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crawler.cli", "detect", *args], input=data, cwd=ROOT,
                          capture_output=True, timeout=timeout)


def lines(docs: list[dict]) -> bytes:
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


def test_one_output_line_per_input_in_order():
    proc = detect(data=lines([{"id": "a", "text": AD}, {"id": "b", "text": NEWS, "url": "http://x/news"}]))
    assert proc.returncode == 0, proc.stderr.decode()
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [o["id"] for o in out] == ["a", "b"]
    assert "banned_ad" in out[0]["categories"] and out[0]["score"] > 0
    assert out[1]["categories"] == [] and out[1]["findings"] == [] and out[1]["score"] == 0
    for finding in out[0]["findings"]:
        assert set(finding) == {"category", "subcategory", "rule", "severity", "start", "end", "text",
                                "normalized", "explanation", "basis"}
        assert AD[finding["start"]:finding["end"]] == finding["text"]
        assert finding["explanation"] and finding["basis"]


def test_bad_lines_are_reported_with_numbers_and_skipped(tmp_path):
    data = (lines([{"id": 1, "text": AD}]) + b"{not json\n" + lines([{"id": 2}]) + b"[1, 2]\n"
            + b"\xff\xfe\xfa broken utf-8\n" + lines([{"id": 3, "text": AD}]))
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    proc = detect(str(path))
    assert proc.returncode == 1
    assert [json.loads(x)["id"] for x in proc.stdout.decode().splitlines()] == [1, 3]
    errors = proc.stderr.decode().splitlines()
    assert len(errors) == 4, errors
    for lineno, fragment in ((2, "JSON"), (3, '"text"'), (4, "JSON 对象"), (5, "UTF-8")):
        assert any(f"{path}：第 {lineno} 行" in e and fragment in e for e in errors), (lineno, errors)


def test_empty_binary_and_huge_input():
    empty = detect(data=b"")
    assert empty.returncode == 0 and empty.stdout == b"" and empty.stderr == b""
    binary = detect(data=bytes(range(256)) * 4)
    assert binary.returncode == 1 and binary.stdout == b""
    assert "第 1 行" in binary.stderr.decode()
    big_text = "今天天气晴朗，公园里有很多人散步。\n" * 40000 + AD  # ~2 MB in one document
    huge = detect(data=lines([{"id": "big", "text": big_text}]))
    assert huge.returncode == 0, huge.stderr.decode()
    result = json.loads(huge.stdout)
    assert "banned_ad" in result["categories"]
    assert all(f["start"] >= len(big_text) - len(AD) for f in result["findings"])


def test_table_format_highlights_matches():
    proc = detect("--format", "table", data=lines([{"id": "ad-1", "text": AD}]))
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "ad-1" in out and "违规学科类培训广告" in out and "法律依据" in out

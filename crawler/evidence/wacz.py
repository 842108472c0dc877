"""Packaging WARC files as one WACZ (Web Archive Collection Zipped) with webrecorder's ``wacz`` tool.

The package indexes the WARCs (CDXJ), lists the pages and records a SHA-256 for every file it holds
in ``datapackage.json``, so a lead's captures travel as one file that replay tools such as
ReplayWeb.page open directly. Everything runs offline.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from wacz.main import main as wacz_main
from warcio.archiveiterator import ArchiveIterator


class WaczError(Exception):
    """Building the WACZ failed; ``str()`` is one line naming the output file and the reason."""


def pages_of(warc_paths: list[str | os.PathLike[str]]) -> list[dict[str, str]]:
    """One replay entry point per WARC file: its first response record (the crawled page)."""
    pages = []
    for path in warc_paths:
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type == "response":
                    url = record.rec_headers.get_header("WARC-Target-URI")
                    pages.append({"url": url, "ts": record.rec_headers.get_header("WARC-Date"), "title": url})
                    break
    return pages


def build_wacz(warc_paths: list[str | os.PathLike[str]], out_path: str | os.PathLike[str],
               pages: list[dict[str, str]] | None = None) -> Path:
    """Write a WACZ at ``out_path`` holding ``warc_paths``; returns the output path.

    ``pages`` (dicts with url, ts as WARC-Date and optionally title) become the package's page list;
    by default each WARC's crawled page is listed.
    """
    out = Path(out_path)
    if not warc_paths:
        raise WaczError(f"无法生成 {out}：没有任何 WARC 文件")
    for path in warc_paths:
        if not Path(path).is_file():
            raise WaczError(f"无法生成 {out}：WARC 文件不存在：{path}")
    names = [Path(p).name for p in warc_paths]
    if len(set(names)) != len(names):
        raise WaczError(f"无法生成 {out}：WARC 文件名重复（包内按文件名存放）")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".partial-{os.getpid()}-{out.name}")
    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="xunjian-wacz-") as scratch:
        try:
            page_list = pages if pages is not None else pages_of(warc_paths)
            pages_file = Path(scratch) / "pages.jsonl"
            lines = [{"format": "json-pages-1.0", "id": "pages", "title": "Pages"}, *page_list]
            pages_file.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                                  encoding="utf-8")
            args = ["create", "-o", str(partial), "-p", str(pages_file), *[str(p) for p in warc_paths]]
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                code = wacz_main(args)
            if code not in (0, None) or not partial.is_file():
                last = (log.getvalue().strip().splitlines() or ["未知错误"])[-1]
                raise WaczError(f"无法生成 {out}：{last}")
            os.replace(partial, out)
        except SystemExit as exc:  # argparse errors
            raise WaczError(f"无法生成 {out}：参数错误（{exc.code}）") from None
        except WaczError:
            raise
        except Exception as exc:  # the tool and warcio raise plain exceptions on unreadable input
            raise WaczError(f"无法生成 {out}：{type(exc).__name__}: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    return out

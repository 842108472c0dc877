"""Extraction + detection per page with warm caches and with the caches evicted between pages.

    .venv/bin/python benchmarks/cache_bench.py [--pages 300] [--sizes small,large,markup]

Inside a crawl, Scrapy's own work runs between two pages' extraction and detection, so each page
starts with cold CPU caches; in a loop over pages they stay warm. This prints both per page (best of
three passes; the crawl_bench page shapes): the gap is what processing several items back to back could
win. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVICT_BYTES = 64 * 1024 * 1024  # larger than the last-level cache of the machines this runs on


def per_page_ms(docs: list, texts: list[str], evict) -> float:
    from crawler.pipelines.extract import page_text
    from detectors import get_engine

    engine = get_engine()
    total = 0.0
    for doc, text in zip(docs, texts):
        if evict is not None:
            evict()
        start = time.process_time()
        page_text(doc)
        engine.detect(text, title="", url="", gate=False)
        total += time.process_time() - start
    return total / len(docs) * 1000


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np

    from crawl_bench import SIZES, render_page
    from crawler.pipelines.extract import _parse, page_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--sizes", default="small,large,markup")
    args = parser.parse_args(argv)
    junk = np.ones(EVICT_BYTES // 8)
    print(f"{'页面':<8}{'缓存热 毫秒/页':>14}{'每页前清缓存 毫秒/页':>20}{'倍数':>8}")
    for size in args.sizes.split(","):
        size_bytes, share = SIZES[size.strip()]
        docs = [_parse(render_page(i, 5000, size_bytes, share).decode("utf-8")) for i in range(args.pages)]
        texts = [page_text(doc) for doc in docs]
        warm = min(per_page_ms(docs, texts, None) for _ in range(3))
        cold = min(per_page_ms(docs, texts, junk.sum) for _ in range(3))
        print(f"{size:<10}{warm:>14.3f}{cold:>22.3f}{cold / warm:>10.1f}")


if __name__ == "__main__":
    main()

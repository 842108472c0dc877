"""xunjian's bundled demo site: a local replica of the places inspectors patrol.

- ``start_demo_server()`` runs ``python -m crawler.demo.server`` in a subprocess (see ``process``).
- ``load_answer_key()`` gives the ground truth for every page (see ``answer_key``).
- ``SOURCES_FILE`` is the demo's source registry; its base URL is ``${XUNJIAN_DEMO_URL}``.
"""

from pathlib import Path

from crawler.demo.answer_key import AnswerKey, load_answer_key
from crawler.demo.process import DemoServerProcess, start_demo_server

SOURCES_FILE = Path(__file__).resolve().parent / "sources.toml"
DEMO_SOURCES = SOURCES_FILE  # alias used by the CLI and its tests

__all__ = ["AnswerKey", "DEMO_SOURCES", "DemoServerProcess", "SOURCES_FILE", "load_answer_key", "start_demo_server"]

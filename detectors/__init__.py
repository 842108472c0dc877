"""xunjian's detection engine: text in, findings out.

    from detectors import get_engine
    result = get_engine().detect(text, title=None, url=None)

Pure Python; imports nothing from the crawler, storage or any database layer.
"""

from .engine import Engine, get_engine
from .errors import RulePackError
from .model import CATEGORIES, CATEGORY_LABELS, DocumentResult, Finding, GateVerdict

__all__ = ["CATEGORIES", "CATEGORY_LABELS", "DocumentResult", "Engine", "Finding", "GateVerdict",
           "RulePackError", "get_engine"]

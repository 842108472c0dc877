"""Errors raised by the detection engine.

    Exception
     └── RulePackError      a rule pack (YAML under detectors/rules/) is malformed

Every message is one line naming the file, the rule (or lexicon) and the field at fault, in the
Simplified Chinese an inspector reads.  The offending parts are also kept as attributes.
"""

from __future__ import annotations


class RulePackError(Exception):
    """A rule pack failed validation while loading."""

    def __init__(self, path: str, item: str | None, field: str | None, problem: str):
        self.path = str(path)
        self.item = item
        self.field = field
        self.problem = problem
        where = self.path
        if item:
            where += f"：{item}" if item.startswith("词表") else f"：规则 {item}"
        if field:
            where += f"：字段 {field}"
        super().__init__(f"规则包错误 {where}：{problem}")

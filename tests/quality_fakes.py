"""Deliberately broken engines for proving that a quality threshold can fail."""

from __future__ import annotations


class Result:
    def __init__(self, categories):
        self.categories = categories


class DropCategory:
    """The real engine with one category's findings removed: recall of that category collapses."""

    def __init__(self, engine, category):
        self.engine, self.category = engine, category

    def detect(self, text, title=None, url=None):
        result = self.engine.detect(text, title=title, url=url)
        return Result([c for c in result.categories if c != self.category])


class FlagEverything:
    """Flags every document with the given categories: precision and the news rule must fail."""

    def __init__(self, categories):
        self.categories = list(categories)

    def detect(self, text, title=None, url=None):
        return Result(self.categories)

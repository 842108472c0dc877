"""Regexes run only where they can match.

For each pattern the set of literal strings one of which every match must contain (its
*triggers*) is read from the parsed pattern, and its greatest match width.  The triggers join the
Aho-Corasick automaton; the regex then runs only in small windows around trigger hits instead of
over the whole text.  A pattern without usable triggers runs over the whole text.
"""

from __future__ import annotations

import re
from re import _constants as C  # noqa: N812  (the stdlib parser's opcode names)
from re import _parser

MAX_WINDOW = 64  # bound used for unbounded patterns ([0-9]+ and the like)
MERGE_GAP = 160  # windows closer than this are scanned as one (fewer regex calls)


def _small_class(op, av) -> list[str] | None:
    """Characters of a small class (``[0-9]``, ``[3-9]``), or of a repeat (min >= 1) of one."""
    if op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1 and len(av[2]) == 1:
        op, av = av[2][0]
    if op is C.IN:
        chars = _chars_of_class(av)
        if chars is not None and len(chars) <= 12:
            return chars
    return None


def _literal_alternatives(op, av) -> list[str] | None:
    """The strings of a group made only of literal alternatives (``(?:元|块钱)``), if few."""
    if op not in (C.SUBPATTERN, C.BRANCH):
        return None
    try:
        strings = _expand([(op, av)])
    except _TooBig:
        return None
    return strings if 0 < len(strings) <= 12 and all(strings) else None


def _rank(cands: set[str]) -> tuple[int, bool]:
    """Longer triggers are rarer; at equal length, mostly digit-bearing ones (``0万``) beat words."""
    return min(map(len, cands)), sum(any(ch.isdigit() for ch in c) for c in cands) * 2 > len(cands)


def _required(seq, products: bool = False) -> set[str] | None:
    """Literals one of which every match of the parsed sequence contains (None if unknown).

    A literal run next to a small class becomes the product (``[0-9]分`` -> ``0分``…``9分``,
    ``1[3-9]`` -> ``13``…``19``): longer, rarer triggers mean fewer regex windows.  With
    ``products``, a literal run followed by a group of literal alternatives does too
    (``每(?:人|节)`` -> ``每人``, ``每节``).
    """
    best: set[str] | None = None
    run: list[str] = []
    before: list[str] | None = None  # small class right before the current literal run

    def consider(cands: set[str] | None) -> None:
        nonlocal best
        if cands and (best is None or _rank(cands) > _rank(best)):
            best = cands

    def flush(after: list[str] | None) -> None:
        if not run:
            return
        text = "".join(run)
        consider({text})
        if before:
            consider({c + text for c in before})
        if after:
            consider({text + c for c in after})

    items = list(seq)
    alts_before: list[str] | None = None  # literal alternatives of the previous group, if any
    for op, av in items:
        if op is C.LITERAL:
            run.append(chr(av))
            alts_before = None
            continue
        cls = _small_class(op, av)
        flush(cls)
        if cls and alts_before:  # (?:数学|语文)[0-9] -> 数学0 … 语文9
            consider({a + c for a in alts_before for c in cls})
        alts = _literal_alternatives(op, av)
        if alts and before and not run:  # [0-9](?:元|块) -> 0元 … 9块
            consider({c + a for c in before for a in alts})
        if products and alts and run:
            text = "".join(run)
            consider({text + a for a in alts})
        run = []
        before = cls
        alts_before = alts
        if op is C.SUBPATTERN:
            consider(_required(av[-1]))
        elif op is C.BRANCH:
            alts = [_required(alt) for alt in av[1]]
            if all(alts):
                consider(set().union(*alts))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[0] >= 1:
            consider(_required(av[2]))
        elif op is C.IN and len(av) <= 4 and all(o is C.LITERAL for o, _ in av):
            consider({chr(c) for _, c in av})
    flush(None)
    return best


def analyse(pattern: str, products: bool = False) -> tuple[tuple[str, ...], int]:
    """(triggers, window): triggers may be empty (then scan everything)."""
    parsed = _parser.parse(pattern)
    triggers = _required(parsed, products) or set()
    width = parsed.getwidth()[1]
    window = min(width, MAX_WINDOW) if width < C.MAXREPEAT else MAX_WINDOW
    # the window is measured from a trigger's start, so it must also cover the trigger itself
    return tuple(sorted(triggers)), window + max(map(len, triggers), default=0) + 2


def max_width(pattern: str) -> int:
    """Greatest length of a match (``re``'s MAXREPEAT when unbounded)."""
    return _parser.parse(pattern).getwidth()[1]


def windows(positions: list[int], window: int, length: int) -> list[tuple[int, int]]:
    """Merged ``[pos - window, pos + window]`` ranges, clipped to the text."""
    out: list[tuple[int, int]] = []
    positions = sorted(positions)
    lo = hi = None
    for p in positions:
        if hi is not None and p - window <= hi + MERGE_GAP:
            hi = p + window
            continue
        if hi is not None:
            out.append((lo if lo > 0 else 0, hi if hi < length else length))
        lo, hi = p - window, p + window
    if hi is not None:
        out.append((lo if lo > 0 else 0, hi if hi < length else length))
    return out


def find_in_windows(pattern: re.Pattern, text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Non-empty matches inside the windows (lookbehinds may still look before a window)."""
    found: list[tuple[int, int, int]] = []
    last_end = -1
    for a, b in spans:
        for m in pattern.finditer(text, a, b):
            start, end = m.span()
            if end > start and start >= last_end:
                found.append((start, end, 0))
                last_end = end
    return found


def starts_with_trigger(pattern: str, triggers: tuple[str, ...]) -> bool:
    """Does every match of ``pattern`` begin with one of ``triggers``?

    Read from the pattern's leading items that denote a small finite set of strings (leading
    zero-width assertions skipped): when each such prefix begins with a trigger, a match can only
    start where the automaton reports a trigger, and the regex need only be tried there.
    """
    if not triggers:
        return False
    parsed = _parser.parse(pattern)
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return False
    items = list(parsed)
    k = 0
    while k < len(items) and items[k][0] in (C.ASSERT, C.ASSERT_NOT, C.AT):
        k += 1
    prefixes = [""]
    for op, av in items[k:]:
        if op in (C.ASSERT, C.ASSERT_NOT, C.AT):
            break
        try:
            alts = _expand([(op, av)])
        except _TooBig:
            break
        grown = [a + b for a in prefixes for b in alts]
        if len(grown) > _EXPANSION_LIMIT:
            break
        prefixes = grown
    return all(any(p.startswith(t) for t in triggers) for p in prefixes)


def match_at(pattern: re.Pattern, text: str, starts: list[int], spans: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """What ``find_in_windows`` finds, for a pattern whose matches all begin at a trigger start:
    the pattern is tried only at the (sorted, distinct) ``starts``, each against the end of the
    window holding it; a start inside the previous match is skipped, as a scan would."""
    found: list[tuple[int, int, int]] = []
    last_end = -1
    i, n = 0, len(starts)
    match = pattern.match
    for a, b in spans:
        while i < n and starts[i] < a:
            i += 1
        while i < n and starts[i] < b:
            s = starts[i]
            i += 1
            if s < last_end:
                continue
            m = match(text, s, b)
            if m is not None:
                end = m.end()
                if end > s:
                    found.append((s, end, 0))
                    last_end = end
    return found


_EXPANSION_LIMIT = 1000
_DIGIT_CLASS = [(C.RANGE, (ord("0"), ord("9")))]


class _TooBig(Exception):
    pass


def _chars_of_class(av) -> list[str] | None:
    chars: list[str] = []
    for op, val in av:
        if op is C.LITERAL:
            chars.append(chr(val))
        elif op is C.RANGE and val[1] - val[0] < 16:
            chars.extend(chr(c) for c in range(val[0], val[1] + 1))
        else:
            return None
    return chars


def _expand(seq) -> list[str]:
    """All strings the parsed sequence matches; raises _TooBig when not small and finite."""
    out = [""]
    for op, av in seq:
        if op is C.LITERAL:
            alts = [chr(av)]
        elif op is C.IN:
            alts = _chars_of_class(av)
            if alts is None:
                raise _TooBig
        elif op is C.SUBPATTERN:
            alts = _expand(av[-1])
        elif op is C.BRANCH:
            alts = [s for alt in av[1] for s in _expand(alt)]
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT) and av[1] <= 3:
            inner = _expand(av[2])
            alts = []
            for count in range(av[0], av[1] + 1):
                level = [""]
                for _ in range(count):
                    level = [a + b for a in level for b in inner]
                alts.extend(level)
        else:
            raise _TooBig
        out = [a + b for a in out for b in alts]
        if len(out) > _EXPANSION_LIMIT:
            raise _TooBig
    return out


def _is_digit_guard(op, av, behind: bool) -> bool:
    """``(?<![0-9])`` at the start or ``(?![0-9])`` at the end of a pattern."""
    if op is not C.ASSERT_NOT or (av[0] == -1) != behind:
        return False
    inner = list(av[1])
    return len(inner) == 1 and inner[0][0] is C.IN and list(inner[0][1]) == _DIGIT_CLASS


def literal_expansion(pattern: str) -> list[str] | None:
    """The finite set of strings a pattern matches, if small (then it can be plain terms).

    A leading ``(?<![0-9])`` / trailing ``(?![0-9])`` is allowed when every expansion starts /
    ends with a digit: the automaton's whole-word check on digit edges does the same job.
    """
    items = list(_parser.parse(pattern))
    lead = bool(items) and _is_digit_guard(*items[0], behind=True)
    trail = bool(items) and _is_digit_guard(*items[-1], behind=False)
    core = items[1 if lead else 0:len(items) - 1 if trail else len(items)]
    try:
        strings = _expand(core)
    except _TooBig:
        return None
    if not strings or any(not s for s in strings):
        return None
    if lead and not all(s[0].isdigit() for s in strings):
        return None
    if trail and not all(s[-1].isdigit() for s in strings):
        return None
    return sorted(set(strings))

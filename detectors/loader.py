"""Loading and validating rule packs (YAML files under ``detectors/rules/``).

A pack holds a ``version``, optional named ``lexicons`` (term sets and regexes shared by every pack)
and optional ``rules``.  Every problem raises ``RulePackError`` naming file, rule id and field.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import RulePackError
from .model import CATEGORIES
from .variants import VARIANT_OPTIONS

PACK_FIELDS = {"version", "description", "lexicons", "rules"}
LEXICON_FIELDS = {"terms", "regex", "include", "variants", "variant_context", "variant_window", "description"}
RULE_FIELDS = {"id", "category", "subcategory", "severity", "basis", "explanation", "anchor",
               "anchor_regex", "near", "doc", "unless_near", "unless_doc", "unless_category",
               "audience", "escalate", "quoted", "examples", "note"}
CONDITION_FIELDS = {"any", "window"}
ESCALATE_FIELDS = {"doc", "severity"}
EXAMPLE_FIELDS = {"match", "no_match"}
AUDIENCES = ("k12", "preschool", "minor", "adult", "not_adult")
SUBCATEGORY_PREFIX = {"banned_ad": "BA", "exaggerated_marketing": "EM",
                      "disguised_tutoring": "DT", "minor_training_ad": "MT"}
PLACEHOLDERS = {"match", "near"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True)
class Lexicon:
    name: str
    terms: tuple[str, ...]
    regex: tuple[str, ...]
    variants: tuple[str, ...]
    variant_context: str | None
    variant_window: int
    source: str
    include: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Condition:
    lexicons: tuple[str, ...]
    window: int | None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    subcategory: str
    severity: int
    basis: str
    explanation: str
    anchor: tuple[str, ...]
    near: tuple[Condition, ...]
    doc: tuple[Condition, ...]
    unless_near: tuple[Condition, ...]
    unless_doc: tuple[Condition, ...]
    unless_category: tuple[str, ...]
    audience: tuple[str, ...]
    escalate: tuple[tuple[tuple[Condition, ...], int], ...]
    quoted: bool
    examples_match: tuple[str, ...]
    examples_no_match: tuple[str, ...]
    source: str


@dataclass(slots=True)
class RuleSet:
    lexicons: dict[str, Lexicon] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return "+".join(sorted(set(self.versions.values())))


class _Ctx:
    """Where we are in a pack, for error messages."""

    def __init__(self, path: str, item: str | None = None):
        self.path, self.item = path, item

    def fail(self, fld: str | None, problem: str) -> RulePackError:
        return RulePackError(self.path, self.item, fld, problem)

    def check_fields(self, data: dict, allowed: set[str], prefix: str = "") -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(prefix + str(key), f"未知字段（允许：{'、'.join(sorted(allowed))}）")

    def want(self, data: dict, key: str, kind: type | tuple, required: bool = True, prefix: str = ""):
        if key not in data or data[key] is None:
            if required:
                raise self.fail(prefix + key, "缺少必填字段")
            return None
        value = data[key]
        if isinstance(value, bool) and kind is int:
            raise self.fail(prefix + key, f"类型错误：应为{_type_name(kind)}，实为布尔值")
        if not isinstance(value, kind):
            raise self.fail(prefix + key, f"类型错误：应为{_type_name(kind)}，实为{type(value).__name__}")
        return value

    def str_list(self, data: dict, key: str, required: bool = False, prefix: str = "") -> tuple[str, ...]:
        value = self.want(data, key, list, required, prefix)
        if value is None:
            return ()
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.fail(f"{prefix}{key}[{i}]", "类型错误：应为非空字符串")
        return tuple(value)


def _type_name(kind) -> str:
    names = {str: "字符串", int: "整数", list: "列表", dict: "映射", bool: "布尔值"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return "或".join(names.get(k, k.__name__) for k in kinds)


def _compile(ctx: _Ctx, fld: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ctx.fail(fld, f"正则表达式无效：{exc}") from None
    except (OverflowError, RecursionError) as exc:  # a{4294967296}; a thousand nested groups
        problem = "重复次数过大" if isinstance(exc, OverflowError) else "括号嵌套过深"
        raise ctx.fail(fld, f"正则表达式无效：{problem}") from None


def _parse_lexicon(path: str, name: str, data) -> Lexicon:
    ctx = _Ctx(path, f"词表 {name}")
    if not isinstance(data, dict):
        raise ctx.fail(None, "词表应为映射")
    ctx.check_fields(data, LEXICON_FIELDS)
    terms = ctx.str_list(data, "terms")
    regex = ctx.str_list(data, "regex")
    for i, pattern in enumerate(regex):
        _compile(ctx, f"regex[{i}]", pattern)
    include = ctx.str_list(data, "include")
    for i, ref in enumerate(include):
        if not ref.startswith("@"):
            raise ctx.fail(f"include[{i}]", "应为 @词表名")
    if not terms and not regex and not include:
        raise ctx.fail("terms", "词表至少要有 terms、regex 或 include")
    variants = ctx.str_list(data, "variants")
    for i, v in enumerate(variants):
        if v not in VARIANT_OPTIONS:
            raise ctx.fail(f"variants[{i}]", f"未知变体类型 {v}（允许：{'、'.join(VARIANT_OPTIONS)}）")
    context = ctx.want(data, "variant_context", str, required=False)
    if context is not None and not context.startswith("@"):
        raise ctx.fail("variant_context", "应为 @词表名")
    if {"initials", "homophones"} & set(variants) and context is None:
        raise ctx.fail("variant_context", "生成首字母或谐音变体的词表必须给出 variant_context（@词表名）")
    window = ctx.want(data, "variant_window", int, required=False)
    if window is not None and not 1 <= window <= 200:
        raise ctx.fail("variant_window", f"取值 {window} 超出范围 1–200")
    return Lexicon(name, terms, regex, variants, context[1:] if context else None, window or 12, path,
                   tuple(ref[1:] for ref in include))


def _parse_conditions(ctx: _Ctx, data: dict, key: str, implicit: dict, windowed: bool) -> tuple[Condition, ...]:
    value = ctx.want(data, key, list, required=False)
    if value is None:
        return ()
    out = []
    for i, cond in enumerate(value):
        fld = f"{key}[{i}]"
        if not isinstance(cond, dict):
            raise ctx.fail(fld, "类型错误：应为映射 {any: [...], window: N}")
        ctx.check_fields(cond, CONDITION_FIELDS if windowed else {"any"}, prefix=fld + ".")
        items = ctx.str_list(cond, "any", required=True, prefix=fld + ".")
        if not items:
            raise ctx.fail(fld + ".any", "不能为空")
        window = None
        if windowed:
            window = ctx.want(cond, "window", int, prefix=fld + ".")
            if not 1 <= window <= 500:
                raise ctx.fail(fld + ".window", f"取值 {window} 超出范围 1–500")
        out.append(Condition(_refs(ctx, fld, items, implicit), window))
    return tuple(out)


def _refs(ctx: _Ctx, fld: str, items: tuple[str, ...], implicit: dict) -> tuple[str, ...]:
    """Split ``@lexicon`` references from literal terms; literals become an implicit lexicon."""
    refs = [item[1:] for item in items if item.startswith("@")]
    literals = tuple(item for item in items if not item.startswith("@"))
    if literals:
        name = f"{ctx.item}:{fld}"
        implicit[name] = Lexicon(name, literals, (), (), None, 12, ctx.path)
        refs.append(name)
    return tuple(refs)


def _parse_rule(path: str, data, implicit: dict) -> Rule:
    ctx = _Ctx(path)
    if not isinstance(data, dict):
        raise ctx.fail("rules", "每条规则应为映射")
    rule_id = data.get("id")
    if not isinstance(rule_id, str) or not _ID_RE.match(rule_id):
        raise ctx.fail("id", f"规则编号缺失或格式错误：{rule_id!r}")
    ctx.item = rule_id
    ctx.check_fields(data, RULE_FIELDS)
    category = ctx.want(data, "category", str)
    if category not in CATEGORIES:
        raise ctx.fail("category", f"未知类别 {category}（允许：{'、'.join(CATEGORIES)}）")
    sub = ctx.want(data, "subcategory", str)
    if not re.fullmatch(SUBCATEGORY_PREFIX[category] + r"[0-9]+", sub):
        raise ctx.fail("subcategory", f"{sub} 与类别 {category} 不符（应为 {SUBCATEGORY_PREFIX[category]}1 这样的编号）")
    severity = ctx.want(data, "severity", int)
    if not 1 <= severity <= 5:
        raise ctx.fail("severity", f"取值 {severity} 超出范围 1–5")
    basis = ctx.want(data, "basis", str)
    explanation = ctx.want(data, "explanation", str)
    for _, name, _, _ in string.Formatter().parse(explanation):
        if name is not None and name not in PLACEHOLDERS:
            raise ctx.fail("explanation", f"未知占位符 {{{name}}}（允许：{{match}}、{{near}}）")
    anchor_items = ctx.str_list(data, "anchor")
    anchor = list(_refs(ctx, "anchor", anchor_items, implicit)) if anchor_items else []
    anchor_regex = ctx.str_list(data, "anchor_regex")
    for i, pattern in enumerate(anchor_regex):
        _compile(ctx, f"anchor_regex[{i}]", pattern)
    if anchor_regex:
        name = f"{rule_id}:anchor_regex"
        implicit[name] = Lexicon(name, (), anchor_regex, (), None, 12, path)
        anchor.append(name)
    if not anchor:
        raise ctx.fail("anchor", "规则至少要有 anchor 或 anchor_regex")
    audience = ctx.str_list(data, "audience")
    for i, a in enumerate(audience):
        if a not in AUDIENCES:
            raise ctx.fail(f"audience[{i}]", f"未知受众 {a}（允许：{'、'.join(AUDIENCES)}）")
    unless_category = ctx.str_list(data, "unless_category")
    for i, c in enumerate(unless_category):
        if c not in CATEGORIES:
            raise ctx.fail(f"unless_category[{i}]", f"未知类别 {c}")
    escalate = []
    for i, esc in enumerate(ctx.want(data, "escalate", list, required=False) or []):
        fld = f"escalate[{i}]"
        if not isinstance(esc, dict):
            raise ctx.fail(fld, "类型错误：应为映射 {doc: [...], severity: N}")
        ctx.check_fields(esc, ESCALATE_FIELDS, prefix=fld + ".")
        sev = ctx.want(esc, "severity", int, prefix=fld + ".")
        if not 1 <= sev <= 5:
            raise ctx.fail(fld + ".severity", f"取值 {sev} 超出范围 1–5")
        sub_ctx = _Ctx(path, rule_id)
        conds = _parse_conditions(sub_ctx, esc, "doc", implicit, windowed=False)
        escalate.append((conds, sev))
    quoted = ctx.want(data, "quoted", bool, required=False) or False
    examples = data.get("examples")
    if not isinstance(examples, dict):
        raise ctx.fail("examples", "缺少示例：需要 examples.match 与 examples.no_match")
    ctx.check_fields(examples, EXAMPLE_FIELDS, prefix="examples.")
    match = ctx.str_list(examples, "match", required=True, prefix="examples.")
    no_match = ctx.str_list(examples, "no_match", required=True, prefix="examples.")
    if not match or not no_match:
        raise ctx.fail("examples", "examples.match 与 examples.no_match 都至少需要一条")
    return Rule(
        id=rule_id, category=category, subcategory=sub, severity=severity, basis=basis,
        explanation=explanation, anchor=tuple(anchor),
        near=_parse_conditions(ctx, data, "near", implicit, windowed=True),
        doc=_parse_conditions(ctx, data, "doc", implicit, windowed=False),
        unless_near=_parse_conditions(ctx, data, "unless_near", implicit, windowed=True),
        unless_doc=_parse_conditions(ctx, data, "unless_doc", implicit, windowed=False),
        unless_category=unless_category, audience=audience, escalate=tuple(escalate),
        quoted=quoted, examples_match=match, examples_no_match=no_match, source=path,
    )


def load_pack(path: Path, ruleset: RuleSet) -> None:
    """Parse one pack file into ``ruleset`` (lexicon and rule names must stay unique)."""
    name = path.name
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行" if mark else ""
        raise RulePackError(name, None, None, f"YAML 语法错误{where}：{getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulePackError(name, None, None, f"无法读取：{exc}") from None
    ctx = _Ctx(name)
    if not isinstance(data, dict):
        raise ctx.fail(None, "规则包顶层应为映射（version、lexicons、rules）")
    ctx.check_fields(data, PACK_FIELDS)
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        raise ctx.fail("version", "缺少规则包版本号（字符串，如 \"2026.11.1\"）")
    lexicons = ctx.want(data, "lexicons", dict, required=False) or {}
    for lex_name, lex_data in lexicons.items():
        if lex_name in ruleset.lexicons:
            raise RulePackError(name, f"词表 {lex_name}", None,
                                f"词表名重复（已在 {ruleset.lexicons[lex_name].source} 定义）")
        ruleset.lexicons[lex_name] = _parse_lexicon(name, str(lex_name), lex_data)
    seen = {r.id: r.source for r in ruleset.rules}
    implicit: dict[str, Lexicon] = {}
    for raw in ctx.want(data, "rules", list, required=False) or []:
        rule = _parse_rule(name, raw, implicit)
        if rule.id in seen:
            raise RulePackError(name, rule.id, "id", f"规则编号重复（已在 {seen[rule.id]} 定义）")
        seen[rule.id] = name
        ruleset.rules.append(rule)
    ruleset.lexicons.update(implicit)
    ruleset.versions[name] = version.strip()


def check_references(ruleset: RuleSet, required: tuple[str, ...] = ()) -> None:
    """Every ``@name`` must name a lexicon; the gate's lexicons must exist."""
    lex = ruleset.lexicons
    _resolve_includes(ruleset)
    for lexicon in lex.values():
        if lexicon.variant_context and lexicon.variant_context not in lex:
            raise RulePackError(lexicon.source, f"词表 {lexicon.name}", "variant_context",
                                f"引用了不存在的词表 @{lexicon.variant_context}")
    for rule in ruleset.rules:
        groups = [("anchor", Condition(rule.anchor, None))]
        for key in ("near", "doc", "unless_near", "unless_doc"):
            groups += [(f"{key}[{i}]", c) for i, c in enumerate(getattr(rule, key))]
        for i, (conds, _) in enumerate(rule.escalate):
            groups += [(f"escalate[{i}].doc[{j}]", c) for j, c in enumerate(conds)]
        for fld, cond in groups:
            for ref in cond.lexicons:
                if ref not in lex:
                    raise RulePackError(rule.source, rule.id, fld, f"引用了不存在的词表 @{ref}")
    for name in required:
        if name not in lex:
            raise RulePackError("gate.yaml", f"词表 {name}", None, "文档闸门需要此词表，但没有任何规则包定义它")


def _resolve_includes(ruleset: RuleSet) -> None:
    """Replace each ``include`` by its transitive closure; unknown names and cycles are errors.

    Included lexicons are not copied: the matcher adds their hits (variants and guards included)
    to the including lexicon after the scan.
    """
    lex = ruleset.lexicons
    closure: dict[str, tuple[str, ...]] = {}

    def resolve(name: str, stack: tuple[str, ...]) -> tuple[str, ...]:
        if name in closure:
            return closure[name]
        lexicon = lex[name]
        out: list[str] = []
        for i, ref in enumerate(lexicon.include):
            if ref not in lex:
                raise RulePackError(lexicon.source, f"词表 {name}", f"include[{i}]", f"引用了不存在的词表 @{ref}")
            if ref in stack:
                raise RulePackError(lexicon.source, f"词表 {name}", f"include[{i}]", f"循环引用 @{ref}")
            for sub in (ref,) + resolve(ref, stack + (ref,)):
                if sub not in out:
                    out.append(sub)
        closure[name] = tuple(out)
        return closure[name]

    for name in list(lex):
        if lex[name].include:
            lexicon = lex[name]
            lex[name] = Lexicon(name, lexicon.terms, lexicon.regex, lexicon.variants, lexicon.variant_context,
                                lexicon.variant_window, lexicon.source, resolve(name, (name,)))


def load_rules(directory: Path, required: tuple[str, ...] = ()) -> RuleSet:
    """Load every ``*.yaml`` pack in ``directory`` (sorted by name) and check references."""
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RulePackError(str(directory), None, None, "目录下没有任何 .yaml 规则包")
    ruleset = RuleSet()
    for path in files:
        load_pack(path, ruleset)
    check_references(ruleset, required)
    return ruleset

"""Every rule carries its own matches and near misses, and a malformed pack is refused by name."""

from __future__ import annotations

import functools

import shutil
from pathlib import Path

import pytest

from detectors import Engine, RulePackError, get_engine
from detectors.engine import RULES_DIR
from detectors.loader import load_rules
from detectors.gate import GATE_LEXICONS

_RULESET = load_rules(RULES_DIR, required=GATE_LEXICONS)
_CASES = [(rule.id, "match", text) for rule in _RULESET.rules for text in rule.examples_match]
_CASES += [(rule.id, "no_match", text) for rule in _RULESET.rules for text in rule.examples_no_match]


def test_every_rule_has_both_kinds_of_examples():
    assert _RULESET.rules, "no rules loaded"
    for rule in _RULESET.rules:
        assert rule.examples_match, f"{rule.id} has no examples.match"
        assert rule.examples_no_match, f"{rule.id} has no examples.no_match"


@functools.lru_cache(maxsize=1)
def _rules_engine() -> Engine:
    """Rule examples judge the rules alone, not the learned scorer's veto or additions."""
    return Engine(mode="rules")


@pytest.mark.parametrize(("rule_id", "kind", "text"), _CASES, ids=[f"{r}-{k}-{i}" for i, (r, k, _) in enumerate(_CASES)])
def test_rule_example(rule_id: str, kind: str, text: str):
    result = _rules_engine().detect(text)
    hits = [f for f in result.findings if f.rule == rule_id]
    found = "\n".join(f"  {f.rule} [{f.start}:{f.end}] {f.text!r}" for f in result.findings) or "  (none)"
    context = f"\ntext: {text}\ngate: {result.gate.to_dict()}\nfindings:\n{found}"
    if kind == "match":
        assert hits, f"{rule_id} should match:{context}"
        for f in hits:
            assert text[f.start:f.end] == f.text
    else:
        assert not hits, f"{rule_id} should not match:{context}"


# --- malformed packs -------------------------------------------------------------------------

_GOOD_RULE = """\
  - id: {rid}
    category: exaggerated_marketing
    subcategory: EM4
    severity: {severity}
    basis: 《中华人民共和国广告法》第九条第（三）项
    explanation: 使用绝对化用语“{{match}}”。
    anchor: [全城最棒]
{extra}{examples}"""
_EXAMPLES = """\
    examples:
      match: [全城最棒的美术班，欢迎咨询13800001111。]
      no_match: [美术班欢迎咨询13800001111。]
"""


def _pack_dir(tmp_path: Path, body: str) -> Path:
    """The real packs plus one extra pack ``zz_bad.yaml`` holding ``body``."""
    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target)
    (target / "zz_bad.yaml").write_text(body, encoding="utf-8")
    return target


def _rule(rid="ZZ.bad", severity="2", extra="", examples=_EXAMPLES) -> str:
    return 'version: "2026.11.1"\nrules:\n' + _GOOD_RULE.format(rid=rid, severity=severity, extra=extra,
                                                               examples=examples)


BAD_PACKS = {
    "unknown-field": (_rule(extra="    colour: red\n"), "ZZ.bad", "colour"),
    "bad-regex": (_rule(extra="    anchor_regex: ['(最棒']\n"), "ZZ.bad", "anchor_regex[0]"),
    "severity-out-of-range": (_rule(severity="7"), "ZZ.bad", "severity"),
    "severity-wrong-type": (_rule(severity='"high"'), "ZZ.bad", "severity"),
    "missing-examples": (_rule(examples=""), "ZZ.bad", "examples"),
    "empty-no-match": (_rule(examples="    examples:\n      match: [全城最棒]\n      no_match: []\n"), "ZZ.bad",
                       "examples"),
    "duplicate-id": (_rule(rid="EM1.guarantee"), "EM1.guarantee", "id"),
    "unknown-category": (_rule().replace("category: exaggerated_marketing", "category: fake_news"), "ZZ.bad",
                         "category"),
    "unknown-lexicon": (_rule().replace("anchor: [全城最棒]", 'anchor: ["@no_such_lexicon"]'), "ZZ.bad", "anchor"),
    "bad-placeholder": (_rule().replace("{match}", "{matched}"), "ZZ.bad", "explanation"),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKS))
def test_malformed_pack_is_refused_naming_file_rule_and_field(tmp_path: Path, case: str):
    body, rule_id, field = BAD_PACKS[case]
    rules_dir = _pack_dir(tmp_path, body)
    with pytest.raises(RulePackError) as info:
        Engine(rules_dir)
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert err.path == "zz_bad.yaml" and "zz_bad.yaml" in message
    assert err.item == rule_id and rule_id in message
    assert err.field == field and field in message


def test_the_good_extra_rule_loads_and_matches(tmp_path: Path):
    engine = Engine(_pack_dir(tmp_path, _rule()))
    result = engine.detect("全城最棒的美术班，欢迎咨询13800001111。")
    assert [f.rule for f in result.findings if f.rule == "ZZ.bad"] == ["ZZ.bad"]


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    rules_dir = _pack_dir(tmp_path, 'version: "1"\nrules:\n  - id: [unclosed\n')
    with pytest.raises(RulePackError) as info:
        Engine(rules_dir)
    assert info.value.path == "zz_bad.yaml"
    assert "行" in str(info.value)


def test_missing_version_is_refused(tmp_path: Path):
    rules_dir = _pack_dir(tmp_path, "rules: []\n")
    with pytest.raises(RulePackError) as info:
        Engine(rules_dir)
    assert info.value.path == "zz_bad.yaml" and info.value.field == "version"


def test_lexicon_errors_name_the_lexicon(tmp_path: Path):
    body = 'version: "1"\nlexicons:\n  zz_terms:\n    terms: [甲乙]\n    variants: [morse]\n'
    with pytest.raises(RulePackError) as info:
        Engine(_pack_dir(tmp_path, body))
    assert info.value.item == "词表 zz_terms" and info.value.field == "variants[0]"


# --- the same checks from the command line -------------------------------------------------------

def test_rules_cli_check_and_test_pass_on_the_bundled_packs():
    from tests.conftest import run_cli

    check = run_cli("rules", "check")
    assert check.code == 0 and "规则包有效" in check.out, check.err
    test = run_cli("rules", "test")
    assert test.code == 0, test.err
    assert f"{len(_CASES)}/{len(_CASES)} 个示例通过" in test.out


def test_rules_cli_reports_a_failing_example_and_a_bad_pack(tmp_path: Path):
    from tests.conftest import run_cli

    wrong = _EXAMPLES.replace("no_match: [美术班欢迎咨询13800001111。]", "no_match: [全城最棒的舞蹈班，电话13800001111。]")
    failing = run_cli("rules", "test", str(_pack_dir(tmp_path / "a", _rule(examples=wrong))))
    assert failing.code == 1
    assert "错误：规则 ZZ.bad 不应命中：全城最棒的舞蹈班" in failing.err, failing.err
    broken = run_cli("rules", "check", str(_pack_dir(tmp_path / "b", _rule(severity="7"))))
    assert broken.code == 1
    lines = broken.err.strip().splitlines()
    assert len(lines) == 1 and "zz_bad.yaml" in lines[0] and "severity" in lines[0], broken.err

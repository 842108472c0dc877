"""``xunjian rules check`` and ``xunjian rules test``: the rule packs, validated and self-tested."""

from __future__ import annotations

from collections import Counter

import click
from rich.table import Table

from crawler.console import CATEGORY_NAMES, make_console


def _engine(directory: str | None):
    from detectors import Engine, RulePackError
    from detectors.engine import RULES_DIR

    try:
        return Engine(directory or RULES_DIR, mode="rules")
    except RulePackError as exc:
        click.echo(f"错误：{exc}", err=True)
        raise SystemExit(1) from None


@click.group("rules")
def rules() -> None:
    """Validate and test the detection rule packs."""


@rules.command("check")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
def rules_check(directory: str | None) -> None:
    """Load and validate the rule packs (default: the bundled detectors/rules)."""
    engine = _engine(directory)
    per_category = Counter(r.category for r in engine.rules)
    table = Table(title=f"规则包有效：{len(engine.rules)} 条规则，版本 {engine.rules_version}", header_style="bold")
    table.add_column("类别")
    table.add_column("规则数", justify="right")
    for category, count in sorted(per_category.items()):
        table.add_row(CATEGORY_NAMES.get(category, category), str(count))
    make_console().print(table)


@rules.command("test")
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False))
def rules_test(directory: str | None) -> None:
    """Run every rule's examples.match and examples.no_match; exit 1 on any failure."""
    from detectors.examples import rules_without_examples, run_examples

    engine = _engine(directory)
    missing = rules_without_examples(engine)
    outcomes = run_examples(engine)
    failed = [o for o in outcomes if not o.passed]
    for rule_id in missing:
        click.echo(f"错误：规则 {rule_id} 缺少 examples.match 或 examples.no_match", err=True)
    for o in failed:
        expect = "应命中" if o.kind == "match" else "不应命中"
        click.echo(f"错误：规则 {o.rule} {expect}：{o.text}（实际命中：{', '.join(o.found) or '无'}）", err=True)
    click.echo(f"{len(outcomes) - len(failed)}/{len(outcomes)} 个示例通过，{len(engine.rules)} 条规则")
    if failed or missing:
        raise SystemExit(1)

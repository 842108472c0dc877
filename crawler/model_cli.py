"""``xunjian model train|info``: the learned scorer beside the rules (detectors/learned.py)."""

from __future__ import annotations

from pathlib import Path

import click

from crawler.cli_common import EXIT_BAD_INPUT, CliError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPORA = (REPO / "tests" / "corpus", REPO / "tests" / "corpus" / "independent" / "dev.jsonl")


def load_training_docs(paths: tuple[str, ...]):
    from detectors.corpus import CorpusError, load_corpus

    sources = [Path(p) for p in paths] if paths else list(DEFAULT_CORPORA)
    docs = []
    for source in sources:
        if source.name == "test.jsonl" or (source.is_dir() and (source / "test.jsonl").exists()):
            raise CliError(f"{source}：不能用测试集训练（测试集已冻结，只用于评估）", EXIT_BAD_INPUT)
        try:
            docs += load_corpus(source)
        except CorpusError as exc:
            raise CliError(str(exc), EXIT_BAD_INPUT) from None
    return docs, sources


@click.group("model")
def model() -> None:
    """The learned scorer: train its weights, show what is shipped."""


@model.command("train")
@click.option("--corpus", "corpora", multiple=True, metavar="PATH",
              help="Training corpus file or folder (repeatable; default: tests/corpus and the independent dev split).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Weights file to write (default: detectors/scorer.npz).")
@click.option("--check", is_flag=True, help="Do not replace the file: train to a temporary file and compare.")
def model_train(corpora: tuple[str, ...], out: str | None, check: bool) -> None:
    """Train the scorer deterministically on the dev corpora and write its weights."""
    import tempfile

    from detectors.learned import SCORER_PATH
    from detectors.training import train

    docs, sources = load_training_docs(corpora)
    target = Path(out) if out else SCORER_PATH
    if check:
        tmp = Path(tempfile.mkdtemp(prefix="xunjian-model-")) / "scorer.npz"
        report = train(docs, tmp)
        if not target.exists():
            raise CliError(f"{target}：找不到要比对的模型文件")
        same = tmp.read_bytes() == target.read_bytes()
        verdict = "一致" if same else "不一致"
        click.echo(f"重新训练得到 {report.sha256[:16]}…，与 {target} {verdict}")
        if not same:
            raise SystemExit(1)
        return
    report = train(docs, target)
    click.echo(f"已训练 {report.n_docs} 篇文档（{'、'.join(str(s) for s in sources)}），"
               f"写入 {report.path}（{report.rows} 个 n-gram 权重行，SHA-256 {report.sha256[:16]}…，版本 {report.version}）")
    for category, scores in report.oof.items():
        d = report.decisions[category]
        click.echo(f"  {category}: 交叉验证 F1 规则 {scores['rules']:.3f} / 模型 {scores['model']:.3f} / "
                   f"组合 {scores['combined']:.3f}；组合阈值 {d['threshold']:.3f}")


@model.command("info")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def model_info(path: str | None) -> None:
    """Show the shipped weights file: version, corpus hash, decisions."""
    import hashlib

    from detectors.learned import SCORER_PATH, Scorer, ScorerError

    target = Path(path) if path else SCORER_PATH
    try:
        scorer = Scorer(target)
    except ScorerError as exc:
        raise CliError(str(exc)) from None
    meta = scorer.meta
    click.echo(f"模型 {scorer.version}：{target}（SHA-256 {hashlib.sha256(target.read_bytes()).hexdigest()}）")
    click.echo(f"训练语料 {meta['n_docs']} 篇，语料 SHA-256 {meta['corpus_sha256']}")
    click.echo("库版本 " + "，".join(f"{k} {v}" for k, v in meta["libraries"].items()))
    for category, d in meta["decisions"].items():
        click.echo(f"  {category}: 组合 = sigmoid({d['w_model']:.2f}×模型对数几率 + {d['w_rule']:.2f}×规则命中 "
                   f"{d['bias']:+.2f}) ≥ {d['threshold']:.3f}；仅模型阈值 {d['model_only']:.3f}")

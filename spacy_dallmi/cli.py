"""Command-line interface: ``python -m spacy_dallmi COMMAND``.

A thin layer over the library: each command parses its options, calls one function and turns
the library's own errors (missing file, wrong column, bad setting, label mismatch) into a
one-line failure message and exit code 1 instead of a traceback. Other commands (training and
evaluation helpers) are added to the same ``app``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import srsly
import typer
from wasabi import msg

from .data import (
    DATASETS,
    REMOVAL_MODES,
    DataFileNotFoundError,
    DataPreparationError,
    prepare_dataset,
    prepare_files,
)

app = typer.Typer(
    name="spacy_dallmi",
    help="DALLMi domain adaptation for spaCy: data preparation, training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
)

RATIO_HELP = "Share of the target train positives to hide, strictly between 0 and 1."
REMOVAL_HELP = f"How positives are hidden: {' or '.join(REMOVAL_MODES)}."
# The domain splits are drawn from the seed alone, so these files are the same at every ratio.
RATIO_INDEPENDENT_FILES = (
    "source_train.spacy",
    "source_test.spacy",
    "target_train_full.spacy",
    "target_test.spacy",
)
MAX_DOCS_HELP = "Keep at most this many docs per split (a seeded sample), e.g. for a quick run."


def _split_names(value: Optional[str]) -> Optional[list[str]]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; options take comma-separated lists."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _read_label_map(path: Optional[Path]) -> Optional[dict[str, str]]:
    """Load a JSON object mapping target label names to source label names."""
    if path is None:
        return None
    if not path.is_file():
        msg.fail(f"Label map file not found: {path}", exits=1)
    try:
        mapping = srsly.read_json(path)
    except ValueError as error:
        msg.fail(f"{path} is not valid JSON: {error}", exits=1)
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        msg.fail(
            f"{path} must hold a JSON object of target label -> source label names, "
            f'e.g. {{"happy": "joy"}}',
            exits=1,
        )
    return mapping


@app.command("prepare")
def prepare_command(
    dataset: str = typer.Argument(..., help=f"Built-in dataset: {' or '.join(DATASETS)}."),
    data_dir: Path = typer.Argument(
        ..., help="Folder holding goemotions/, semeval2018_ec/ and pubmed/."
    ),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    ratio: float = typer.Option(..., "--ratio", help=RATIO_HELP),
    removal: str = typer.Option("per_sample", "--removal", help=REMOVAL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share per domain."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary."),
    shared_dir: Optional[Path] = typer.Option(
        None,
        "--shared-dir",
        help="Also copy the files that do not depend on ratio/removal (source splits, full "
        "target train, target test) here, so runs at other ratios can reuse what they feed.",
    ),
) -> None:
    """Write source/target train/test corpora of a built-in dataset, with target labels hidden."""
    try:
        prepare_dataset(
            dataset,
            data_dir,
            output_dir,
            ratio=ratio,
            removal=removal,
            seed=seed,
            max_docs=max_docs,
            test_fraction=test_fraction,
            quiet=quiet,
        )
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)
    if shared_dir is not None:
        shared_dir.mkdir(parents=True, exist_ok=True)
        for name in RATIO_INDEPENDENT_FILES:
            shutil.copyfile(output_dir / name, shared_dir / name)
        msg.good(f"Copied {', '.join(RATIO_INDEPENDENT_FILES)} to {shared_dir}")


@app.command("prepare-files")
def prepare_files_command(
    source: Path = typer.Argument(..., help="Source-domain file (CSV, TSV or JSONL)."),
    target: Path = typer.Argument(..., help="Target-domain file (CSV, TSV or JSONL)."),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    text_column: str = typer.Option(..., "--text-column", help="Column holding the text."),
    label_columns: Optional[str] = typer.Option(
        None, "--label-columns", help="Comma-separated 0/1 label columns (e.g. a,b,c)."
    ),
    labels_column: Optional[str] = typer.Option(
        None, "--labels-column", help="Column listing each row's labels (a,b or a JSON list)."
    ),
    label_map: Optional[Path] = typer.Option(
        None, "--label-map", help="JSON file mapping target label names to source names."
    ),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="Comma-separated subset of source labels to keep."
    ),
    target_text_column: Optional[str] = typer.Option(
        None, "--target-text-column", help="Target text column, if named differently."
    ),
    target_label_columns: Optional[str] = typer.Option(
        None, "--target-label-columns", help="Target 0/1 label columns, if different."
    ),
    target_labels_column: Optional[str] = typer.Option(
        None, "--target-labels-column", help="Target label-list column, if different."
    ),
    file_format: Optional[str] = typer.Option(
        None, "--format", help="csv, tsv or jsonl (default: from the file extension)."
    ),
    ratio: float = typer.Option(..., "--ratio", help=RATIO_HELP),
    removal: str = typer.Option("per_sample", "--removal", help=REMOVAL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share per domain."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary."),
) -> None:
    """Write source/target train/test corpora from your own files, with target labels hidden."""
    try:
        prepare_files(
            source,
            target,
            output_dir,
            text_column=text_column,
            label_columns=_split_names(label_columns),
            labels_column=labels_column,
            label_map=_read_label_map(label_map),
            labels=_split_names(labels),
            target_text_column=target_text_column,
            target_label_columns=_split_names(target_label_columns),
            target_labels_column=target_labels_column,
            file_format=file_format,
            ratio=ratio,
            removal=removal,
            seed=seed,
            max_docs=max_docs,
            test_fraction=test_fraction,
            quiet=quiet,
        )
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)


@app.command("evaluate")
def evaluate_command(
    model: Path = typer.Argument(..., help="Trained pipeline folder (e.g. .../model-last)."),
    test: Path = typer.Argument(..., help="DocBin with the fully labelled target test split."),
    output: Path = typer.Argument(..., help="Metrics JSON file to write."),
    method: str = typer.Option(..., "--method", help="none, ft_partial, ft_full or dallmi."),
    epoch_log: Optional[Path] = typer.Option(
        None, "--epoch-log", help="JSONL written by spacy_dallmi.epoch_eval.v1 during training."
    ),
    dataset: str = typer.Option("", "--dataset"),
    ratio: Optional[float] = typer.Option(None, "--ratio"),
    removal: str = typer.Option("", "--removal"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    max_docs: Optional[int] = typer.Option(None, "--max-docs"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    backbone: str = typer.Option("", "--backbone"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to predict on; -1 for the CPU."),
) -> None:
    """Score a pipeline on the target test split and write metrics with the run's settings."""
    import spacy

    from .evaluate import evaluate_pipeline, write_metrics

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    settings = {
        "dataset": dataset,
        "ratio": ratio,
        "removal": removal,
        "seed": seed,
        "max_docs": max_docs,
        "epochs": epochs,
        "backbone": backbone,
        "gpu_id": gpu_id,
    }
    try:
        result = evaluate_pipeline(
            model, test, method=method, settings=settings, epoch_log=epoch_log
        )
    except (FileNotFoundError, ValueError) as error:
        msg.fail(str(error), exits=1)
    write_metrics(result, output)
    metrics = result["metrics"]
    scores = ", ".join(
        f"{name} {'n/a' if metrics[key] is None else format(metrics[key], '.4f')}"
        for name, key in (("macro AP", "cats_macro_ap"), ("micro AP", "cats_micro_ap"))
    )
    msg.good(f"{method}: {scores} on {result['n_docs']} docs -> {output}")


@app.command("report")
def report_command(
    metrics_dir: Path = typer.Argument(..., help="Folder searched recursively for *.json."),
    output: Path = typer.Argument(..., help="Markdown report to write."),
    title: str = typer.Option("DALLMi results", "--title"),
    figures_dir: Optional[Path] = typer.Option(
        None, "--figures-dir", help="Where the PNGs go (default: next to the report)."
    ),
) -> None:
    """Write a Table-2-style report with figures from every metrics file under a folder."""
    from .report import build_report

    paths = sorted(metrics_dir.rglob("*.json"))
    if not paths:
        msg.fail(
            f"No metrics files under {metrics_dir}: run the `evaluate` commands first.", exits=1
        )
    figures = figures_dir or output.parent / f"{output.stem}_figures"
    build_report(paths, output, figures, title=title)
    msg.good(f"Report from {len(paths)} metrics files -> {output} (figures in {figures})")


@app.command("table")
def table_command(
    project_dir: Path = typer.Argument(Path("."), help="The spaCy project folder."),
    dataset: str = typer.Option("emotions", "--dataset"),
    ratios: str = typer.Option("0.5,0.7,0.9", "--ratios"),
    seeds: str = typer.Option("0,1", "--seeds"),
    extra_vars: Optional[list[str]] = typer.Option(
        None, "--var", help="More project vars as NAME=VALUE (repeatable)."
    ),
    removal: str = typer.Option("per_sample", "--removal"),
    max_docs: int = typer.Option(1000, "--max-docs"),
    epochs: int = typer.Option(3, "--epochs"),
    source_epochs: int = typer.Option(2, "--source-epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    max_length: int = typer.Option(64, "--max-length"),
    backbone: str = typer.Option("all-MiniLM-L6-v2", "--backbone"),
    gpu_id: int = typer.Option(-1, "--gpu-id"),
    data_dir: str = typer.Option("../shared/datasets", "--data-dir"),
) -> None:
    """Run the `adapt` and `baselines` workflows for every seed and ratio, then the report.

    Seeds form the outer loop: the source model and the all-labels baseline depend on the
    seed only, so spaCy's project runner skips them for the second and third ratio.
    """
    common = {
        "dataset": dataset,
        "removal": removal,
        "max_docs": max_docs,
        "epochs": epochs,
        "source_epochs": source_epochs,
        "batch_size": batch_size,
        "max_length": max_length,
        "backbone": backbone,
        "gpu_id": gpu_id,
        "data_dir": data_dir,
    }
    for item in extra_vars or []:
        name, _, value = item.partition("=")
        common[name] = value
    for seed in _split_names(seeds) or []:
        for ratio in _split_names(ratios) or []:
            run_vars = {**common, "seed": int(seed), "ratio": ratio}
            # JSON-encode the values: weasel parses them as JSON, and a ratio passed as a
            # string keeps its spelling (srsly reads a bare 0.7 as 0.7000000000000001).
            flags = [f"--vars.{name}={srsly.json_dumps(value)}" for name, value in run_vars.items()]
            for workflow in ("adapt", "baselines"):
                msg.divider(f"{workflow}: {dataset}, ratio {ratio}, seed {seed}")
                command = [sys.executable, "-m", "weasel", "run", workflow, str(project_dir)]
                subprocess.run(command + flags, check=True)
    report_command(
        project_dir / "metrics" / dataset,
        project_dir / "reports" / f"{dataset}.md",
        title=dataset,
        figures_dir=None,
    )

"""Command-line interface of the experiment kit: ``python -m spacy_dallmi COMMAND``.

A thin layer over the kit: each command parses its options, calls one function and turns the
kit's own errors (missing file, wrong column, bad setting, label mismatch, too many dropped
rows) into a one-line failure message and exit code 1 instead of a traceback. Modules that
need torch or matplotlib are imported inside the commands that use them, so ``--help`` and the
data commands stay light, and a missing optional dependency is one clear line.
"""

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

from . import INSTALL_HINT
from .datasets import DATASETS
from .prepare import MAX_DROP_SHARE, prepare_dataset, prepare_files
from .protocol import REMOVAL_MODES
from .readers import DEFAULT_ENCODING, DataFileNotFoundError, DataPreparationError

app = typer.Typer(
    name="spacy_dallmi",
    help="DALLMi domain adaptation for spaCy: data preparation, training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
)

REMOVAL_HELP = f"How positives are hidden: {' or '.join(REMOVAL_MODES)}."
# The domain splits are drawn from the seed alone, so these files are the same at every ratio.
RATIO_INDEPENDENT = ("source_train", "source_test", "target_train_full", "target_test")
MAX_DOCS_HELP = "Keep at most this many docs per split (a seeded sample), e.g. for a quick run."
SHARED_DIR_HELP = (
    "Also copy the files that do not depend on ratio/removal (source splits, full target train, "
    "target test) here, so runs at other ratios can reuse what they feed."
)


def _split_names(value: Optional[str]) -> Optional[List[str]]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``, for options that take comma-separated lists."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _label_columns(
    repeated: Optional[List[str]], comma: Optional[str], path: Optional[Path], option: str
) -> Optional[List[str]]:
    """Label columns from ``--X-column a --X-column b``, ``--X-columns a,b`` or a file holding
    one name per line; the repeatable and file forms take any name, commas included."""
    given = [form for form in (repeated, comma, path) if form]
    if len(given) > 1:
        msg.fail(f"Give the label columns one way: --{option}, --{option}s or a file.", exits=1)
    if path is not None:
        if not path.is_file():
            msg.fail(f"Label columns file not found: {path}", exits=1)
        lines = path.read_text(encoding="utf8").splitlines()
        return [line.strip() for line in lines if line.strip()]
    return list(repeated) if repeated else _split_names(comma)


def _read_label_map(path: Optional[Path]) -> Optional[Dict[str, str]]:
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


def _copy_shared(stats: Dict[str, Any], output_dir: Path, shared_dir: Optional[Path]) -> None:
    if shared_dir is None:
        return
    shared_dir.mkdir(parents=True, exist_ok=True)
    names = [stats["files"][name] for name in RATIO_INDEPENDENT if name in stats["files"]]
    for name in names:
        shutil.copyfile(output_dir / name, shared_dir / name)
    msg.good(f"Copied {', '.join(names)} to {shared_dir}")


@app.command("prepare")
def prepare_command(
    dataset: str = typer.Argument(..., help=f"Built-in dataset: {' or '.join(DATASETS)}."),
    data_dir: Path = typer.Argument(
        ..., help="Folder holding goemotions/, semeval2018_ec/ and pubmed/."
    ),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    ratio: float = typer.Option(
        ..., "--ratio", help="Share of target train positives to hide, strictly in (0, 1)."
    ),
    removal: str = typer.Option("per_sample", "--removal", help=REMOVAL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share per domain."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary."),
    shared_dir: Optional[Path] = typer.Option(None, "--shared-dir", help=SHARED_DIR_HELP),
) -> None:
    """Write source/target train/test corpora of a built-in dataset, with target labels hidden."""
    try:
        stats = prepare_dataset(
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
    _copy_shared(stats, output_dir, shared_dir)


@app.command("prepare-files")
def prepare_files_command(
    source: Path = typer.Argument(..., help="Source-domain file (CSV, TSV or JSONL)."),
    target: Path = typer.Argument(..., help="Target-domain file (CSV, TSV or JSONL)."),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    text_column: str = typer.Option(..., "--text-column", help="Column holding the text."),
    label_column: Optional[List[str]] = typer.Option(
        None, "--label-column", help="A 0/1 label column; repeat for each label."
    ),
    label_columns: Optional[str] = typer.Option(
        None, "--label-columns", help="Comma-separated 0/1 label columns (e.g. a,b,c)."
    ),
    label_columns_file: Optional[Path] = typer.Option(
        None, "--label-columns-file", help="A file naming the 0/1 label columns, one per line."
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
    target_label_column: Optional[List[str]] = typer.Option(
        None, "--target-label-column", help="A target 0/1 label column, if different; repeat."
    ),
    target_label_columns: Optional[str] = typer.Option(
        None, "--target-label-columns", help="Comma-separated target 0/1 label columns."
    ),
    target_labels_column: Optional[str] = typer.Option(
        None, "--target-labels-column", help="Target label-list column, if different."
    ),
    target_test: Optional[Path] = typer.Option(
        None, "--target-test", help="A fully labelled target test file (target's columns)."
    ),
    file_format: Optional[str] = typer.Option(
        None, "--format", help="csv, tsv or jsonl (default: from the file extension)."
    ),
    encoding: str = typer.Option(DEFAULT_ENCODING, "--encoding", help="The files' encoding."),
    ratio: float = typer.Option(
        0.0,
        "--ratio",
        help="0: the target's labels are already partial (1 = known positive, else unlabeled). "
        "In (0, 1): the target is fully labelled and this share of its positives is hidden.",
    ),
    removal: str = typer.Option("per_sample", "--removal", help=REMOVAL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP),
    max_source_docs: Optional[int] = typer.Option(None, "--max-source-docs"),
    max_target_docs: Optional[int] = typer.Option(None, "--max-target-docs"),
    max_target_test_docs: Optional[int] = typer.Option(None, "--max-target-test-docs"),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share per domain."),
    target_test_fraction: Optional[float] = typer.Option(None, "--target-test-fraction"),
    max_drop_share: float = typer.Option(
        MAX_DROP_SHARE, "--max-drop-share", help="Fail when a file loses more of its rows."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary."),
    shared_dir: Optional[Path] = typer.Option(None, "--shared-dir", help=SHARED_DIR_HELP),
) -> None:
    """Write source/target corpora from your own files: partially labelled target data as it
    is (the default), or fully labelled data with a share of the target labels hidden."""
    columns = _label_columns(label_column, label_columns, label_columns_file, "label-column")
    target_columns = _label_columns(
        target_label_column, target_label_columns, None, "target-label-column"
    )
    try:
        stats = prepare_files(
            source,
            target,
            output_dir,
            text_column=text_column,
            label_columns=columns,
            labels_column=labels_column,
            label_map=_read_label_map(label_map),
            labels=_split_names(labels),
            target_text_column=target_text_column,
            target_label_columns=target_columns,
            target_labels_column=target_labels_column,
            target_test_path=target_test,
            file_format=file_format,
            encoding=encoding,
            ratio=ratio,
            removal=removal,
            seed=seed,
            max_docs=max_docs,
            test_fraction=test_fraction,
            max_source_docs=max_source_docs,
            max_target_docs=max_target_docs,
            max_target_test_docs=max_target_test_docs,
            target_test_fraction=target_test_fraction,
            max_drop_share=max_drop_share,
            quiet=quiet,
        )
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)
    _copy_shared(stats, output_dir, shared_dir)


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


def _build_report() -> Any:
    """The report builder, or a one-line failure naming the extra when matplotlib is missing."""
    try:
        from .report import build_report
    except ImportError as error:
        missing = (error.name or "matplotlib").split(".")[0]
        msg.fail(f"The report needs {missing}: {INSTALL_HINT}", exits=1)
    return build_report


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
    build_report = _build_report()
    paths = sorted(metrics_dir.rglob("*.json"))
    if not paths:
        msg.fail(
            f"No metrics files under {metrics_dir}: run the `evaluate` commands first.", exits=1
        )
    figures = figures_dir or output.parent / f"{output.stem}_figures"
    try:
        build_report(paths, output, figures, title=title)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(str(error), exits=1)
    msg.good(f"Report from {len(paths)} metrics files -> {output} (figures in {figures})")


def _var_value(text: str) -> Any:
    """A ``--var`` value as the weasel command line would read it: JSON, else the string."""
    try:
        return srsly.json_loads(text)
    except ValueError:
        return text


@app.command("table")
def table_command(
    project_dir: Path = typer.Argument(Path("."), help="The spaCy project folder."),
    dataset: str = typer.Option("emotions", "--dataset"),
    ratios: str = typer.Option("0.5,0.7,0.9", "--ratios"),
    seeds: str = typer.Option("0,1", "--seeds"),
    extra_vars: Optional[List[str]] = typer.Option(
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
    seed only, so the project runner skips them for the second and third ratio.
    """
    from weasel.cli.run import project_run

    if dataset not in DATASETS:
        msg.fail(f"Unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}.", exits=1)
    build_report = _build_report()
    common: Dict[str, Any] = {
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
        common[name] = _var_value(value)
    for seed in _split_names(seeds) or []:
        # A ratio stays a string, so folder names keep its spelling (0.7, not 0.7000000000000001).
        for ratio in _split_names(ratios) or []:
            run_vars = {**common, "seed": int(seed), "ratio": ratio}
            overrides = {f"vars.{name}": value for name, value in run_vars.items()}
            for workflow in ("adapt", "baselines"):
                msg.divider(f"{workflow}: {dataset}, ratio {ratio}, seed {seed}")
                try:
                    project_run(project_dir, workflow, overrides=overrides)
                except SystemExit as stop:
                    if stop.code:
                        msg.fail(
                            f"table: the {workflow} workflow failed at ratio {ratio}, seed "
                            f"{seed} (exit code {stop.code}); its error is printed above.",
                            exits=1,
                        )
    metrics = sorted((project_dir / "metrics" / dataset).rglob("*.json"))
    output = project_dir / "reports" / f"{dataset}.md"
    try:
        build_report(metrics, output, output.parent / f"{dataset}_figures", title=dataset)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(f"table: the report failed: {error}", exits=1)
    msg.good(f"Report from {len(metrics)} metrics files -> {output}")


# Registers `train` and `find-thresholds` on `app`; imported last because it imports `app`.
from . import model_commands  # noqa: E402, F401

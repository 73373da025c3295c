"""The data, evaluation and report commands: ``prepare``, ``prepare-files``, ``evaluate``
and ``report``.

Each parses its options, calls one function of the kit and turns the kit's own errors into a
one-line failure (see :mod:`.cli`). The evaluation and report modules are imported inside
their commands, so the data commands stay light.
"""

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

from .commands import SKIPPED_FILE, _build_report, _split_names, _var_value, app
from .datasets import DATASETS
from .methods import ALL_METHODS
from .prepare import MAX_DROP_SHARE, prepare_dataset, prepare_files
from .protocol import REMOVAL_MODES
from .readers import DEFAULT_ENCODING, DataFileNotFoundError, DataPreparationError

REMOVAL_HELP = f"How positives are hidden: {' or '.join(REMOVAL_MODES)}."
# The domain splits are drawn from the seed alone, so these files are the same at every ratio.
RATIO_INDEPENDENT = (
    "source_train",
    "source_test",
    "target_train_full",
    "target_valid_full",
    "target_test",
)
MAX_DOCS_HELP = "Keep at most this many docs per split (a seeded sample), e.g. for a quick run."
CAP_HELP = "Keep at most this many docs in this domain's split (0 or absent: no cap)."
VALID_HELP = (
    "Carve this share of target train out as target_valid.spacy (labelled like target train), "
    "the dev set of label-free model selection."
)
SHARED_DIR_HELP = (
    "Also copy the files that do not depend on ratio/removal (source splits, full target train, "
    "target test) here, so runs at other ratios can reuse what they feed."
)

REMOVAL_OPTION = typer.Option("per_sample", "--removal", help=REMOVAL_HELP)
SEED_OPTION = typer.Option(0, "--seed", help="Seed of every random step.")
MAX_DOCS_OPTION = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP)
TEST_FRACTION_OPTION = typer.Option(0.2, "--test-fraction", help="Test share per domain.")
TARGET_TEST_FRACTION_OPTION = typer.Option(None, "--target-test-fraction")
VALID_FRACTION_OPTION = typer.Option(None, "--valid-fraction", help=VALID_HELP)
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="Do not print the summary.")
SHARED_DIR_OPTION = typer.Option(None, "--shared-dir", help=SHARED_DIR_HELP)


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


def _count(value: Optional[int]) -> Optional[int]:
    """A cap from the command line: 0 (the project's "no cap") means None."""
    return value or None


def _text(value: Optional[str]) -> Optional[str]:
    """An option the project may pass as an empty string, which means "not given"."""
    return value if value else None


@app.command("prepare")
def prepare_command(
    dataset: str = typer.Argument(
        ..., help=f"Built-in dataset ({' or '.join(DATASETS)}), or custom for your own files."
    ),
    data_dir: Path = typer.Argument(
        ..., help="Folder holding goemotions/, semeval2018_ec/ and pubmed/ (built-ins only)."
    ),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    ratio: float = typer.Option(
        0.0,
        "--ratio",
        help="Share of target train positives to hide, in (0, 1); 0 (custom only): the "
        "target's labels are already partial.",
    ),
    removal: str = REMOVAL_OPTION,
    seed: int = SEED_OPTION,
    max_docs: Optional[int] = MAX_DOCS_OPTION,
    max_source_docs: Optional[int] = typer.Option(None, "--max-source-docs", help=CAP_HELP),
    max_target_docs: Optional[int] = typer.Option(None, "--max-target-docs", help=CAP_HELP),
    max_target_test_docs: Optional[int] = typer.Option(
        None, "--max-target-test-docs", help=CAP_HELP
    ),
    test_fraction: float = TEST_FRACTION_OPTION,
    target_test_fraction: Optional[float] = TARGET_TEST_FRACTION_OPTION,
    valid_fraction: Optional[float] = VALID_FRACTION_OPTION,
    source_file: Optional[str] = typer.Option(None, "--source-file", help="custom: source file."),
    target_file: Optional[str] = typer.Option(None, "--target-file", help="custom: target file."),
    target_test_file: Optional[str] = typer.Option(
        None, "--target-test-file", help="custom: a fully labelled target test file."
    ),
    text_column: str = typer.Option("text", "--text-column", help="custom: the text column."),
    labels_column: Optional[str] = typer.Option(
        None, "--labels-column", help="custom: the column listing each row's labels."
    ),
    label_columns: Optional[str] = typer.Option(
        None, "--label-columns", help="custom: comma-separated 0/1 label columns."
    ),
    quiet: bool = QUIET_OPTION,
    shared_dir: Optional[Path] = SHARED_DIR_OPTION,
) -> None:
    """Write source/target train/test corpora (and a validation slice) of a built-in dataset,
    with target labels hidden, or of your own files (dataset custom): the project's one
    preparation step. Empty options and caps of 0 count as not given."""
    caps = {
        "max_docs": _count(max_docs),
        "max_source_docs": _count(max_source_docs),
        "max_target_docs": _count(max_target_docs),
        "max_target_test_docs": _count(max_target_test_docs),
        "test_fraction": test_fraction,
        "target_test_fraction": target_test_fraction,
        "valid_fraction": valid_fraction or None,
    }
    try:
        if dataset == "custom":
            if not (source_file and target_file):
                raise DataPreparationError(
                    "dataset custom needs --source-file and --target-file (the project's vars "
                    "source_file and target_file)."
                )
            columns = _split_names(_text(label_columns))
            stats = prepare_files(
                source_file,
                target_file,
                output_dir,
                text_column=text_column,
                label_columns=columns,
                # one 0/1 column per label, when given, takes precedence over a label list
                labels_column=None if columns else _text(labels_column),
                target_test_path=_text(target_test_file),
                ratio=ratio,
                removal=removal,
                seed=seed,
                quiet=quiet,
                **caps,
            )
        else:
            stats = prepare_dataset(
                dataset,
                data_dir,
                output_dir,
                ratio=ratio,
                removal=removal,
                seed=seed,
                quiet=quiet,
                **caps,
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
    removal: str = REMOVAL_OPTION,
    seed: int = SEED_OPTION,
    max_docs: Optional[int] = MAX_DOCS_OPTION,
    max_source_docs: Optional[int] = typer.Option(None, "--max-source-docs", help=CAP_HELP),
    max_target_docs: Optional[int] = typer.Option(None, "--max-target-docs", help=CAP_HELP),
    max_target_test_docs: Optional[int] = typer.Option(None, "--max-target-test-docs"),
    test_fraction: float = TEST_FRACTION_OPTION,
    target_test_fraction: Optional[float] = TARGET_TEST_FRACTION_OPTION,
    valid_fraction: Optional[float] = VALID_FRACTION_OPTION,
    max_drop_share: float = typer.Option(
        MAX_DROP_SHARE, "--max-drop-share", help="Fail when a file loses more of its rows."
    ),
    quiet: bool = QUIET_OPTION,
    shared_dir: Optional[Path] = SHARED_DIR_OPTION,
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
            valid_fraction=valid_fraction,
            max_drop_share=max_drop_share,
            quiet=quiet,
        )
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)
    _copy_shared(stats, output_dir, shared_dir)


@app.command("evaluate")
def evaluate_command(
    run: Path = typer.Argument(
        ..., help="Training output folder (model-best and model-last), or a pipeline folder."
    ),
    test: Path = typer.Argument(..., help="DocBin with the fully labelled target test split."),
    output: Path = typer.Argument(..., help="Metrics JSON file to write."),
    method: str = typer.Option(..., "--method", help=f"One of {', '.join(ALL_METHODS)}."),
    epoch_log: Optional[Path] = typer.Option(
        None, "--epoch-log", help="JSONL of spacy_dallmi.epoch_eval.v1, used if it exists."
    ),
    setting: Optional[List[str]] = typer.Option(
        None, "--set", help="A setting of the run, NAME=VALUE (JSON or text); repeatable."
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to predict on; -1 for the CPU."),
) -> None:
    """Score a run's selected model (model-best) and last epoch (model-last) on the target
    test split; write metrics with the run's settings. Without a test split (a partially
    labelled target and no test file) or for a run that was skipped, the metrics file says
    why instead."""
    settings = {}
    for item in setting or []:
        name, _, value = item.partition("=")
        settings[name] = _var_value(value)
    evaluate_to(run, test, output, method, settings, epoch_log, gpu_id)


def evaluate_to(
    run: Path,
    test: Path,
    output: Path,
    method: str,
    settings: Dict[str, Any],
    epoch_log: Optional[Path] = None,
    gpu_id: int = -1,
) -> None:
    """Write the metrics file of ``run`` on ``test`` (see the ``evaluate`` command)."""
    from .evaluate import evaluate_run, skipped_result, write_metrics

    marker = run / SKIPPED_FILE
    reason = None
    if marker.is_file():
        reason = srsly.read_json(marker)["reason"]
    elif not test.is_file():
        reason = (
            f"no labelled target test set ({test} does not exist): the target's labels are "
            "partial and no fully labelled target test file was given (--vars.target_test_file), "
            "so no test metrics are computed"
        )
    try:
        if reason is not None:
            write_metrics(skipped_result(method, settings, reason), output)
            msg.info(f"{method}: {reason}. -> {output}")
            return
        if gpu_id >= 0:
            import spacy

            spacy.require_gpu(gpu_id)
        log = epoch_log if epoch_log is not None and epoch_log.is_file() else None
        result = evaluate_run(run, test, method=method, settings=settings, epoch_log=log)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(str(error), exits=1)
    write_metrics(result, output)
    scores = []
    for name, metrics in (("selected", result["metrics"]), ("last", result["metrics_last"])):
        value = metrics["cats_macro_ap"]
        scores.append(f"{name} {'n/a' if value is None else format(value, '.4f')}")
    msg.good(f"{method}: macro AP {', '.join(scores)} on {result['n_docs']} docs -> {output}")


@app.command("report")
def report_command(
    metrics_dir: Path = typer.Argument(..., help="Folder searched recursively for *.json."),
    output: Path = typer.Argument(..., help="Markdown report to write."),
    title: str = typer.Option("DALLMi results", "--title"),
    figures_dir: Optional[Path] = typer.Option(
        None, "--figures-dir", help="Where the PNGs go (default: next to the report)."
    ),
) -> None:
    """Write a Table-2-style report with figures from every metrics file under a folder, one
    section per setting (file paths in it are relative to the working directory)."""
    build_report = _build_report()
    paths = sorted(metrics_dir.rglob("*.json"))
    if not paths:
        msg.fail(
            f"No metrics files under {metrics_dir}: run the `evaluate` commands first.", exits=1
        )
    figures = figures_dir or output.parent / f"{output.stem}_figures"
    try:
        build_report(paths, output, figures, title=title, group_settings=True)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(str(error), exits=1)
    msg.good(f"Report from {len(paths)} metrics files -> {output} (figures in {figures})")

"""The ``python -m spacy_dallmi`` app: ``prepare``, ``prepare-files``, ``train`` and
``find-thresholds`` (:mod:`.study` adds ``study``, which evaluates its runs and reports).

Each command turns the kit's own errors into a one-line failure and exit code 1, not a
traceback. torch and matplotlib are imported inside the commands that use them, so ``--help``
stays light and a missing optional dependency is one clear line.
"""

import inspect
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

import srsly
import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from .corpus import MAX_DROP_SHARE, prepare_dataset, prepare_files
from .datasets import DATASETS
from .protocol import REMOVAL_MODES
from .readers import DEFAULT_ENCODING, DataFileNotFoundError, DataPreparationError
from .run_inputs import INPUTS_FILE, finished_with, run_inputs, write_record

app = typer.Typer(
    name="spacy_dallmi",
    help="DALLMi domain adaptation for spaCy: data preparation, training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
)

Command = TypeVar("Command", bound=Callable[..., None])
#: Written instead of a model into a training output folder when the run cannot be made.
SKIPPED_FILE = "skipped.json"
#: The per-epoch learning-curve records, inside the training output folder.
CURVE_FILE = "curve.jsonl"
# The domain splits are drawn from the seed alone, so these files are the same at every ratio.
RATIO_INDEPENDENT = ("source_train", "source_test", "target_train_full", "target_valid_full")
RATIO_INDEPENDENT += ("target_test",)
CAP_HELP = "Keep at most this many docs in this domain's split (0 or absent: no cap)."


def _opt(help: Optional[str], default: Any = None, *names: str, **options: Any) -> Any:
    return typer.Option(default, *names, help=help, **options)


def _arg(help: str) -> Any:
    return typer.Argument(..., help=help)


#: The options ``prepare`` and ``prepare-files`` share (see :func:`with_options`).
SETTINGS_OPTIONS: Dict[str, Any] = {
    "removal": (
        str,
        _opt(f"How positives are hidden: {' or '.join(REMOVAL_MODES)}.", "per_sample"),
    ),
    "seed": (int, _opt("Seed of every random step.", 0)),
    "max_docs": (
        Optional[int],
        _opt("Keep at most this many docs per split (a seeded sample), e.g. for a quick run."),
    ),
    "max_source_docs": (Optional[int], _opt(CAP_HELP)),
    "max_target_docs": (Optional[int], _opt(CAP_HELP)),
    "max_target_test_docs": (Optional[int], _opt(CAP_HELP)),
    "test_fraction": (float, _opt("Test share per domain.", 0.2)),
    "target_test_fraction": (Optional[float], _opt(None)),
    "valid_fraction": (
        Optional[float],
        _opt(
            "Carve this share of target train out as target_valid.spacy (labelled like target "
            "train), the dev set of label-free model selection."
        ),
    ),
    "quiet": (bool, _opt("Do not print the summary.", False, "--quiet", "-q")),
    "shared_dir": (
        Optional[Path],
        _opt(
            "Also copy the files that do not depend on ratio/removal (source splits, full "
            "target train, target test) here, so runs at other ratios can reuse what they feed."
        ),
    ),
}


def with_options(options: Dict[str, Any]) -> Callable[[Command], Command]:
    """Give a command taking ``**kwargs`` the typer options ``{name: (type, typer.Option)}``,
    for options that several commands share."""

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
            for name, (kind, option) in options.items()
        ]
        command.__signature__ = signature.replace(parameters=own + added)  # type: ignore
        return command

    return decorate


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


def _prepare(make: Callable[..., Dict[str, Any]], *args: Any, **settings: Any) -> None:
    """Run a ``prepare_*`` function, then copy the ratio-independent files to ``shared_dir``.
    A cap of 0 counts as not given, as its help says."""
    output_dir, shared_dir = args[2], settings.pop("shared_dir", None)
    for name in ("max_docs", "max_source_docs", "max_target_docs", "max_target_test_docs"):
        settings[name] = settings[name] or None
    try:
        stats = make(*args, **settings)
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)
    if shared_dir is not None:
        shared_dir.mkdir(parents=True, exist_ok=True)
        names = [stats["files"][name] for name in RATIO_INDEPENDENT if name in stats["files"]]
        for name in names:
            shutil.copyfile(output_dir / name, shared_dir / name)
        msg.good(f"Copied {', '.join(names)} to {shared_dir}")


@app.command("prepare")
@with_options(SETTINGS_OPTIONS)
def prepare_command(
    dataset: str = _arg(f"Built-in dataset: {' or '.join(DATASETS)} (prepare-files: your own)."),
    data_dir: Path = _arg("Folder holding goemotions/, semeval2018_ec/ and pubmed/."),
    output_dir: Path = _arg("Folder to write the corpora and stats to."),
    ratio: float = _opt("Share of target train positives to hide, in (0, 1).", 0.0),
    **settings: Any,
) -> None:
    """Write source/target train/test corpora (and a validation slice) of a built-in dataset,
    with target labels hidden. Empty options and caps of 0 count as not given."""
    settings["valid_fraction"] = settings["valid_fraction"] or None
    _prepare(prepare_dataset, dataset, data_dir, output_dir, ratio=ratio, **settings)


@app.command("prepare-files")
@with_options(SETTINGS_OPTIONS)
def prepare_files_command(
    source: Path = _arg("Source-domain file (CSV, TSV or JSONL)."),
    target: Path = _arg("Target-domain file (CSV, TSV or JSONL)."),
    output_dir: Path = _arg("Folder to write the corpora and stats to."),
    text_column: str = _opt("Column holding the text.", ...),
    label_column: Optional[List[str]] = _opt("A 0/1 label column; repeat for each label."),
    label_columns: Optional[str] = _opt("Comma-separated 0/1 label columns (e.g. a,b,c)."),
    label_columns_file: Optional[Path] = _opt("A file naming the 0/1 label columns, one per line."),
    labels_column: Optional[str] = _opt("Column listing each row's labels (a,b or a JSON list)."),
    label_map: Optional[Path] = _opt("JSON file mapping target label names to source names."),
    labels: Optional[str] = _opt("Comma-separated subset of source labels to keep."),
    target_text_column: Optional[str] = _opt("Target text column, if named differently."),
    target_label_column: Optional[List[str]] = _opt(
        "A target 0/1 label column, if different; repeat."
    ),
    target_label_columns: Optional[str] = _opt("Comma-separated target 0/1 label columns."),
    target_labels_column: Optional[str] = _opt("Target label-list column, if different."),
    target_test: Optional[Path] = _opt("A fully labelled target test file (target's columns)."),
    file_format: Optional[str] = _opt(
        "csv, tsv or jsonl (default: from the extension).", None, "--format"
    ),
    encoding: str = _opt("The files' encoding.", DEFAULT_ENCODING),
    ratio: float = _opt(
        "0: the target's labels are already partial (1 = known positive, else unlabeled). In "
        "(0, 1): the target is fully labelled and this share of its positives is hidden.",
        0.0,
    ),
    max_drop_share: float = _opt("Fail when a file loses more of its rows.", MAX_DROP_SHARE),
    **settings: Any,
) -> None:
    """Write source/target corpora from your own files: partially labelled target data as it
    is (the default), or fully labelled data with a share of the target labels hidden."""
    given = locals()
    passed = ("text_column", "labels_column", "target_text_column", "target_labels_column")
    passed += ("file_format", "encoding", "ratio", "max_drop_share")
    columns = _label_columns(label_column, label_columns, label_columns_file, "label-column")
    target_columns = (target_label_column, target_label_columns, None, "target-label-column")
    options = {"label_columns": columns, "target_label_columns": _label_columns(*target_columns)}
    options.update(label_map=_read_label_map(label_map), labels=_split_names(labels))
    options.update({name: given[name] for name in passed}, target_test_path=target_test)
    _prepare(prepare_files, source, target, output_dir, **options, **settings)


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_command(
    ctx: typer.Context,
    config: Path = _arg("Training config, e.g. configs/adapt.cfg."),
    output: Path = _arg("Output folder (model-last, model-best)."),
    epochs: int = _opt("Training budget in epochs (with --patience: at most).", ..., min=1),
    patience: int = _opt(
        "Stop after this many epochs without a better dev score; 0: train all --epochs.", 0, min=0
    ),
    gpu_id: int = _opt("GPU to train on; -1 for the CPU.", -1),
    keep_source: bool = _opt(
        "For a sourced config: model-best may be the starting pipeline if it scores best.", True
    ),
    curve_docs: Optional[Path] = _opt(
        "Held-out labelled docs scored after every epoch for the learning-curve figure only "
        "(never for selection); written to OUTPUT/curve.jsonl. Skipped if missing."
    ),
    force: bool = _opt(
        f"Train even if OUTPUT/{INPUTS_FILE} shows a finished run of the same config, "
        "overrides, epochs and input files.",
        False,
        "--force",
    ),
) -> None:
    """`spacy train` for E epochs (or until the dev score stops improving, with --patience):
    one evaluation per epoch, the dev curve printed and written to OUTPUT/training.json,
    output renamed into place only when finished. Extra --section.key value
    options override the config, as with `spacy train`."""
    overrides = parse_config_overrides(ctx.args)
    options = dict(patience=patience, keep_source=keep_source, curve_docs=curve_docs)
    train_run(config, output, epochs, overrides, gpu_id=gpu_id, force=force, **options)


def train_run(
    config: Path,
    output: Path,
    epochs: int,
    overrides: Dict[str, Any],
    *,
    patience: int = 0,
    gpu_id: int = -1,
    keep_source: bool = True,
    curve_docs: Optional[Path] = None,
    skip_if_missing: Optional[Path] = None,
    force: bool = False,
) -> None:
    """Train ``config`` into ``output`` unless it holds a finished run of the same inputs
    (:mod:`.run_inputs`). A missing ``skip_if_missing`` leaves a :data:`SKIPPED_FILE` saying
    why there is no model; existing ``curve_docs`` are scored after every epoch."""
    from ..training import PARTIAL_SUFFIX, train_epochs

    if not config.is_file():
        msg.fail(f"Config file not found: {config}", exits=1)
    if skip_if_missing is not None and not skip_if_missing.exists():
        reason = (
            f"not trained: {skip_if_missing} does not exist (the upper bound needs fully "
            "labelled target train, which exists only when labels are hidden for a study, "
            "ratio > 0)"
        )
        if output.exists():
            shutil.rmtree(output)
        output.mkdir(parents=True)
        srsly.write_json(output / SKIPPED_FILE, {"reason": reason})
        msg.info(f"{output}: {reason}")
        return
    overrides = dict(overrides)
    partial = output.with_name(output.name + PARTIAL_SUFFIX)
    if curve_docs is not None:
        if curve_docs.is_file():
            overrides["paths.curve_docs"] = str(curve_docs)
            overrides["paths.curve_output"] = str(partial / CURVE_FILE)
        else:
            msg.info(f"No per-epoch test curve: {curve_docs} does not exist.")
    try:
        inputs = run_inputs(config, overrides, epochs, patience, keep_source, [output, partial])
    except (OSError, ValueError) as error:  # ValueError: confection's config errors
        msg.fail(f"train {config}: {error}", exits=1)
    if not force and finished_with(output, inputs):
        msg.good(
            f"{output}: already trained from the same config, overrides, epochs, input files "
            f"and code ({output / INPUTS_FILE}); not trained again. Pass --force (in the project "
            "--vars.options force=NAME) to retrain."
        )
        return
    try:
        options = {"patience": patience, "use_gpu": gpu_id, "keep_source": keep_source}
        train_epochs(config, output, epochs, overrides=overrides, **options)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(f"train {config}: {error}", exits=1)
    write_record(output, inputs)


@app.command("find-thresholds")
def find_thresholds_command(
    model: Path = _arg("Trained pipeline folder."),
    docs: Path = _arg("DocBin of labelled docs: the (partially labelled) validation slice."),
    output: Path = _arg("JSON {label: threshold} for classify --thresholds."),
    gpu_id: int = _opt("GPU to predict on; -1 for the CPU.", -1),
) -> None:
    """Tune one decision threshold per label (best F1 on DOCS' labels; unlabeled counts as
    negative). Use the validation slice, never the test split."""
    import spacy
    from spacy.tokens import DocBin

    from .thresholds import tune_pipeline_thresholds, write_thresholds

    for path in (model, docs):
        if not path.exists():
            msg.fail(f"Not found: {path}", exits=1)
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    gold = list(DocBin().from_disk(docs).get_docs(nlp.vocab))
    try:
        fitted = tune_pipeline_thresholds(nlp, gold)
    except ValueError as error:
        msg.fail(f"find-thresholds {docs}: {error}", exits=1)
    details = write_thresholds(fitted, output)
    for label, values in fitted.items():
        f1 = "n/a (no known positive)" if values["f1"] is None else f"F1 {values['f1']:.3f}"
        msg.text(f"{label}: threshold {values['threshold']:.3f}, {f1}")
    msg.good(f"Thresholds for {len(fitted)} labels -> {output} (details: {details})")

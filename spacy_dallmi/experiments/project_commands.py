"""The spaCy project's own steps: ``check`` (first in every workflow) and ``table``.

``check`` runs before anything is read or trained and turns a bad var into one line that
names the var to set: an unknown dataset, a missing file or column, a backbone whose name
cannot name a folder, tuned values that do not exist yet. Custom files are read in full, as
``prepare`` reads them: a label cell a file may not hold (a blank cell in a fully labelled
file's 0/1 column, a source value that is not 0/1) is one line naming the file, line and
column, and each file gets a one-line summary and the warnings of :mod:`.datachecks`. It also
writes two kinds of small files that let weasel's deps do the right thing:

- ``corpus/<data_name>/inputs.json``: the MD5 of every input file, the ``prepare`` step's
  dependency, so editing a data file re-prepares it (and what depends on it) and nothing
  else does. It also records the file names, so a second data set can never be prepared into
  the first one's folders unnoticed;
- ``overrides/<data_name>/tuned<true|false>/<method>.json``: the config overrides a training
  step applies last, ``{}`` or the values the ``tune`` workflow chose (``--vars.tuned true``).
"""

import hashlib
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer
from wasabi import msg

from .commands import _build_report, _split_names, _var_value, app
from .datasets import DATASETS, GOEMOTIONS_FILES, PUBMED_FILES, SEMEVAL_FILES
from .methods import TUNED_METHODS
from .prepare import read_files, read_warnings
from .protocol import check_label_sets
from .readers import (
    DEFAULT_ENCODING,
    DataPreparationError,
    MissingColumnError,
    detect_format,
    iter_records,
)

CUSTOM = "custom"
#: The input files of each built-in dataset, relative to data_dir.
BUILTIN_FILES = {
    "emotions": [f"goemotions/{name}" for name in (*GOEMOTIONS_FILES, "labels.txt")]
    + [f"semeval2018_ec/{name}" for name in SEMEVAL_FILES],
    "pubmed": [f"pubmed/{name}" for name in PUBMED_FILES],
}
INPUTS_FILE = "inputs.json"
BACKBONES_FILE = Path("training") / "backbones.json"
SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CheckError(Exception):
    """A var that must change; the message says which and how."""


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _file(value: str, var: str, what: str) -> Path:
    if not value:
        raise CheckError(f"dataset custom needs {what}: set --vars.{var}")
    path = Path(value)
    if not path.is_file():
        raise CheckError(f"{what} not found: {path} (set --vars.{var})")
    return path


def check_columns(path: Path, required: List[str], var_of: Dict[str, str]) -> None:
    """Read the header (or the first JSON object) of ``path`` and fail naming the var of any
    column it lacks; the rest of the file is read by ``prepare``."""
    try:
        records = iter_records(path, detect_format(path), required, encoding=DEFAULT_ENCODING)
        next(records, None)
    except MissingColumnError as error:
        named = str(error).split(" not found")[0]
        missing = [column for column in required if repr(column) in named]
        vars_ = sorted({f"--vars.{var_of[column]}" for column in missing})
        raise CheckError(f"{error} Set {' / '.join(vars_)}.") from None
    except DataPreparationError as error:
        raise CheckError(str(error)) from None


def check_custom(
    source_file: str,
    target_file: str,
    target_test_file: str,
    text_column: str,
    labels_column: str,
    label_columns: str,
) -> List[Path]:
    """The custom data's files exist and have the named columns; return them."""
    files = [
        _file(source_file, "source_file", "The source-domain file"),
        _file(target_file, "target_file", "The target-domain file"),
    ]
    if target_test_file:
        files.append(_file(target_test_file, "target_test_file", "The target test file"))
    if not text_column:
        raise CheckError("dataset custom needs the text column: set --vars.text_column")
    columns = _split_names(label_columns)
    if columns:
        var_of = {column: "label_columns" for column in columns}
    elif labels_column:
        columns, var_of = [labels_column], {labels_column: "labels_column"}
    else:
        raise CheckError(
            "dataset custom needs its labels: set --vars.labels_column (one column listing "
            "each row's labels) or --vars.label_columns (a,b,c: one 0/1 column per label)"
        )
    var_of[text_column] = "text_column"
    for path in files:
        check_columns(path, [text_column, *columns], var_of)
    return files


def read_custom(
    files: List[Path], text_column: str, labels_column: str, label_columns: str, ratio: float
) -> List[str]:
    """Read the custom files as ``prepare`` will; return one summary line per file and then
    the warnings (prefixed ``!``); a file ``prepare`` would refuse is a CheckError."""
    from .summary import read_summary

    columns = _split_names(label_columns)
    try:
        reads = read_files(
            files[0],
            files[1],
            text_column=text_column,
            label_columns=columns or None,
            labels_column=None if columns else labels_column,
            target_test_path=files[2] if len(files) > 2 else None,
            ratio=ratio,
        )
        for name in ("target", "target_test"):
            if name in reads:
                check_label_sets(reads["source"].labels, reads[name].labels)
        if not reads["target"].matrix.any():
            raise DataPreparationError(
                f"The target data ({files[1]}) has no known positive for any label: DALLMi "
                "learns from known positives, so there is nothing to adapt to. Mark the "
                "positives you know (a 1, or the label's name in the labels column)."
            )
    except DataPreparationError as error:
        raise CheckError(str(error)) from None
    lines = [read_summary(name, corpus.report.to_dict()) for name, corpus in reads.items()]
    return lines + [f"!{line}" for line in read_warnings(reads)]


def check_builtin(dataset: str, data_dir: Path) -> List[Path]:
    files = [data_dir / name for name in BUILTIN_FILES[dataset]]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise CheckError(
            f"Data file(s) of {dataset} not found: {', '.join(missing)}. Set --vars.data_dir "
            "to the folder holding goemotions/, semeval2018_ec/ and pubmed/, or run "
            "`python -m spacy project assets .` to fetch them."
        )
    return files


def check_ratio(dataset: str, ratio: float) -> None:
    if not 0.0 <= ratio < 1.0:
        raise CheckError(
            f"ratio must be 0 (labels already partial) or a share below 1, got {ratio:g}: "
            "set --vars.ratio"
        )
    if dataset != CUSTOM and ratio == 0.0:
        raise CheckError(
            f"{dataset} is a study with a fully labelled target: set --vars.ratio to the share "
            "of its positives to hide, e.g. 0.5"
        )


def check_key(value: str, var: str, what: str) -> None:
    if not SAFE_KEY.match(value):
        raise CheckError(
            f"{var} {value!r} cannot name a run folder: set --vars.{var} to a short name for "
            f"{what} (letters, digits, '.', '_', '-')"
        )


def record_backbone(backbone: str, key: str) -> None:
    """Remember which backbone a key names, so one key never mixes two backbones' runs."""
    known = srsly.read_json(BACKBONES_FILE) if BACKBONES_FILE.is_file() else {}
    if known.get(key, backbone) != backbone:
        raise CheckError(
            f"backbone_key {key!r} already names the backbone {known[key]!r} in training/: set "
            f"--vars.backbone_key to another name for {backbone!r}"
        )
    if key not in known:
        BACKBONES_FILE.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(BACKBONES_FILE, {**known, key: backbone})


def record_inputs(data_name: str, dataset: str, files: List[Path]) -> Path:
    """Write the inputs fingerprint (see the module docstring); refuse other files under a
    data name that already holds prepared data."""
    path = Path("corpus") / data_name / INPUTS_FILE
    inputs = {"dataset": dataset, "files": {str(file): md5(file) for file in files}}
    if path.is_file():
        before = srsly.read_json(path)
        if before["dataset"] != dataset or sorted(before["files"]) != sorted(inputs["files"]):
            raise CheckError(
                f"corpus/{data_name} holds data prepared from {', '.join(before['files'])}: "
                f"set --vars.data_name to a new name for these files"
            )
    if not path.is_file() or srsly.read_json(path) != inputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(path, inputs)
    return path


def write_method_overrides(data_name: str, tuned: bool, overrides_dir: Path) -> None:
    """The overrides file of every tuned method: the tune workflow's choice, or ``{}``."""
    overrides_dir.mkdir(parents=True, exist_ok=True)
    for method in TUNED_METHODS:
        values: Dict[str, Any] = {}
        if tuned:
            source = Path("tuned") / data_name / f"{method}.json"
            if not source.is_file():
                raise CheckError(
                    f"No tuned values for {method} ({source}): run the tune workflow first "
                    "(`python -m spacy project run tune . --vars.dataset ...`), or set "
                    "--vars.tuned false"
                )
            values = srsly.read_json(source)["overrides"]
        target = overrides_dir / f"{method}.json"
        if not target.is_file() or srsly.read_json(target) != values:
            srsly.write_json(target, values)


@app.command("check")
def check_command(
    dataset: str = typer.Argument(..., help="custom, emotions or pubmed."),
    data_dir: Path = typer.Option(Path("../shared/datasets"), "--data-dir"),
    data_name: str = typer.Option("", "--data-name", help="Folder name of the data's runs."),
    source_file: str = typer.Option("", "--source-file"),
    target_file: str = typer.Option("", "--target-file"),
    target_test_file: str = typer.Option("", "--target-test-file"),
    text_column: str = typer.Option("text", "--text-column"),
    labels_column: str = typer.Option("", "--labels-column"),
    label_columns: str = typer.Option("", "--label-columns"),
    ratio: float = typer.Option(0.0, "--ratio"),
    backbone: str = typer.Option("all-MiniLM-L6-v2", "--backbone"),
    backbone_key: str = typer.Option("", "--backbone-key"),
    tuned: str = typer.Option("false", "--tuned"),
    overrides_dir: Optional[Path] = typer.Option(None, "--overrides-dir"),
) -> None:
    """Check the project's vars before any step reads data or trains, and write the input
    fingerprint and the method overrides (run from the project folder)."""
    from .model_commands import parse_flag

    data_name = data_name or dataset
    try:
        if dataset == CUSTOM:
            files = check_custom(
                source_file,
                target_file,
                target_test_file,
                text_column,
                labels_column,
                label_columns,
            )
        elif dataset in DATASETS:
            files = check_builtin(dataset, data_dir)
        else:
            raise CheckError(
                f"Unknown dataset {dataset!r}: set --vars.dataset to custom (your own files), "
                f"{' or '.join(DATASETS)}"
            )
        check_ratio(dataset, ratio)
        summary = []
        if dataset == CUSTOM:
            summary = read_custom(files, text_column, labels_column, label_columns, ratio)
        check_key(data_name, "data_name", f"the data of dataset {dataset}")
        check_key(backbone_key or backbone, "backbone_key", f"the backbone {backbone!r}")
        record_backbone(backbone, backbone_key or backbone)
        record_inputs(data_name, dataset, files)
        if overrides_dir is not None:
            write_method_overrides(data_name, parse_flag(tuned, "--tuned"), overrides_dir)
    except CheckError as error:
        msg.fail(str(error), exits=1)
    for line in summary:
        if line.startswith("!"):
            msg.warn(line[1:])
        else:
            msg.info(line)
    labels = "as given (partial)" if ratio == 0 else f"{ratio:g} of target positives hidden"
    msg.good(f"{dataset} ({data_name}): {len(files)} input file(s), target labels {labels}")
    if dataset == CUSTOM and not target_test_file:
        msg.info(
            "No fully labelled target test file (--vars.target_test_file): the workflows "
            "adapt and select models, but no test metrics are computed."
        )


@app.command("table")
def table_command(
    project_dir: Path = typer.Argument(Path("."), help="The spaCy project folder."),
    ratios: str = typer.Option("0.5,0.7,0.9", "--ratios"),
    seeds: str = typer.Option("0,1", "--seeds"),
    extra_vars: Optional[List[str]] = typer.Option(
        None, "--var", help="Project vars as NAME=VALUE (repeatable), e.g. dataset=emotions."
    ),
) -> None:
    """Run the `adapt` and `baselines` workflows for every seed and ratio, then the report.

    Seeds form the outer loop: the source model and the ratio-free baselines depend on the
    seed only, so the project runner skips them for the second and third ratio. Ratios are
    passed as the command line would pass them, so the run folders are the same ones
    `spacy project run adapt . --vars.ratio R` uses.
    """
    from weasel.cli.run import project_run

    common: Dict[str, Any] = {"dataset": "custom"}
    for item in extra_vars or []:
        name, _, value = item.partition("=")
        common[name] = _var_value(value)
    dataset = common["dataset"]
    if dataset != CUSTOM and dataset not in DATASETS:
        msg.fail(f"Unknown dataset {dataset!r}: choose custom, {' or '.join(DATASETS)}.", exits=1)
    build_report = _build_report()
    for seed in _split_names(seeds) or []:
        for ratio in _split_names(ratios) or []:
            run_vars = {**common, "seed": int(seed), "ratio": _var_value(ratio)}
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
    data_name = str(common.get("data_name") or dataset)
    metrics = sorted((project_dir / "metrics" / data_name).rglob("*.json"))
    output = project_dir / "reports" / f"{data_name}.md"
    try:
        build_report(
            metrics,
            output,
            output.parent / f"{data_name}_figures",
            title=data_name,
            group_settings=True,
            root=project_dir,
        )
    except (FileNotFoundError, ValueError) as error:
        msg.fail(f"table: the report failed: {error}", exits=1)
    msg.good(f"Report from {len(metrics)} metrics files -> {output}")

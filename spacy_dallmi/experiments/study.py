"""``python -m spacy_dallmi study COMMAND``: the workflows the spaCy project runs.

Each command takes the project's vars as options (``--options "NAME=VALUE ..."``: the rarely
changed :data:`OPTIONS`) and runs its steps in order. :meth:`Study.folder` alone names run
folders, by the settings that change a result, so runs never overwrite each other and the
source model and ratio-free baselines are shared. A step whose output exists from the same
inputs is skipped (``prepared.json``, :mod:`.run_inputs`, a metrics file newer than its run);
``force=dallmi,source`` (or ``all``) redoes runs. A bad var is one line, before any work.
"""

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import srsly
import typer
from wasabi import msg

from ..settings import PU_ONLY
from . import INSTALL_HINT
from .commands import (
    CURVE_FILE,
    SKIPPED_FILE,
    _prepare,
    _split_names,
    app,
    find_thresholds_command,
    train_run,
    with_options,
)
from .corpus import check_known_positives, prepare_dataset, prepare_files, read_files
from .datasets import DATASETS, GOEMOTIONS_FILES, PUBMED_FILES, SEMEVAL_FILES
from .methods import registered
from .protocol import REMOVAL_MODES, check_label_sets
from .readers import DataPreparationError, MissingColumnError, detect_format, iter_records
from .summary import read_summary, read_warnings

study_app = typer.Typer(
    help="The study's workflows, as the spaCy project runs them (see docs/STUDY.md).",
    no_args_is_help=True,
)
app.add_typer(study_app, name="study")

CUSTOM = "custom"
#: The input files of each built-in dataset, relative to data_dir.
BUILTIN_FILES = {
    "emotions": [f"goemotions/{name}" for name in (*GOEMOTIONS_FILES, "labels.txt")]
    + [f"semeval2018_ec/{name}" for name in SEMEVAL_FILES],
    "pubmed": [f"pubmed/{name}" for name in PUBMED_FILES],
}
INPUTS_FILE = "inputs.json"
PREPARED_FILE = "prepared.json"
BACKBONES_FILE = Path("training") / "backbones.json"
SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
LEARN_RATE = "training.optimizer.learn_rate.initial_rate"
#: The config block of DALLMi's settings, which the run overrides set.
SETTINGS = "initialize.before_init.settings"
#: The settings of the baselines that are options of finetune.cfg's `bce` objective.
BASELINE_SETTINGS = registered(
    {"an_ls": {"label_smoothing": 0.1}, "wan": {"negative_weighting": "wan"}}
)

#: The rarely set settings, ``--vars.options "NAME=VALUE NAME=VALUE"``, with their defaults
#: (a value is read as its default's type; lists are comma-separated). The README's project
#: settings say what each does.
OPTIONS: Dict[str, Any] = {
    "max_source_docs": 1000,
    "max_target_docs": 1000,
    "max_target_test_docs": 1000,
    "target_test_fraction": 0.2,
    "valid_fraction": 0.15,
    "removal": "per_sample",
    "backbone_key": "",
    "max_length": 64,
    "batch_size": 32,
    "source_epochs": 20,
    "source_patience": 2,
    "learn_rate": 0.00005,
    "mixup_lambda": 0.1,
    "mixup_warmup_steps": 0,
    "loss_form": "norm",
    "curve": True,
    "force": "",
    "ratios": "0.5,0.7,0.9",
    "seeds": "0,1",
}
CHOICES = {"removal": REMOVAL_MODES, "loss_form": ("norm", "log")}
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class CheckError(Exception):
    """A var or option that must change; the message says which and how."""


def parse_options(text: str) -> Dict[str, Any]:
    """``"batch_size=64 curve=false"`` -> the options with those values, the rest at their
    defaults. Raises CheckError naming a bad name or value."""
    options = dict(OPTIONS)
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or name not in OPTIONS:
            raise CheckError(
                f"Unknown option {item!r} in --vars.options: give NAME=VALUE pairs, with NAME "
                f"one of {', '.join(OPTIONS)}"
            )
        default = OPTIONS[name]
        boolean = isinstance(default, bool)
        try:
            options[name] = BOOLEANS[value.lower()] if boolean else type(default)(value)
        except (KeyError, ValueError):
            kind = "true or false" if boolean else type(default).__name__
            raise CheckError(
                f"Option {name} must be {kind}, got {value!r} (--vars.options)"
            ) from None
        if name in CHOICES and options[name] not in CHOICES[name]:
            raise CheckError(
                f"Option {name} must be {' or '.join(CHOICES[name])}, got {value!r} "
                "(--vars.options)"
            )
    return options


def key(value: Any) -> str:
    """A setting as run folder names spell it: ``5e-05``, ``0.1``, ``1``, ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Study:
    """The project's vars (the study commands' options) and options; where its runs go."""

    dataset: str = CUSTOM
    data_name: str = ""
    data_dir: Path = Path("../shared/datasets")
    source_file: str = ""
    target_file: str = ""
    target_test_file: str = ""
    text_column: str = "text"
    labels_column: str = ""
    label_columns: str = ""
    ratio: float = 0.0
    seed: int = 0
    backbone: str = "all-MiniLM-L6-v2"
    epochs: int = 3
    gpu_id: int = -1
    options: Dict[str, Any] = field(default_factory=lambda: dict(OPTIONS))

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(name)

    @property
    def backbone_name(self) -> str:
        return self.options["backbone_key"] or self.backbone

    @property
    def sizes(self) -> str:
        o = self.options
        return (
            f"src{o['max_source_docs']}_tgt{o['max_target_docs']}_test"
            f"{o['max_target_test_docs']}_tf{key(o['target_test_fraction'])}"
            f"_vf{key(o['valid_fraction'])}"
        )

    @property
    def model(self) -> str:
        o = self.options
        return (
            f"{self.backbone_name}_len{o['max_length']}_b{o['batch_size']}"
            f"_se{o['source_epochs']}p{o['source_patience']}"
        )

    @property
    def corpus(self) -> Path:
        """The ratio-free corpora: source splits, full target train, target test."""
        return Path("corpus") / self.data_name / self.sizes / f"s{self.seed}"

    @property
    def hide(self) -> str:
        return f"{self.removal}_{key(self.ratio)}"

    @property
    def partial(self) -> Path:
        """The corpora of this ratio: the partially labelled target train and valid slice."""
        return self.corpus / self.hide

    @property
    def model_key(self) -> Path:
        return Path(self.data_name) / self.sizes / f"s{self.seed}" / self.model

    def run_name(self, method: str) -> str:
        """The folder of a method's run, relative to ``training/<model_key>``; a method that
        does not read the hidden-label pattern (source, ft_full) is outside the ratio's."""
        lr, epochs = key(self.learn_rate), self.epochs
        wu, loss = self.mixup_warmup_steps, self.loss_form
        names = {
            "source": "source",
            "dallmi": f"dallmi_lr{lr}_lam{key(self.mixup_lambda)}_wu{wu}_{loss}_e{epochs}",
            "dallmi_lambda0": f"dallmi_lambda0_lr{lr}_wu{wu}_{loss}_e{epochs}",
            "dallmi_paper": f"dallmi_paper_e{epochs}",
        }
        name = names.get(method, f"{method}_lr{lr}_e{epochs}")
        return name if method in ("source", "ft_full") else f"{self.hide}/{name}"

    def folder(self, kind: str, method: str) -> Path:
        """``training/...`` (a run), ``metrics/....json`` or ``thresholds/....json``."""
        if method == "none":
            return Path("metrics") / self.model_key / "none.json"
        path = Path(kind) / self.model_key / self.run_name(method)
        return path if kind == "training" else path.with_name(path.name + ".json")

    def settings(self, method: str) -> Dict[str, Any]:
        """The run's settings as its metrics file records them (the report groups by them)."""
        found: Dict[str, Any] = {"dataset": self.data_name, "sizes": self.sizes}
        found.update(seed=self.seed, model=self.model)
        if method not in ("none", "ft_full"):
            found.update(ratio=self.ratio, removal=self.removal)
        if method not in ("none", "dallmi_paper"):
            found.update(learn_rate=self.learn_rate)
        if method != "none":
            found.update(epochs=self.epochs)
        if method in ("dallmi", "dallmi_lambda0"):
            found.update(mixup_warmup_steps=self.mixup_warmup_steps, loss_form=self.loss_form)
        if method == "dallmi":
            found.update(mixup_lambda=self.mixup_lambda)
        return found

    def training(self, method: str) -> Tuple[str, Dict[str, Any]]:
        """The config file and overrides of a method's training run."""
        data, suffix = (self.corpus, "_full") if method == "ft_full" else (self.partial, "")
        train, dev = (str(data / f"target_{name}{suffix}.spacy") for name in ("train", "valid"))
        source = self.folder("training", "source") / "model-best"
        overrides: Dict[str, Any] = {"paths.source": str(source), "system.seed": self.seed}
        overrides.update({"paths.train": train, "paths.dev": dev})
        if method == "dallmi_paper":
            return "adapt_paper.cfg", overrides
        overrides.update({"training.batcher.size": self.batch_size, LEARN_RATE: self.learn_rate})
        if method == "dallmi_lambda0":  # the reference code's objective: no teacher either
            overrides.update({f"{SETTINGS}.{k}": v for k, v in PU_ONLY.items()})
        if method.startswith("dallmi"):
            lam = 0 if method == "dallmi_lambda0" else self.mixup_lambda
            overrides[f"{SETTINGS}.mixup_lambda"] = lam
            overrides[f"{SETTINGS}.mixup_warmup_steps"] = self.mixup_warmup_steps
            overrides[f"{SETTINGS}.loss_form"] = self.loss_form
        for name, value in BASELINE_SETTINGS.get(method, {}).items():
            overrides[f"{SETTINGS}.{name}"] = value
        return ("adapt.cfg" if method.startswith("dallmi") else "finetune.cfg"), overrides

    def forced(self, method: str) -> bool:
        names = _split_names(self.force) or []
        return "all" in names or method in names


def _file(value: str, var: str, what: str) -> Path:
    if not value:
        raise CheckError(f"dataset custom needs {what}: set --vars.{var}")
    path = Path(value)
    if not path.is_file():
        raise CheckError(f"{what} not found: {path} (set --vars.{var})")
    return path


def check_custom(study: Study) -> Tuple[List[Path], List[str]]:
    """The custom data's files, checked and read as ``prepare`` will, and a summary line per
    file, then the warnings (prefixed ``!``); a missing column names its var, and a file
    ``prepare`` would refuse is a CheckError."""
    files = [
        _file(study.source_file, "source_file", "The source-domain file"),
        _file(study.target_file, "target_file", "The target-domain file"),
    ]
    if study.target_test_file:
        files.append(_file(study.target_test_file, "target_test_file", "The target test file"))
    if not study.text_column:
        raise CheckError("dataset custom needs the text column: set --vars.text_column")
    columns = _split_names(study.label_columns)
    if columns:
        var_of = {column: "label_columns" for column in columns}
    elif study.labels_column:
        var_of = {study.labels_column: "labels_column"}
    else:
        raise CheckError(
            "dataset custom needs its labels: set --vars.labels_column (one column listing "
            "each row's labels) or --vars.label_columns (a,b,c: one 0/1 column per label)"
        )
    required = [study.text_column, *var_of]
    var_of[study.text_column] = "text_column"
    try:
        for path in files:  # every header first: a wrong column name fails before any read
            next(iter_records(path, detect_format(path), required), None)
        reads = read_files(
            files[0],
            files[1],
            text_column=study.text_column,
            label_columns=columns or None,
            labels_column=None if columns else study.labels_column,
            target_test_path=files[2] if len(files) > 2 else None,
            ratio=study.ratio,
        )
        for name in ("target", "target_test"):
            if name in reads:
                check_label_sets(reads["source"].labels, reads[name].labels)
        check_known_positives(reads["target"])
    except MissingColumnError as error:
        named = str(error).split(" not found")[0]
        vars_ = sorted({f"--vars.{var}" for column, var in var_of.items() if repr(column) in named})
        raise CheckError(f"{error} Set {' / '.join(vars_)}.") from None
    except DataPreparationError as error:
        raise CheckError(str(error)) from None
    lines = [read_summary(name, corpus.report.to_dict()) for name, corpus in reads.items()]
    return files, lines + [f"!{line}" for line in read_warnings(reads)]


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
            f"{var} {value!r} cannot name a run folder: set {var} to a short name for {what} "
            f"(letters, digits, '.', '_', '-'; --vars.{var}"
            + (f' or --vars.options "{var}=NAME")' if var in OPTIONS else ")")
        )


def record_backbone(backbone: str, name: str) -> None:
    """Remember which backbone a key names, so one key never mixes two backbones' runs."""
    known = srsly.read_json(BACKBONES_FILE) if BACKBONES_FILE.is_file() else {}
    if known.get(name, backbone) != backbone:
        raise CheckError(
            f"backbone_key {name!r} already names the backbone {known[name]!r} in training/: "
            f'set --vars.options "backbone_key=NAME" to another name for {backbone!r}'
        )
    if name not in known:
        BACKBONES_FILE.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(BACKBONES_FILE, {**known, name: backbone})


def record_inputs(data_name: str, dataset: str, files: List[Path]) -> Dict[str, Any]:
    """Write the MD5 of every input file to ``corpus/<data_name>/inputs.json`` (an edited file
    is prepared again); refuse other files under a data name already in use."""
    path = Path("corpus") / data_name / INPUTS_FILE
    files_md5 = {str(file): hashlib.md5(file.read_bytes()).hexdigest() for file in files}
    inputs = {"dataset": dataset, "files": files_md5}
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
    return inputs


def check(study: Study) -> List[Path]:
    """Check the vars and the data (one line naming what to fix) and print a summary."""
    try:
        if study.dataset != CUSTOM and study.dataset not in DATASETS:
            raise CheckError(
                f"Unknown dataset {study.dataset!r}: set --vars.dataset to custom (your own "
                f"files), {' or '.join(DATASETS)}"
            )
        check_ratio(study.dataset, study.ratio)
        if study.dataset == CUSTOM:
            files, summary = check_custom(study)
        else:
            files, summary = check_builtin(study.dataset, study.data_dir), []
        check_key(study.data_name, "data_name", f"the data of dataset {study.dataset}")
        check_key(study.backbone_name, "backbone_key", f"the backbone {study.backbone!r}")
        record_backbone(study.backbone, study.backbone_name)
        record_inputs(study.data_name, study.dataset, files)
    except CheckError as error:
        msg.fail(str(error), exits=1)
    for line in summary:
        msg.warn(line[1:]) if line.startswith("!") else msg.info(line)
    ratio = study.ratio
    labels = "as given (partial)" if ratio == 0 else f"{ratio:g} of target positives hidden"
    msg.good(
        f"{study.dataset} ({study.data_name}): {len(files)} input file(s), target labels {labels}"
    )
    if study.dataset == CUSTOM and not study.target_test_file:
        msg.info(
            "No fully labelled target test file (--vars.target_test_file): the workflows "
            "adapt and select models, but no test metrics are computed."
        )
    return files


def prepare(study: Study) -> None:
    """Write the corpora, unless ``prepared.json`` shows them made from the same inputs."""
    inputs = srsly.read_json(Path("corpus") / study.data_name / INPUTS_FILE)
    names = ("ratio", "removal", "seed", "max_source_docs", "max_target_docs")
    names += ("max_target_test_docs", "target_test_fraction", "valid_fraction")
    values = {name: getattr(study, name) for name in names}
    columns = {"text": study.text_column, "labels": study.labels_column}
    columns["label_columns"] = study.label_columns
    record = {"inputs": inputs, "settings": values, "columns": columns}
    done = study.partial / PREPARED_FILE
    if done.is_file() and srsly.read_json(done) == record and not study.forced("prepare"):
        msg.good(f"{study.partial}: already prepared from the same files and settings")
        return
    msg.divider(f"prepare {study.partial}")
    settings = dict(values, max_docs=None, test_fraction=0.2, quiet=False, shared_dir=study.corpus)
    settings["valid_fraction"] = settings["valid_fraction"] or None  # 0: no validation slice
    if study.dataset != CUSTOM:
        _prepare(prepare_dataset, study.dataset, study.data_dir, study.partial, **settings)
    else:  # one 0/1 column per label, when given, takes precedence over a label list
        given = _split_names(study.label_columns or None)
        read = dict(text_column=study.text_column, label_columns=given)
        read.update(labels_column=None if given else study.labels_column or None)
        read.update(target_test_path=study.target_test_file or None, **settings)
        _prepare(prepare_files, study.source_file, study.target_file, study.partial, **read)
    srsly.write_json(done, record)


def train(study: Study, method: str) -> None:
    output = study.folder("training", method)
    msg.divider(f"train {method}: {output}")
    options: Dict[str, Any] = {"gpu_id": study.gpu_id, "force": study.forced(method)}
    if method == "source":
        config, epochs = "source.cfg", study.source_epochs
        overrides = {
            "paths.train": str(study.corpus / "source_train.spacy"),
            "paths.dev": str(study.corpus / "source_test.spacy"),
            "paths.backbone": study.backbone,
            "components.textcat.model.max_length": study.max_length,
            "training.batcher.size": study.batch_size,
            "system.seed": study.seed,
        }
        options["patience"] = study.source_patience
    else:
        (config, overrides), epochs = study.training(method), study.epochs
        options["curve_docs"] = study.corpus / "target_test.spacy" if study.curve else None
        if method == "ft_full":
            options["skip_if_missing"] = study.corpus / "target_train_full.spacy"
    train_run(Path("configs") / config, output, epochs, overrides, **options)


def evaluate(study: Study, method: str) -> None:
    """Score a run on the target test split, unless its metrics file is newer than both; a
    run without a model or a study without a test split gets a metrics file saying why."""
    from .evaluate import evaluate_run, skipped_result, write_metrics

    run = study.folder("training", "source" if method == "none" else method)
    output, test = study.folder("metrics", method), study.corpus / "target_test.spacy"
    made = [run / "training_inputs.json", run / SKIPPED_FILE, test]
    newest = max((path.stat().st_mtime for path in made if path.exists()), default=0.0)
    if output.is_file() and output.stat().st_mtime > newest and not study.forced(method):
        msg.good(f"{output}: already evaluated")
        return
    settings, reason = study.settings(method), None
    if (run / SKIPPED_FILE).is_file():
        reason = srsly.read_json(run / SKIPPED_FILE)["reason"]
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
        if study.gpu_id >= 0:
            import spacy

            spacy.require_gpu(study.gpu_id)
        log = None if method == "none" or not (run / CURVE_FILE).is_file() else run / CURVE_FILE
        run = run / "model-best" if method == "none" else run
        result = evaluate_run(run, test, method=method, settings=settings, epoch_log=log)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(str(error), exits=1)
    write_metrics(result, output)
    scores = []
    for name, metrics in (("selected", result["metrics"]), ("last", result["metrics_last"])):
        value = metrics["cats_macro_ap"]
        scores.append(f"{name} {'n/a' if value is None else format(value, '.4f')}")
    msg.good(f"{method}: macro AP {', '.join(scores)} on {result['n_docs']} docs -> {output}")


def method(study: Study, name: str) -> None:
    train(study, name)
    evaluate(study, name)


def report(study: Study) -> None:
    """``reports/<data_name>.md`` from every metrics file of the data, one section per setting
    (a missing matplotlib or a bad metrics file is one line)."""
    try:
        from .report import build_report
    except ImportError as error:
        missing = (error.name or "matplotlib").split(".")[0]
        msg.fail(f"The report needs {missing}: {INSTALL_HINT}", exits=1)
    paths = sorted((Path("metrics") / study.data_name).rglob("*.json"))
    output = Path("reports") / f"{study.data_name}.md"
    figures = output.parent / f"{output.stem}_figures"
    if not paths:
        msg.fail(f"No metrics files under metrics/{study.data_name}", exits=1)
    try:
        build_report(paths, output, figures, title=study.data_name, group_settings=True)
    except (FileNotFoundError, ValueError) as error:
        msg.fail(f"report: {error}", exits=1)
    msg.good(f"Report from {len(paths)} metrics files -> {output} (figures in {figures})")


def start(study: Study) -> None:
    """The steps every training workflow begins with."""
    check(study)
    prepare(study)
    train(study, "source")


def run_adapt(study: Study, with_report: bool = True) -> None:
    start(study)
    evaluate(study, "none")
    method(study, "dallmi")
    thresholds = study.folder("thresholds", "dallmi")
    if study.forced("dallmi") or not thresholds.is_file():
        model, valid = study.folder("training", "dallmi"), study.partial / "target_valid.spacy"
        find_thresholds_command(model / "model-best", valid, thresholds, study.gpu_id)
    if with_report:
        report(study)


def run_baselines(study: Study, with_report: bool = True) -> None:
    start(study)
    evaluate(study, "none")
    for name in ("ft_partial", "an_ls", "wan", "ft_full", "dallmi_lambda0", "dallmi_paper"):
        method(study, name)
    if with_report:
        report(study)


def run_table(study: Study) -> None:
    """``adapt`` and ``baselines`` at every seed and ratio of the options, then the report:
    seeds form the outer loop, so the ratio-free runs are trained once per seed."""
    check(study)
    for seed in _split_names(study.seeds) or []:
        for ratio in _split_names(study.ratios) or []:
            cell = Study(**{**study.__dict__, "seed": int(seed), "ratio": float(ratio)})
            msg.divider(f"table: {study.dataset}, ratio {ratio}, seed {seed}")
            run_adapt(cell, with_report=False)
            run_baselines(cell, with_report=False)
    report(study)


#: Help of the study commands' options; the options are Study's fields, with its defaults.
HELP = {
    "dataset": "custom, emotions or pubmed.",
    "data_name": "Folder name of the runs.",
    "ratio": "Share of target positives to hide.",
    "options": "NAME=VALUE pairs (see OPTIONS).",
}
VARS = {
    var.name: (
        str if var.name == "options" else var.type,
        typer.Option("" if var.name == "options" else var.default, help=HELP.get(var.name)),
    )
    for var in dataclasses.fields(Study)
}
VARS["epochs"] = (int, typer.Option(3, min=1))


def _command(name: str, run: Callable[[Study], None], help: str) -> None:
    """Register one study command: the project's vars as options, then ``run``."""

    @with_options(VARS)
    def command(**values: Any) -> None:
        try:
            values["options"] = parse_options(values["options"])
        except CheckError as error:
            msg.fail(str(error), exits=1)
        values["data_name"] = values["data_name"] or values["dataset"]
        run(Study(**values))

    command.__doc__ = help
    study_app.command(name)(command)


_command("check", check, "Check the data, columns and settings; one line names what to fix.")
_command("adapt", run_adapt, "Adapt the source model with DALLMi; thresholds and report.")
_command("baselines", run_baselines, "The baselines beside DALLMi, then the report.")
_command("table", run_table, "adapt and baselines at every seed and ratio, then the report.")

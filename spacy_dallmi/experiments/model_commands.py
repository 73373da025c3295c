"""Commands that train a pipeline or fit its thresholds: ``train`` and ``find-thresholds``.

They sit beside the data and report commands on the same ``python -m spacy_dallmi`` app
(:mod:`.cli` imports this module to register them) but need nothing from the experiment
kit's extra: only spaCy, the library and typer, which spaCy itself installs.
"""

import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import srsly
import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from .commands import SKIPPED_FILE, app
from .run_inputs import INPUTS_FILE, finished_with, run_inputs, write_record

#: The per-epoch learning-curve records, inside the training output folder.
CURVE_FILE = "curve.jsonl"


def write_skipped(output: Path, reason: str) -> None:
    """Put a marker saying why there is no model where the run's output would be, so the
    evaluation step can say so too instead of failing on a missing model."""
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    srsly.write_json(output / SKIPPED_FILE, {"reason": reason})


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_command(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Training config, e.g. configs/adapt.cfg."),
    output: Path = typer.Argument(..., help="Output folder (model-last, model-best)."),
    epochs: int = typer.Option(
        ..., "--epochs", min=1, help="Training budget in epochs (with --patience: at most)."
    ),
    patience: int = typer.Option(
        0,
        "--patience",
        min=0,
        help="Stop after this many epochs without a better dev score; 0: train all --epochs.",
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to train on; -1 for the CPU."),
    keep_source: bool = typer.Option(
        True,
        "--keep-source/--no-keep-source",
        help="For a sourced config: model-best may be the starting pipeline if it scores best.",
    ),
    curve_docs: Optional[Path] = typer.Option(
        None,
        "--curve-docs",
        help="Held-out labelled docs scored after every epoch for the learning-curve figure "
        "only (never for selection); written to OUTPUT/curve.jsonl. Skipped if missing.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help=f"Train even if OUTPUT/{INPUTS_FILE} shows a finished run of the same config, "
        "overrides, epochs and input files.",
    ),
) -> None:
    """`spacy train` for E epochs (or until the dev score stops improving, with --patience):
    one evaluation per epoch, the dev curve printed and written to OUTPUT/training.json,
    output renamed into place only when finished. Extra --section.key value
    options override the config, as with `spacy train`."""
    overrides = parse_config_overrides(ctx.args)
    train_run(
        config,
        output,
        epochs,
        overrides,
        patience=patience,
        gpu_id=gpu_id,
        keep_source=keep_source,
        curve_docs=curve_docs,
        force=force,
    )


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
    """Train ``config`` into ``output`` unless ``output`` holds a finished run of the same
    inputs (see :mod:`.run_inputs`); a missing ``skip_if_missing`` leaves a skipped marker,
    and existing ``curve_docs`` are scored after every epoch for the learning curve only."""
    from ..training import PARTIAL_SUFFIX, train_epochs

    if not config.is_file():
        msg.fail(f"Config file not found: {config}", exits=1)
    if skip_if_missing is not None and not skip_if_missing.exists():
        reason = (
            f"not trained: {skip_if_missing} does not exist (the upper bound needs fully "
            "labelled target train, which exists only when labels are hidden for a study, "
            "ratio > 0)"
        )
        write_skipped(output, reason)
        msg.info(f"{output}: {reason}")
        return
    overrides = dict(overrides)
    if curve_docs is not None:
        if curve_docs.is_file():
            partial = output.with_name(output.name + PARTIAL_SUFFIX)
            overrides["paths.curve_docs"] = str(curve_docs)
            overrides["paths.curve_output"] = str(partial / CURVE_FILE)
        else:
            msg.info(f"No per-epoch test curve: {curve_docs} does not exist.")
    own = [output, output.with_name(output.name + PARTIAL_SUFFIX)]
    try:
        inputs = run_inputs(config, overrides, epochs, patience, keep_source, own)
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
        train_epochs(
            config,
            output,
            epochs,
            patience=patience,
            overrides=overrides,
            use_gpu=gpu_id,
            keep_source=keep_source,
        )
    except (FileNotFoundError, ValueError) as error:
        msg.fail(f"train {config}: {error}", exits=1)
    write_record(output, inputs)


@app.command("find-thresholds")
def find_thresholds_command(
    model: Path = typer.Argument(..., help="Trained pipeline folder."),
    docs: Path = typer.Argument(
        ..., help="DocBin of labelled docs: the (partially labelled) validation slice."
    ),
    output: Path = typer.Argument(..., help="JSON {label: threshold} for classify --thresholds."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to predict on; -1 for the CPU."),
) -> None:
    """Tune one decision threshold per label (best F1 on DOCS' labels; unlabeled counts as
    negative). Use the validation slice, never the test split."""
    find_thresholds(model, docs, output, gpu_id)


def find_thresholds(model: Path, docs: Path, output: Path, gpu_id: int = -1) -> None:
    """Fit and write the per-label thresholds of ``model`` on ``docs`` (see the command)."""
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

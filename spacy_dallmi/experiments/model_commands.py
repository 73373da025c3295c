"""Commands that train or tune a pipeline: ``train`` and ``find-thresholds``.

They sit beside the data and report commands on the same ``python -m spacy_dallmi`` app
(:mod:`.cli` imports this module to register them) but need nothing from the experiment
kit's extra: only spaCy, the library and typer, which spaCy itself installs.
"""

from pathlib import Path

import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from .cli import app


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_command(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Training config, e.g. configs/adapt.cfg."),
    output: Path = typer.Argument(..., help="Output folder (model-last, model-best)."),
    epochs: int = typer.Option(..., "--epochs", min=1, help="Training budget in epochs."),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to train on; -1 for the CPU."),
    keep_source: bool = typer.Option(
        True,
        "--keep-source/--no-keep-source",
        help="For a sourced config: model-best may be the starting pipeline if it scores best.",
    ),
) -> None:
    """`spacy train` for E epochs: linear LR decay over exactly that run, one evaluation per
    epoch, output renamed into place only when finished. Extra --section.key value
    options override the config, as with `spacy train`."""
    from ..training import train_epochs

    if not config.is_file():
        msg.fail(f"Config file not found: {config}", exits=1)
    overrides = parse_config_overrides(ctx.args)
    try:
        train_epochs(
            config, output, epochs, overrides=overrides, use_gpu=gpu_id, keep_source=keep_source
        )
    except (FileNotFoundError, ValueError) as error:
        msg.fail(f"train {config}: {error}", exits=1)


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
    fitted = tune_pipeline_thresholds(nlp, gold)
    details = write_thresholds(fitted, output)
    for label, values in fitted.items():
        f1 = "n/a (no known positive)" if values["f1"] is None else f"F1 {values['f1']:.3f}"
        msg.text(f"{label}: threshold {values['threshold']:.3f}, {f1}")
    msg.good(f"Thresholds for {len(fitted)} labels -> {output} (details: {details})")

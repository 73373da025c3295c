"""Training runs measured in epochs, with linear learning-rate decay and safe outputs.

The reference implementation trains with the Hugging Face Trainer: AdamW with the learning
rate decaying linearly to 0 over the whole run, no warm-up, gradient clipping at 1.0. thinc's
schedules only see the step count, so a linear decay needs the run's total number of steps,
which depends on the data and on the batcher (the cycle batcher adds label-covering positives,
so an epoch has more batches than ``ceil(docs / size)``). The configs therefore state their
budget in steps, once: the schedule's ``total_steps``, which ``[training] max_steps`` refers to
(not the other way round: spaCy resolves ``[training.optimizer]`` without interpolation),
and :func:`train_epochs` turns "E epochs" into steps by running the configured batcher over
the training corpus once. It also sets ``eval_frequency`` to one evaluation per epoch.

:func:`train_epochs` trains into ``OUTPUT.partial`` and renames it to ``OUTPUT`` only when
training has finished, so an interrupted or killed run never leaves something that looks
like a result. With ``keep_source=True`` (the default for sourced pipelines) ``model-best``
is chosen among the checkpoints AND the starting pipeline, by the same dev score, so that
label-free model selection can never ship a worse model than the one it started from.
"""

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import spacy
from spacy.util import load_config, registry, resolve_dot_names
from wasabi import msg

PARTIAL_SUFFIX = ".partial"


@registry.schedules("spacy_dallmi.linear_decay.v1")
def linear_decay(initial_rate: float, total_steps: int) -> Iterator[float]:
    """``initial_rate`` decaying linearly to 0 at ``total_steps`` (then staying 0).

    Unlike thinc's ``warmup_linear.v1``, a ``total_steps`` of 0 (e.g. an unset
    ``[training] max_steps``) is an error instead of a run at learning rate 0.
    """
    if not (isinstance(total_steps, int) and total_steps > 0):
        raise ValueError(
            f"spacy_dallmi.linear_decay.v1 needs total_steps > 0, got {total_steps!r}: set "
            "[training.optimizer.learn_rate] total_steps, or train with "
            "`python -m spacy_dallmi train ... --epochs E`, which computes it."
        )
    if not initial_rate > 0:
        raise ValueError(
            f"spacy_dallmi.linear_decay.v1: initial_rate must be > 0, got {initial_rate}."
        )
    step = 0
    while True:
        yield initial_rate * max(0.0, (total_steps - step) / total_steps)
        step += 1


def batches_per_epoch(config_path: Union[str, Path], overrides: Dict[str, Any]) -> int:
    """The number of batches the config's batcher makes from its training corpus in one
    epoch (the first one; later epochs of the cycle batcher differ by a batch or two)."""
    config = load_config(config_path, overrides=overrides, interpolate=True)
    nlp = spacy.blank(config["nlp"]["lang"])
    training = registry.resolve({"batcher": config["training"]["batcher"]}, validate=False)
    (corpus,) = resolve_dot_names(config, [config["training"]["train_corpus"]])
    examples = list(corpus(nlp))
    if not examples:
        raise ValueError(f"The training corpus of {config_path} is empty.")
    return sum(1 for _ in training["batcher"](examples))


def train_epochs(
    config_path: Union[str, Path],
    output_path: Union[str, Path],
    epochs: int,
    *,
    overrides: Optional[Dict[str, Any]] = None,
    use_gpu: int = -1,
    keep_source: bool = True,
) -> Path:
    """Train ``config_path`` for ``epochs`` epochs into ``output_path``; return it.

    Sets ``training.max_steps`` (the run length and the decay's ``total_steps``),
    ``training.max_epochs = 0`` and ``training.eval_frequency`` (once per epoch). Other
    ``overrides`` are passed to spaCy as ``--section.key value`` would be.
    """
    from spacy.cli.train import train

    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}.")
    overrides = dict(overrides or {})
    check_source_pipeline(config_path, overrides)
    per_epoch = batches_per_epoch(config_path, overrides)
    overrides.update(
        {
            "training.optimizer.learn_rate.total_steps": epochs * per_epoch,
            "training.max_steps": epochs * per_epoch,
            "training.max_epochs": 0,
            "training.eval_frequency": per_epoch,
        }
    )
    output = Path(output_path)
    partial = output.with_name(output.name + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    msg.info(
        f"{epochs} epoch(s) x {per_epoch} batches = {epochs * per_epoch} steps, evaluated "
        f"once per epoch; training into {partial} (renamed to {output} when finished)"
    )
    try:
        train(config_path, partial, use_gpu=use_gpu, overrides=overrides)
    except KeyboardInterrupt:
        msg.fail(
            f"Interrupted: nothing was saved at {output} (the unfinished run is in {partial})."
        )
        raise
    source = overrides.get("paths.source")
    if keep_source and source:
        _keep_source_if_better(Path(source), partial)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return output


def check_source_pipeline(config_path: Union[str, Path], overrides: Dict[str, Any]) -> None:
    """Refuse a ``paths.source`` that is not a saved pipeline, in one line that says what to
    do, before spaCy fails on it with E050 (no such folder) or E053 (no config.cfg)."""
    config = load_config(config_path, overrides=overrides, interpolate=True)
    source = config.get("paths", {}).get("source")
    if not source:
        return
    path = Path(source)
    if path.name.endswith(PARTIAL_SUFFIX):
        raise ValueError(
            f"paths.source {path} is an unfinished training run ({PARTIAL_SUFFIX}): let it "
            f"finish, or train it again, and point paths.source at the finished run's "
            "model-best."
        )
    if (path / "model-best" / "config.cfg").is_file():
        raise ValueError(
            f"paths.source {path} is a training output folder, not a pipeline: point it at "
            f"{path / 'model-best'}."
        )
    if not (path / "config.cfg").is_file():
        what = "does not exist" if not path.exists() else "holds no config.cfg"
        raise ValueError(
            f"paths.source {path} {what}: train the source model first (`spacy project run "
            "train-source`) or point paths.source at a saved pipeline folder."
        )


def _keep_source_if_better(source: Path, run: Path) -> None:
    """Score the starting pipeline and ``model-best`` on the dev corpus with the run's
    ``score_weights``, and make the starting pipeline ``model-best`` if it scores higher.
    The choice and both scores are written to ``model-best/meta.json``."""
    from spacy.training.loop import create_evaluation_callback

    best = run / "model-best"
    config = load_config(best / "config.cfg", interpolate=True)
    (dev_corpus,) = resolve_dot_names(config, [config["training"]["dev_corpus"]])
    weights = config["training"]["score_weights"]
    scores = {}
    for name, path in (("source", source), ("checkpoint", best)):
        scores[name], _ = create_evaluation_callback(spacy.load(path), dev_corpus, weights)()
    selected = "source" if scores["source"] > scores["checkpoint"] else "checkpoint"
    if selected == "source":
        shutil.rmtree(best)
        shutil.copytree(source, best)
        msg.info(
            f"model-best is the starting pipeline: its dev score {scores['source']:.4f} beats "
            f"the best checkpoint's {scores['checkpoint']:.4f}"
        )
    meta_path = best / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf8"))
    meta["selection"] = {"selected": selected, "dev_scores": scores}
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf8")

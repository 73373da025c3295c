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
is chosen among the checkpoints, the starting pipeline AND blends of the two (WiSE-FT, see
:mod:`.interpolation`), by the same dev score, so that model selection can never ship a model
that scores worse on the dev set than the one it started from.

A model trained from scratch (the source model) should stop when it has learned, not at a
guessed budget: with ``patience=P`` the run stops once the dev score has not improved for P
epochs, ``epochs`` is only the upper bound, and ``model-best`` is the best dev epoch. Its
config uses :func:`warmup_constant`, a schedule that does not need the run's length. Every run
writes its dev curve (``dev_curve.jsonl``, one line per evaluation) and ``training.json``: the
curve, the best and the last epoch, and why it stopped, which is printed too.
"""

import json
import shutil
import sys
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy
import spacy
from spacy.util import load_config, registry, resolve_dot_names
from wasabi import msg

PARTIAL_SUFFIX = ".partial"
DEV_CURVE_FILE = "dev_curve.jsonl"
TRAINING_FILE = "training.json"
#: A run that reaches its epoch bound with a last-epoch dev gain below this many points (of a
#: score in [0, 100]) counts as converged; above it, the report says to raise the bound.
CONVERGED_GAIN_POINTS = 0.5


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


@registry.schedules("spacy_dallmi.warmup_constant.v1")
def warmup_constant(initial_rate: float, warmup_steps: int) -> Iterator[float]:
    """A linear warm-up to ``initial_rate`` over ``warmup_steps`` steps, then constant.

    For runs whose length is not known in advance (early stopping on the dev score): a rate
    that decays to 0 at a guessed step would stop a still-learning model from learning.
    """
    if not initial_rate > 0:
        raise ValueError(
            f"spacy_dallmi.warmup_constant.v1: initial_rate must be > 0, got {initial_rate}."
        )
    if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
        raise ValueError(
            "spacy_dallmi.warmup_constant.v1: warmup_steps must be a whole number >= 0, got "
            f"{warmup_steps!r}."
        )
    step = 0
    while True:
        yield initial_rate * min(1.0, (step + 1) / (warmup_steps + 1))
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
    patience: int = 0,
    overrides: Optional[Dict[str, Any]] = None,
    use_gpu: int = -1,
    keep_source: bool = True,
) -> Path:
    """Train ``config_path`` into ``output_path`` for ``epochs`` epochs, or until the dev score
    has not improved for ``patience`` epochs (0: the full ``epochs``); return ``output_path``.

    Sets ``training.max_steps`` (and the linear decay's ``total_steps`` where the schedule has
    one), ``training.max_epochs = 0``, ``training.eval_frequency`` (once per epoch) and
    ``training.patience``. Other ``overrides`` are passed to spaCy as ``--section.key value``
    would be.
    """
    from spacy.cli._util import setup_gpu, show_validation_error
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train

    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}.")
    if not (isinstance(patience, int) and patience >= 0):
        raise ValueError(f"patience must be a whole number of epochs >= 0, got {patience!r}.")
    overrides = dict(overrides or {})
    check_source_pipeline(config_path, overrides)
    per_epoch = batches_per_epoch(config_path, overrides)
    overrides.update(
        {
            "training.max_steps": epochs * per_epoch,
            "training.max_epochs": 0,
            "training.eval_frequency": per_epoch,
            "training.patience": patience * per_epoch,
        }
    )
    with show_validation_error(config_path):
        config = load_config(config_path, overrides=overrides, interpolate=False)
    if "total_steps" in config["training"]["optimizer"]["learn_rate"]:
        config["training"]["optimizer"]["learn_rate"]["total_steps"] = epochs * per_epoch
    output = Path(output_path)
    partial = output.with_name(output.name + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    logger = config["training"]["logger"]
    config["training"]["logger"] = {
        "@loggers": "spacy_dallmi.dev_curve_logger.v1",
        "path": str(partial / DEV_CURVE_FILE),
        "steps_per_epoch": per_epoch,
        "logger": logger,
    }
    stop = f"at most {epochs}, stopping after {patience} without gain" if patience else epochs
    msg.info(
        f"{stop} epoch(s) x {per_epoch} batches, evaluated once per epoch; training into "
        f"{partial} (renamed to {output} when finished)"
    )
    setup_gpu(use_gpu)
    try:
        with show_validation_error(config_path, hint_fill=False):
            nlp = init_nlp(config, use_gpu=use_gpu)
        train(nlp, partial, use_gpu=use_gpu, stdout=sys.stdout, stderr=sys.stderr)
    except KeyboardInterrupt:
        msg.fail(
            f"Interrupted: nothing was saved at {output} (the unfinished run is in {partial})."
        )
        raise
    for model in ("model-best", "model-last"):
        _set_logger(partial / model, logger)
    source = overrides.get("paths.source")
    if keep_source and source:
        _select_shipped(Path(source), partial)
    curve = [json.loads(line) for line in (partial / DEV_CURVE_FILE).open(encoding="utf8")]
    summary = summarise_dev_curve(curve, epochs=epochs, patience=patience)
    (partial / TRAINING_FILE).write_text(json.dumps(summary, indent=2), encoding="utf8")
    print_dev_curve(summary)
    if output.exists():
        shutil.rmtree(output)
    partial.rename(output)
    return output


@registry.loggers("spacy_dallmi.dev_curve_logger.v1")
def dev_curve_logger(
    path: str, steps_per_epoch: int, logger: Optional[Callable] = None
) -> Callable[..., Tuple[Callable, Callable]]:
    """spaCy's ``logger`` (or none) that also appends each dev evaluation to ``path`` as a
    JSON line: the epoch, the step, the weighted score and the scalar scores.

    :func:`train_epochs` wraps the config's logger in it, so every run keeps its dev curve.
    """

    def setup(
        nlp: spacy.Language, stdout: IO = sys.stdout, stderr: IO = sys.stderr
    ) -> Tuple[Callable, Callable]:
        inner = logger(nlp, stdout, stderr) if logger is not None else None
        handle = open(path, "a", encoding="utf8")

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            if inner is not None:
                inner[0](info)
            if info is None or info.get("score") is None:
                return
            scores = info.get("other_scores") or {}
            line = {"epoch": info["step"] // steps_per_epoch, "step": info["step"]}
            line["score"] = float(info["score"])
            line.update({k: float(v) for k, v in scores.items() if isinstance(v, (int, float))})
            handle.write(json.dumps(line) + "\n")
            handle.flush()

        def finalize() -> None:
            if inner is not None:
                inner[1]()
            handle.close()

        return log_step, finalize

    return setup


def summarise_dev_curve(
    curve: List[Dict[str, Any]], *, epochs: int, patience: int
) -> Dict[str, Any]:
    """Why a run stopped, from its dev curve (one evaluation per epoch; epoch 0 is after the
    first batch): ``converged`` (``patience`` epochs without gain, or a last-epoch gain below
    :data:`CONVERGED_GAIN_POINTS` at the bound), ``upper_bound`` (still improving at the bound)
    or ``fixed_budget`` (``patience`` 0)."""
    if not curve:
        raise ValueError("The run made no dev evaluation.")
    scores = [row["score"] for row in curve]
    # spaCy saves model-best again at a later evaluation that ties the best score
    best = max(range(len(scores)), key=lambda i: (scores[i], i))
    last_gain = 100 * (scores[-1] - scores[-2]) if len(scores) > 1 else None
    if not patience:
        reason = "fixed_budget"
    elif curve[-1]["epoch"] < epochs or last_gain is None or last_gain < CONVERGED_GAIN_POINTS:
        reason = "converged"
    else:
        reason = "upper_bound"
    return {
        "reason": reason,
        "epochs": epochs,
        "patience": patience,
        "best_epoch": curve[best]["epoch"],
        "best_score": scores[best],
        "stop_epoch": curve[-1]["epoch"],
        "last_gain_points": last_gain,
        "curve": curve,
    }


def print_dev_curve(summary: Dict[str, Any]) -> None:
    """The dev curve on one line, and why the run stopped (with the setting to raise)."""
    curve = ", ".join(f"{row['epoch']}: {100 * row['score']:.1f}" for row in summary["curve"])
    msg.text(f"Dev score by epoch (0 = after the first batch): {curve}")
    best = f"model-best is epoch {summary['best_epoch']} ({100 * summary['best_score']:.1f})"
    if summary["reason"] == "upper_bound":
        msg.warn(
            f"Stopped by the upper bound of {summary['epochs']} epochs while still improving "
            f"by {summary['last_gain_points']:.1f} points in the last epoch; {best}. Raise "
            "--epochs (the project's source_epochs) to let it finish learning."
        )
    elif summary["reason"] == "converged":
        msg.good(f"Converged: stopped at epoch {summary['stop_epoch']}; {best}.")
    else:
        msg.info(f"Fixed budget of {summary['epochs']} epochs; {best}.")


def _set_logger(model: Path, logger: Dict[str, Any]) -> None:
    """Put the config's own logger back into a saved pipeline's config (the dev curve logger
    names this run's folder, which a reused config must not write to)."""
    from confection import Config

    path = model / "config.cfg"
    if not path.is_file():
        return
    config = Config().from_disk(path, interpolate=False)
    config["training"]["logger"] = logger
    config.to_disk(path, interpolate=False)


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


def _select_shipped(source: Path, run: Path) -> None:
    """Make ``model-best`` the candidate with the best dev score (the run's
    ``score_weights``): the starting pipeline, spaCy's best checkpoint, or a blend
    ``(1 − α)·source + α·model-last`` for each of the settings' ``blend_alphas`` (WiSE-FT).
    Ties go to the candidate nearest the source. With ``selection_confidence`` > 0 a candidate
    must also beat the source's PU score on that share of bootstrap resamples of the dev set
    (:mod:`.selection`). The choice and every score are written to ``model-best/meta.json``."""
    from spacy.training.loop import create_evaluation_callback

    from .interpolation import interpolate_into
    from .selection import choose, pu_win_rate
    from .settings import DallmiSettings

    best = run / "model-best"
    config = load_config(best / "config.cfg", interpolate=True)
    (dev_corpus,) = resolve_dot_names(config, [config["training"]["dev_corpus"]])
    weights = config["training"]["score_weights"]
    block = (config["initialize"].get("before_init") or {}).get("settings")
    settings = registry.resolve({"s": block})["s"] if block else DallmiSettings()
    source_nlp = spacy.load(source)
    confidence = settings.selection_confidence
    if confidence:
        # an unlabeled entry (0 or absent) is "not a known positive", as the PU score reads it
        references = [eg.reference for eg in dev_corpus(source_nlp)]
        labels = sorted({label for doc in references for label in doc.cats})
        known = numpy.array([[doc.cats.get(lb, 0.0) >= 0.5 for lb in labels] for doc in references])

        def probabilities(nlp: spacy.Language) -> numpy.ndarray:
            docs = nlp.pipe(doc.text for doc in references)
            return numpy.array([[doc.cats.get(label, 0.0) for label in labels] for doc in docs])

        source_probs = probabilities(source_nlp)
    wins: Dict[str, float] = {}

    def evaluate(name: str, nlp: spacy.Language) -> Tuple[float, Dict[str, Any]]:
        if confidence and name != "source":
            wins[name] = pu_win_rate(known, probabilities(nlp), source_probs)
        return create_evaluation_callback(nlp, dev_corpus, weights)()

    results = {"source": evaluate("source", source_nlp)}
    alphas = {f"blend {alpha}": alpha for alpha in sorted(settings.blend_alphas)}
    if alphas:
        adapted, blend = spacy.load(run / "model-last"), spacy.load(run / "model-last")
    for name, alpha in alphas.items():
        interpolate_into(blend, source_nlp, adapted, alpha)
        results[name] = evaluate(name, blend)
    results["checkpoint"] = evaluate("checkpoint", spacy.load(best))
    scores = {name: score for name, (score, _) in results.items()}
    guard = settings.selection_guard
    # an undefined score (None: no known positive in the dev slice) counts as the lowest
    values = {name: other.get(guard) for name, (_, other) in results.items()} if guard else {}
    guards = {n: float("-inf") if v is None else float(v) for n, v in values.items()} or None
    selected = choose(scores, wins, confidence, guard=guards)  # the first of equal scores
    if selected == "source":
        shutil.rmtree(best)
        shutil.copytree(source, best)
    elif selected != "checkpoint":
        interpolate_into(blend, source_nlp, adapted, alphas[selected])
        shutil.rmtree(best)
        blend.to_disk(best)
    if selected != "checkpoint":
        what = "the starting pipeline" if selected == "source" else f"the {selected}"
        msg.info(
            f"model-best is {what}: dev score {scores[selected]:.4f} (the best checkpoint: "
            f"{scores['checkpoint']:.4f})"
        )
    if (confidence or guard) and selected != max(scores, key=lambda name: scores[name]):
        rules = []
        if confidence:
            rules.append(f"beat the starting pipeline on {confidence:.0%} of the dev resamples")
        if guard:
            rules.append(f"score at least the starting pipeline's {guard}")
        msg.info(
            f"The best dev score did not {' and '.join(rules)}: shipped the best of those that "
            f"did ({selected})."
        )
    meta_path = best / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf8"))
    meta["selection"] = {"selected": selected, "dev_scores": scores, "confidence": confidence}
    if confidence:
        meta["selection"]["pu_win_rates"] = wins
    if guard:
        meta["selection"].update(guard=guard, guard_scores=values)
    # the dev scores of what was shipped (the source's own meta has source-domain scores)
    other = results[selected][1]
    meta["performance"] = {metric: other.get(metric, 0.0) for metric in weights}
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf8")

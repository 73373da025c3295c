"""Score a saved pipeline on the fully labelled target test split: one metrics file per run.

:func:`evaluate_pipeline` produces the numbers of the results table (the paper's Table 2): it
loads a saved pipeline, predicts the test docs from their texts alone and scores them with
``nlp.evaluate`` and the component's own scorer. Its result is a plain JSON-able dict that
:mod:`.report` aggregates over methods, ratios and seeds.
"""

import copy
import functools
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy
import spacy
import srsly
from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc, DocBin
from spacy.training import Example

from ..callbacks import check_gold, find_textcat
from ..training import TRAINING_FILE
from .methods import ALL_METHODS
from .readers import PathLike, require_file

#: Equal-width probability bins of the expected calibration error.
ECE_BINS = 15


def expected_calibration_error(
    probabilities: numpy.ndarray, gold: numpy.ndarray, n_bins: int = ECE_BINS
) -> Optional[float]:
    """ECE over every (doc, label) probability: ``sum_b |B|/N * |mean(p in B) - mean(y in B)|``
    with ``n_bins`` equal-width bins on [0, 1] (the last bin includes 1.0).

    A user acts on ``doc.cats`` at a threshold, so a model whose 0.8 means 0.3 misleads them
    even at a high AP. The benchmarks (``benchmarks/runner.py``) score with it too, so the
    study's ``cats_ece`` and theirs are one number. None for no pairs at all; a different count
    of probabilities and gold values is an error rather than a silent misalignment.
    """
    probs = numpy.asarray(probabilities, dtype="float64").ravel()
    truth = numpy.asarray(gold, dtype="float64").ravel()
    if probs.shape != truth.shape:
        raise ValueError(f"probabilities and gold must match: {probs.shape}, {truth.shape}")
    if probs.size == 0:
        return None
    bins = numpy.minimum((probs * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in numpy.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(probs[inside].mean() - truth[inside].mean())
    return float(total / probs.size)


def score_with_calibration(
    nlp: Language, gold_docs: Sequence[Doc], labels: Sequence[str], batch_size: int = 64
) -> Dict[str, Any]:
    """The component scorer's ``cats_*`` scores plus ``cats_ece``, from one prediction pass.

    Predictions are made on fresh docs from the texts alone, so they never see gold cats.
    ``nlp.evaluate`` would predict on copies it does not return, so the docs are predicted
    here and scored with the pipeline's scorer, as ``nlp.evaluate`` does.
    """
    predicted = nlp.pipe((doc.text for doc in gold_docs), batch_size=batch_size)
    examples = [Example(doc, gold) for doc, gold in zip(predicted, gold_docs)]
    scores = Scorer(nlp).score(examples)
    metrics = {key: value for key, value in scores.items() if key.startswith("cats_")}
    probabilities = [[eg.predicted.cats[label] for label in labels] for eg in examples]
    gold = [[eg.reference.cats[label] for label in labels] for eg in examples]
    metrics["cats_ece"] = expected_calibration_error(
        numpy.asarray(probabilities), numpy.asarray(gold)
    )
    return metrics


def _produced_by(command: str) -> str:
    return f"It is written by {command}."


def _check_settings(method: str, settings: Dict[str, Any]) -> None:
    if method not in ALL_METHODS:
        raise ValueError(f"Unknown method {method!r}: use one of {ALL_METHODS}.")
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}.")
    try:
        srsly.json_dumps(settings)
    except (TypeError, OverflowError) as error:
        raise ValueError(
            f"settings must be JSON-serialisable (no paths, sets, NaN): {error}"
        ) from error


def evaluate_pipeline(
    model_path: PathLike,
    test_path: PathLike,
    *,
    method: str,
    settings: Dict[str, Any],
    epoch_log: Optional[PathLike] = None,
    batch_size: int = 64,
) -> Dict[str, Any]:
    """Score a saved pipeline on a fully labelled test DocBin and return a JSON-able result.

    model_path: a pipeline folder saved by ``spacy train`` (``model-last`` or ``model-best``).
    test_path: a DocBin whose docs carry complete ``doc.cats`` (e.g. ``target_test.spacy``).
    method: which row of the results table this is: one of :data:`ALL_METHODS`.
    settings: the run's settings (dataset, ratio, removal, seed, backbone, ...), copied as they
        are; the report groups runs by ``settings["ratio"]`` and ``settings["seed"]``.
    epoch_log: the JSONL written during training by ``spacy_dallmi.epoch_eval.v1``, if any.
    batch_size: docs per ``nlp.pipe`` batch.

    Returns ``{"method", "settings", "model_path", "test_path", "labels", "threshold",
    "n_docs", "metrics", "epochs", "wall_seconds"}`` where ``metrics`` holds the component
    scorer's ``cats_*`` scores (``cats_macro_ap``, ``cats_micro_ap``, ``cats_macro_auc``,
    ``cats_macro_f``, ``cats_macro_ap_rounded``, ``cats_ap_per_type``,
    ``cats_ap_skipped_labels``, ...) and ``cats_ece`` (:func:`expected_calibration_error`),
    ``epochs`` the per-epoch records (empty without `epoch_log`) and ``wall_seconds`` the time
    this evaluation took (load, predict, score).

    Raises FileNotFoundError for a missing input (naming it and the command that writes it) and
    ValueError for an unknown method, settings that are not JSON-able, or a test split that is
    not fully labelled over the classifier's labels.
    """
    start = time.perf_counter()
    _check_settings(method, settings)
    model_path = Path(model_path)
    test_path = Path(test_path)
    if not model_path.exists():
        raise FileNotFoundError(
            f"Pipeline not found: {model_path}. "
            + _produced_by(
                "`python -m spacy_dallmi train CONFIG DIR` (as DIR/model-best and "
                "DIR/model-last), i.e. the project's train-* and finetune-* commands; an "
                "interrupted training leaves only DIR.partial, which is never evaluated"
            )
        )
    if not (model_path / "config.cfg").is_file():
        raise FileNotFoundError(
            f"{model_path} is not a saved spaCy pipeline (it has no config.cfg): pass the "
            "model-best (or model-last) folder inside the training output folder."
        )
    require_file(
        test_path,
        _produced_by("`python -m spacy_dallmi prepare` or `prepare-files` (target_test.spacy)"),
        what="Test DocBin",
    )
    epochs: List[Dict[str, Any]] = []
    if epoch_log is not None:
        epoch_log = Path(epoch_log)
        require_file(
            epoch_log,
            _produced_by(
                "`spacy train` with [training.before_update] spacy_dallmi.epoch_eval.v1 (its "
                "`output`), i.e. the project's adapt/finetune commands with paths.curve_output"
            ),
            what="Epoch log",
        )
        epochs = list(srsly.read_jsonl(epoch_log))

    nlp = spacy.load(model_path)
    textcat = find_textcat(nlp)
    labels = list(textcat.labels)
    gold_docs = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    check_gold(gold_docs, labels, test_path)
    return {
        "method": method,
        "settings": copy.deepcopy(settings),
        "model_path": str(model_path),
        "test_path": str(test_path),
        "labels": labels,
        "threshold": textcat.cfg["threshold"],
        "n_docs": len(gold_docs),
        "metrics": score_with_calibration(nlp, gold_docs, labels, batch_size=batch_size),
        "epochs": epochs,
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


def write_metrics(result: Dict[str, Any], output_path: PathLike) -> None:
    """Write an :func:`evaluate_pipeline` result as indented JSON, creating parent folders.

    Indented so that a results folder can be read and diffed by hand.
    """
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_path, result, indent=2)


def evaluate_run(
    run_path: PathLike,
    test_path: PathLike,
    *,
    method: str,
    settings: Dict[str, Any],
    epoch_log: Optional[PathLike] = None,
    batch_size: int = 64,
) -> Dict[str, Any]:
    """Score a training output folder's selected model (``model-best``) and its last epoch
    (``model-last``) side by side; a plain pipeline folder (e.g. the unadapted source model)
    is scored once and stands for both.

    Returns the :func:`evaluate_pipeline` result of the selected model, with
    ``metrics_last`` (the last epoch's metrics), ``selection`` (what
    ``python -m spacy_dallmi train`` recorded about its choice, if anything) and ``training``
    (the run's dev curve and why it stopped, if it was trained by it) added.
    """
    run_path = Path(run_path)
    best, last = run_path / "model-best", run_path / "model-last"
    # A model-best folder (the source model) has its run's record beside it.
    folder = run_path.parent if run_path.name == "model-best" else run_path
    training = (
        srsly.read_json(folder / TRAINING_FILE) if (folder / TRAINING_FILE).is_file() else None
    )
    score = functools.partial(
        evaluate_pipeline, test_path=test_path, method=method, settings=settings,
        batch_size=batch_size,
    )  # fmt: skip
    if not best.is_dir():
        result = score(run_path, epoch_log=epoch_log)
        result["metrics_last"] = result["metrics"]
        result["selection"] = None
        result["training"] = training
        return result
    result = score(best, epoch_log=epoch_log)
    last_result = score(last)
    result["metrics_last"] = last_result["metrics"]
    result["wall_seconds"] = round(result["wall_seconds"] + last_result["wall_seconds"], 3)
    meta = srsly.read_json(best / "meta.json") if (best / "meta.json").is_file() else {}
    result["selection"] = meta.get("selection")
    result["training"] = training
    return result


def skipped_result(method: str, settings: Dict[str, Any], reason: str) -> Dict[str, Any]:
    """A metrics file that says why a run has no test metrics (e.g. no labelled target test
    set), so the report can say so instead of silently leaving the row out."""
    _check_settings(method, settings)
    return {"method": method, "settings": copy.deepcopy(settings), "skipped": reason}

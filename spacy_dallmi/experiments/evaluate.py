"""Score a saved pipeline on the fully labelled target test split: one metrics file per run,
the numbers of the results table (the paper's Table 2), which :mod:`.report` aggregates.
"""

import copy
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


def expected_calibration_error(
    probabilities: numpy.ndarray, gold: numpy.ndarray, n_bins: int = 15
) -> Optional[float]:
    """ECE over every (doc, label) probability: ``sum_b |B|/N * |mean(p in B) - mean(y in B)|``
    with ``n_bins`` equal-width bins on [0, 1] (the last includes 1.0); None without pairs.
    A user acts on ``doc.cats`` at a threshold, so a model whose 0.8 means 0.3 misleads even
    at a high AP. The benchmarks use it too, so their ``cats_ece`` is the study's."""
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
    """The scorer's ``cats_*`` plus ``cats_ece``, from one prediction pass on fresh docs of the
    texts (``nlp.evaluate`` would not return its predictions)."""
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
    """Score a saved pipeline (``model-best`` or ``model-last``) on a fully labelled test DocBin.

    ``method``: the row of the results table; ``settings``: the run's (dataset, ratio, seed,
    ...), by which the report groups runs; ``epoch_log``: ``spacy_dallmi.epoch_eval.v1``'s
    JSONL. A missing input is a FileNotFoundError naming the command that writes it; an
    unknown method, settings that are not JSON-able or a partially labelled test split, a
    ValueError.
    """
    start = time.perf_counter()
    _check_settings(method, settings)
    model_path, test_path = Path(model_path), Path(test_path)
    if not model_path.exists():
        raise FileNotFoundError(
            f"Pipeline not found: {model_path}. It is written by `python -m spacy_dallmi train "
            "CONFIG DIR` (as DIR/model-best and DIR/model-last), i.e. the project's train-* and "
            "finetune-* commands; an interrupted training leaves only DIR.partial, which is "
            "never evaluated."
        )
    if not (model_path / "config.cfg").is_file():
        raise FileNotFoundError(
            f"{model_path} is not a saved spaCy pipeline (it has no config.cfg): pass the "
            "model-best (or model-last) folder inside the training output folder."
        )
    hint = "It is written by `python -m spacy_dallmi prepare` or `prepare-files` "
    hint += "(target_test.spacy)."
    require_file(test_path, hint, what="Test DocBin")
    epochs: List[Dict[str, Any]] = []
    if epoch_log is not None:
        hint = (
            "It is written by `spacy train` with [training.before_update] "
            "spacy_dallmi.epoch_eval.v1 (its `output`), i.e. the project's adapt/finetune "
            "commands with paths.curve_output."
        )
        require_file(Path(epoch_log), hint, what="Epoch log")
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
    """Write a result as indented JSON (a results folder is read and diffed by hand)."""
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_path, result, indent=2)


def evaluate_run(run_path: PathLike, test_path: PathLike, **options: Any) -> Dict[str, Any]:
    """Score a training output folder's selected model (``model-best``) and its last epoch
    (``model-last``); a plain pipeline folder (the unadapted source model) stands for both.
    Returns :func:`evaluate_pipeline`'s result for the selected model, with ``metrics_last``,
    ``selection`` and ``training`` (what ``train`` recorded) added.
    """
    run_path = Path(run_path)
    best, last = run_path / "model-best", run_path / "model-last"
    # A model-best folder (the source model) has its run's record beside it.
    folder = run_path.parent if run_path.name == "model-best" else run_path
    record = folder / TRAINING_FILE
    training = srsly.read_json(record) if record.is_file() else None
    if not best.is_dir():
        result = evaluate_pipeline(run_path, test_path, **options)
        result.update(metrics_last=result["metrics"], selection=None, training=training)
        return result
    result = evaluate_pipeline(best, test_path, **options)
    options.pop("epoch_log", None)
    last_result = evaluate_pipeline(last, test_path, **options)
    result["metrics_last"] = last_result["metrics"]
    result["wall_seconds"] = round(result["wall_seconds"] + last_result["wall_seconds"], 3)
    meta = srsly.read_json(best / "meta.json") if (best / "meta.json").is_file() else {}
    result.update(selection=meta.get("selection"), training=training)
    return result


def skipped_result(method: str, settings: Dict[str, Any], reason: str) -> Dict[str, Any]:
    """A metrics file that says why a run has no test metrics, for the report to list."""
    _check_settings(method, settings)
    return {"method": method, "settings": copy.deepcopy(settings), "skipped": reason}

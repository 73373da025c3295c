"""Per-label decision thresholds (best F1), fitted on the partially labelled validation slice:
labels differ in frequency and calibration, so one cut-off is rarely right for all. Unlabeled
docs count as negatives, so thresholds lean high: the price of never reading the test split.
"""

from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc

#: Used for a label without any known positive in the validation docs.
DEFAULT_THRESHOLD = 0.5


def best_f1_threshold(gold: numpy.ndarray, scores: numpy.ndarray) -> Tuple[float, float]:
    """``(threshold, f1)`` maximising F1 of ``scores >= threshold`` against 0/1 ``gold``: halfway
    between the chosen score and the next lower one, ties going to the higher threshold."""
    gold = numpy.asarray(gold, dtype=bool)
    scores = numpy.asarray(scores, dtype="float64")
    if gold.shape != scores.shape or gold.ndim != 1:
        raise ValueError(f"gold and scores must be 1D of one shape: {gold.shape}, {scores.shape}")
    n_pos = int(gold.sum())
    if n_pos == 0:
        raise ValueError("No positive in gold: F1 is undefined for every threshold.")
    order = numpy.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    true_pos = numpy.cumsum(gold[order])
    predicted = numpy.arange(1, len(scores) + 1)
    # only the last index of a run of equal scores is a valid cut
    last = numpy.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    f1 = numpy.where(last, 2 * true_pos / (predicted + n_pos), -1.0)
    best = int(numpy.flatnonzero(f1 == f1.max())[0])
    below = sorted_scores[best + 1] if best + 1 < len(scores) else 0.0
    return float((sorted_scores[best] + below) / 2), float(f1[best])


def fit_threshold_columns(
    gold: numpy.ndarray, scores: numpy.ndarray, labels: Sequence[str]
) -> Dict[str, Dict[str, float]]:
    """Per label (column): ``{"threshold", "f1", "positives"}`` from docs × labels ``scores``
    and ``gold`` (1 = positive, else negative); no positive: :data:`DEFAULT_THRESHOLD`."""
    gold = numpy.asarray(gold) == 1
    scores = numpy.asarray(scores, dtype="float64")
    if gold.shape != scores.shape or gold.shape[1:] != (len(labels),):
        raise ValueError(f"gold {gold.shape}, scores {scores.shape}, {len(labels)} labels differ")
    result = {}
    for column, label in enumerate(labels):
        if not gold[:, column].any():
            result[label] = {"threshold": DEFAULT_THRESHOLD, "f1": None, "positives": 0}
            continue
        threshold, f1 = best_f1_threshold(gold[:, column], scores[:, column])
        positives = int(gold[:, column].sum())
        result[label] = {"threshold": threshold, "f1": f1, "positives": positives}
    return result


def _gold_value(doc: Doc, index: int, label: str) -> float:
    value = doc.cats.get(label)
    if value is None or value in (0.0, 1.0):
        return float(value == 1.0)
    raise ValueError(
        f"Gold doc {index} ({doc.text[:40]!r}) has the value {value!r} for label {label!r}: "
        "a label value is 1.0 (known positive) or 0.0 (unlabeled or negative). Prepare the "
        "docs again with `python -m spacy_dallmi prepare`."
    )


def fit_thresholds(
    docs: Sequence[Doc], gold_docs: Sequence[Doc], labels: Iterable[str]
) -> Dict[str, Dict[str, float]]:
    """Per label: ``{"threshold", "f1", "positives"}`` from predicted ``docs`` and ``gold_docs``
    (1.0 = known positive; 0.0, None or absent = negative; anything else is an error)."""
    labels = list(labels)
    gold = [[_gold_value(doc, i, label) for label in labels] for i, doc in enumerate(gold_docs)]
    scores = [[doc.cats[label] for label in labels] for doc in docs]
    shape = (len(gold_docs), len(labels))
    return fit_threshold_columns(
        numpy.asarray(gold).reshape(shape), numpy.asarray(scores).reshape(shape), labels
    )


def tune_pipeline_thresholds(
    nlp: Language, gold_docs: List[Doc], batch_size: int = 64
) -> Dict[str, Dict[str, float]]:
    """Run ``nlp`` on the texts of ``gold_docs`` and fit one threshold per label."""
    labels = sorted({label for pipe in nlp.pipeline for label in getattr(pipe[1], "labels", ())})
    docs = list(nlp.pipe((doc.text for doc in gold_docs), batch_size=batch_size))
    return fit_thresholds(docs, gold_docs, labels)


def write_thresholds(fitted: Dict[str, Dict[str, float]], path: Union[str, Path]) -> Path:
    """Write ``{label: threshold}`` to ``path`` and the per-label F1 and positive counts
    beside it, as ``<stem>.details.json``; return that path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(path, {label: values["threshold"] for label, values in fitted.items()})
    details = path.with_name(f"{path.stem}.details.json")
    srsly.write_json(details, fitted)
    return details

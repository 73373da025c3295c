"""Mean average precision scorer for multi-label text classification.

spaCy's built-in ``textcat_multilabel`` scorer reports thresholded P/R/F and ROC AUC. The DALLMi
paper reports mean average precision (mAP), which is threshold-free and, unlike ROC AUC, sensitive
to how well the rare positives are ranked. This module adds mAP (macro, micro and per label) on
top of everything :meth:`spacy.scorer.Scorer.score_cats` already returns, so that a training
config can switch to this scorer without losing any of the usual columns.

Average precision is implemented in NumPy so that scikit-learn stays a test-only dependency.
"""

import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
import numpy.typing as npt
from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry

# A gold category value at or above this counts as a positive. spaCy's multi-label component only
# accepts 0.0 and 1.0, so the cut-off merely keeps soft labels from being misread.
GOLD_POSITIVE_CUTOFF = 0.5


def average_precision(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Return the (uninterpolated) average precision of `y_score` ranking the positives of `y_true`.

    AP = sum_n (R_n - R_{n-1}) * P_n, where n runs over the distinct score values taken as
    thresholds in decreasing order and R_0 = 0. Tied scores therefore enter the ranking together,
    which is what makes the result identical to ``sklearn.metrics.average_precision_score``
    for binary labels (no interpolation, no arbitrary tie breaking).

    y_true: binary gold labels (0/1 or booleans), one per item.
    y_score: real-valued scores, higher meaning "more likely positive", one per item.

    Raises ValueError when the inputs are malformed or when `y_true` holds no positive: AP is
    undefined without positives (recall has no denominator), and the callers in this module only
    ever score labels that have one, so hitting that case means a bug rather than a data quirk.
    """
    truth = numpy.asarray(y_true)
    scores = numpy.asarray(y_score, dtype=numpy.float64)
    if truth.ndim != 1 or scores.ndim != 1 or truth.shape != scores.shape:
        raise ValueError(
            f"y_true and y_score must be 1-D and of equal length, got shapes {truth.shape} "
            f"and {scores.shape}"
        )
    if not numpy.isin(truth, (0, 1)).all():
        raise ValueError("y_true must hold binary labels (0/1 or booleans)")
    if not numpy.isfinite(scores).all():
        raise ValueError("y_score must hold finite numbers (NaN/inf make the ranking arbitrary)")
    positives = truth.astype(numpy.float64)
    if positives.sum() == 0:
        raise ValueError("average precision is undefined when y_true holds no positive")

    order = numpy.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_truth = positives[order]
    # Index of the last item of each run of equal scores: each run is one threshold.
    run_ends = numpy.r_[numpy.flatnonzero(numpy.diff(sorted_scores)), sorted_scores.size - 1]
    true_pos = numpy.cumsum(sorted_truth)[run_ends]
    predicted_pos = run_ends + 1.0
    precision = true_pos / predicted_pos
    recall = true_pos / true_pos[-1]
    recall_gain = numpy.diff(recall, prepend=0.0)
    return float(max(0.0, numpy.sum(recall_gain * precision)))


def _resolve_labels(examples: Sequence[Example], attr: str, labels: Iterable[str]) -> List[str]:
    """Return the labels to score: `labels` (deduplicated, order kept) or else all gold keys.

    Falling back to the gold keys mirrors what a user expects when calling the scorer by hand
    without the component's label set; spaCy's own scorer would silently score nothing.
    """
    requested = list(dict.fromkeys(labels))
    if requested:
        return requested
    gold_keys: Set[str] = set()
    for example in examples:
        gold_keys.update(getattr(example.reference, attr).keys())
    return sorted(gold_keys)


def _collect_label_columns(
    examples: Sequence[Example], attr: str, labels: Sequence[str]
) -> Dict[str, Tuple[numpy.ndarray, numpy.ndarray]]:
    """Gather, per label, the gold positives and predicted scores of the examples annotating it.

    An example whose reference lacks the label (or holds None for it) is left out for that label:
    this is spaCy's convention for missing annotation, and counting it as a negative would
    penalise correct predictions on unannotated data. A missing prediction counts as 0.0, again
    as in spaCy.
    """
    columns: Dict[str, Tuple[numpy.ndarray, numpy.ndarray]] = {}
    for label in labels:
        gold: List[bool] = []
        pred: List[float] = []
        for example in examples:
            gold_value = getattr(example.reference, attr).get(label)
            if gold_value is None:
                continue
            gold.append(gold_value >= GOLD_POSITIVE_CUTOFF)
            pred.append(float(getattr(example.predicted, attr).get(label, 0.0)))
        columns[label] = (numpy.asarray(gold, dtype=bool), numpy.asarray(pred, dtype=numpy.float64))
    return columns


def _macro(values: Iterable[float]) -> Optional[float]:
    """Mean of `values`, or None when there are none (spaCy's marker for an undefined score)."""
    collected = list(values)
    return float(numpy.mean(collected)) if collected else None


def score_cats_map(
    examples: Iterable[Example],
    attr: str = "cats",
    *,
    labels: Iterable[str] = (),
    threshold: float = 0.5,
    **kwargs: Any,
) -> Dict[str, Any]:
    """Score a multi-label classifier with spaCy's P/R/F/AUC columns plus mean average precision.

    Returns every key of ``Scorer.score_cats(examples, attr, labels=labels, multi_label=True,
    threshold=threshold)`` (``{attr}_score`` stays spaCy's macro AUC) and adds:

    - ``{attr}_macro_ap``: mean over labels with at least one gold positive of the AP of the
      predicted probabilities; None when no label has a positive.
    - ``{attr}_micro_ap``: AP over all annotated (example, label) pairs pooled; None without any
      positive.
    - ``{attr}_ap_per_type``: label -> AP, for labels with at least one gold positive.
    - ``{attr}_macro_ap_rounded``: a comparability column, NOT a proper AP. It reproduces the
      DALLMi paper's protocol of feeding predictions rounded at `threshold` (1.0 if
      score >= threshold else 0.0) to the AP formula, which collapses the ranking to two levels.
      Averaged over the same labels as ``{attr}_macro_ap``.
    - ``{attr}_pu_score``: a score that needs no true negatives, for model selection on
      partially labelled data: the mean over labels with a known positive of
      ``mean_P p - mean_U p`` (P: docs whose reference value is >= 0.5; U: the other
      annotated docs, unlabeled or negative). It is the negated norm-form variational loss
      (VPU's selection criterion) computed over the whole evaluation set. On partially
      labelled data ``{attr}_macro_ap`` is, likewise, AP against the known positives.
    - ``{attr}_ap_skipped_labels``: sorted labels left out of the AP averages because they have no
      gold positive (AP is undefined for them, and scoring them as 0 would punish the model for
      the test set's composition).

    A gold value counts as positive when >= 0.5; a label absent from an example's reference is
    treated as missing annotation and that example is left out for that label. `labels` defaults
    to the union of gold label keys. Extra keyword arguments (e.g. ``positive_label`` or
    ``multi_label`` that spaCy's pipes and ``Language.evaluate`` pass to every scorer) are
    accepted and ignored, because this scorer is multi-label by definition.
    """
    example_list = list(examples)
    label_list = _resolve_labels(example_list, attr, labels)
    results = Scorer.score_cats(
        example_list, attr, labels=label_list, multi_label=True, threshold=threshold
    )
    columns = _collect_label_columns(example_list, attr, label_list)
    scored = {label: column for label, column in columns.items() if column[0].any()}

    ap_per_type = {label: average_precision(gold, pred) for label, (gold, pred) in scored.items()}
    rounded_per_type = {
        label: average_precision(gold, (pred >= threshold).astype(numpy.float64))
        for label, (gold, pred) in scored.items()
    }
    micro_ap: Optional[float] = None
    if scored:
        pooled_gold = numpy.concatenate([gold for gold, _ in columns.values()])
        pooled_pred = numpy.concatenate([pred for _, pred in columns.values()])
        micro_ap = average_precision(pooled_gold, pooled_pred)

    results[f"{attr}_macro_ap"] = _macro(ap_per_type.values())
    results[f"{attr}_micro_ap"] = micro_ap
    results[f"{attr}_ap_per_type"] = ap_per_type
    results[f"{attr}_macro_ap_rounded"] = _macro(rounded_per_type.values())
    results[f"{attr}_ap_skipped_labels"] = sorted(set(label_list) - set(scored))
    results[f"{attr}_pu_score"] = _macro(
        pred[gold].mean() - (pred[~gold].mean() if (~gold).any() else 0.0)
        for gold, pred in scored.values()
    )
    unscored = sorted(set(label_list) - set(scored))
    if unscored:
        warnings.warn(
            f"No known positive for label(s) {unscored} in the {len(example_list)} scored "
            "examples: the AP and PU-score averages leave them out.",
            stacklevel=2,
        )
    return results


@registry.scorers("spacy_dallmi.textcat_map_scorer.v1")
def make_textcat_map_scorer() -> Callable[..., Dict[str, Any]]:
    """Return :func:`score_cats_map`, for use as ``[components.<name>.scorer]`` in a config.

    spaCy resolves scorers through the registry, so a factory is what lets a config opt in with
    ``@scorers = "spacy_dallmi.textcat_map_scorer.v1"``.
    """
    return score_cats_map

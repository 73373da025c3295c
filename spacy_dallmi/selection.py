"""Ship an adapted model only when the validation slice shows that it beats the source.

A sourced run ships the candidate with the best dev score among the starting pipeline, the
best checkpoint and the WiSE-FT blends. The dev set is a small, partially labelled slice of
the target (82 documents on pubmed), so with several candidates the best of them beats the
source by chance alone: from converged sources the benchmark's label-free selection shipped
DALLMi models 4 points of test macro AP below the source at 90% hidden. A plain maximum
cannot tell a real gain from noise.

``selection_confidence`` makes the choice conservative, in the manner of safe policy
improvement: a candidate may replace the source only if its PU score is higher than the
source's on at least that share of bootstrap resamples of the dev documents. The resamples are
paired (both models are scored on the same resample), so the test is about the difference.
The PU score (``score_cats_map``'s ``cats_pu_score``: per label, the mean probability of the
known positives minus that of the other documents, averaged over labels) is a mean per
document, so a resample is a vector of document counts and every resample is scored at once.
"""

from typing import Mapping, Optional

import numpy
import numpy.typing as npt

#: Bootstrap resamples of the dev documents; 2,000 put the win rate within about ±0.01.
RESAMPLES = 2000


def resampled_pu_scores(
    known: npt.ArrayLike, probs: npt.ArrayLike, counts: npt.ArrayLike
) -> numpy.ndarray:
    """The PU score of ``probs`` on each resample: ``counts[b, i]`` copies of document ``i``.

    ``known``: (documents, labels), true where a label is a known positive. A label without a
    known positive in a resample is left out of that resample's average, as the scorer leaves
    it out; without any other document its second mean is 0, as in the scorer. A resample
    with no scored label gives NaN.
    """
    positive = numpy.asarray(known, dtype=numpy.float64)
    scores = numpy.asarray(probs, dtype=numpy.float64)
    weights = numpy.asarray(counts, dtype=numpy.float64)
    n_pos = weights @ positive
    n_other = weights @ (1.0 - positive)
    with numpy.errstate(invalid="ignore", divide="ignore"):
        mean_pos = (weights @ (scores * positive)) / n_pos
        other = (weights @ (scores * (1.0 - positive))) / n_other
    per_label = mean_pos - numpy.where(n_other > 0, other, 0.0)
    per_label[n_pos == 0] = numpy.nan
    scored = (~numpy.isnan(per_label)).sum(axis=1)
    total = numpy.nansum(per_label, axis=1)
    return numpy.where(scored > 0, total / numpy.maximum(scored, 1), numpy.nan)


def pu_win_rate(
    known: npt.ArrayLike,
    candidate: npt.ArrayLike,
    source: npt.ArrayLike,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> float:
    """The share of paired bootstrap resamples of the documents on which ``candidate``'s PU
    score is above ``source``'s (both (documents, labels) probabilities)."""
    n_docs = numpy.asarray(known).shape[0]
    if n_docs == 0:
        return 0.0
    rng = numpy.random.default_rng(seed)
    counts = rng.multinomial(n_docs, numpy.full(n_docs, 1.0 / n_docs), size=resamples)
    difference = numpy.asarray(candidate, dtype=numpy.float64) - numpy.asarray(source)
    # The PU score is linear in the probabilities, so score(c) - score(s) = score(c - s).
    gains = resampled_pu_scores(known, difference, counts)
    return float(numpy.mean(gains > 0))


def check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not 0.0 <= confidence < 1.0:
        raise ValueError(
            "selection_confidence must be in [0, 1): the share of bootstrap resamples of the "
            "dev set on which a model must beat the source to replace it (0 = the best dev "
            f"score wins), got {confidence!r}."
        )


def choose(
    scores: Mapping[str, float],
    wins: Optional[Mapping[str, float]] = None,
    confidence: float = 0.0,
    source: str = "source",
    guard: Optional[Mapping[str, float]] = None,
) -> str:
    """The best-scoring candidate among the source and those that beat it on at least
    ``confidence`` of the resamples (``wins``) and, with ``guard`` (a second score per
    candidate), score at least the source on it; the first of equal scores wins, so list the
    candidates nearest the source first."""
    allowed = [
        name
        for name in scores
        if name == source
        or (
            (confidence == 0.0 or (wins or {}).get(name, 0.0) >= confidence)
            and (guard is None or guard[name] >= guard[source])
        )
    ]
    return max(allowed, key=lambda name: scores[name])

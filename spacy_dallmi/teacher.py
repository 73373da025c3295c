"""Targets for unlabeled entries from the source model: what ``teacher_target`` computes.

An unlabeled (doc, label) entry of the target data is a hidden positive or a negative. The
source model's probability ``p`` says which, but only as well as the source is calibrated on
the *target* domain, and that is what a domain shift breaks: on the shared emotions data the
source gives the target's positives a mean probability of 0.04 to 0.25. Three targets:

- ``source``: ``p`` itself (distillation).
- ``posterior``: ``(1 − c)·p / (1 − c·p)``, the probability that an unlabeled entry is
  positive when a share ``c`` of the label's positives is known (Elkan & Noto 2008), with
  ``c`` = known positives / ``Σ p``. Right when ``p`` is calibrated on the target; when the
  source is underconfident there, ``Σ p`` falls below the known count, ``c`` hits its cap and
  every target is about 0 (on emotions, 6 of 8 labels).
- ``mixture``: the same posterior, estimated from the *ranking* of the source's scores
  alone, so a label-wise miscalibration does not matter. Under SCAR (known positives are a
  random sample of the positives) the scores of the unlabeled entries are a mixture
  ``f_U = π·f_P + (1 − π)·f_N`` whose positive part ``f_P`` is the known positives' score
  distribution. Then:

  1. ``π``, the share of positives among the unlabeled, is at most
     ``P_U(z ≥ t) / P_P(z ≥ t)`` for every threshold ``t`` and equals it where no negative
     scores above ``t``. The smallest ratio over the thresholds that keep a quarter of the
     known positives (at least 5) above them estimates it (the "best bin" estimator of
     mixture proportions, Scott 2015). Fewer known positives above make the minimum a noisy
     under-estimate (on simulated scores, 0.15 for a true 0.23 at 5 of them, 0.21 at a
     quarter); a weak ranking makes it an over-estimate.
  2. ``f_P(z) / f_U(z)`` comes from a one-feature logistic regression of known against
     unlabeled on the score ``z`` (the odds times ``|U| / |K|``).
  3. The posterior of an unlabeled entry is ``π · f_P(z) / f_U(z)``, capped at 1; its sum
     over the unlabeled entries is ``π·|U|``, the estimated number of hidden positives.

  A label without known positives keeps ``p``.
"""

import math

import numpy

#: Share and least number of the known positives a threshold must keep above it for its
#: ratio to count in the estimate of π.
MIN_KNOWN_SHARE = 0.25
MIN_KNOWN = 5
#: ``posterior``'s cap on c, so that ``1 − c·p`` stays away from 0.
MAX_C = 0.99


def posterior(probabilities: numpy.ndarray, known: numpy.ndarray) -> numpy.ndarray:
    """Elkan & Noto's posterior ``(1 − c)·p / (1 − c·p)`` per entry, ``c`` per label (column)
    as the known positives over ``Σ p``, capped at :data:`MAX_C`."""
    p = probabilities.astype("float64")
    c = numpy.clip(known.sum(axis=0) / numpy.maximum(p.sum(axis=0), 1e-6), 0.0, MAX_C)
    return (1 - c) * p / (1 - c * p)


def calibration(probabilities: numpy.ndarray, known: numpy.ndarray) -> float:
    """How many positives the source expects, ``Σ p``, over how many the known positives
    and the ranking of its scores imply, ``K + π·|U|`` (π from :func:`mixture_share`),
    pooled over the labels (columns) that have known and unlabeled entries; nan if none has.

    ``teacher_split`` reads it before trusting the posterior: about 1 when the source is
    calibrated on the target (the paired benchmarks' pubmed sources: 0.87 to 1.08 at every
    seed and ratio), far below when it is underconfident there (emotions: 0.08 to 0.15),
    where the posterior calls every unlabeled entry negative. Pooled because π of a rare
    label is noisy (pubmed seed 0 at 70%: 138 positives implied where 30 are true, for a
    label with 10 known; ``benchmarks/calibration.py``).
    """
    known = known.astype(bool)
    shares = unlabeled_shares(probabilities, known)
    both = ~numpy.isnan(shares)
    implied = (known.sum(axis=0) + shares * (~known).sum(axis=0))[both].sum()
    return float(probabilities[:, both].sum() / implied) if implied else math.nan


def unlabeled_shares(probabilities: numpy.ndarray, known: numpy.ndarray) -> numpy.ndarray:
    """π of :func:`mixture_share` per label (column) from the ranking of ``probabilities``;
    nan for a label without both known and unlabeled entries. ``loss_form = "nnpu"`` takes
    them as its priors."""
    p = numpy.clip(probabilities.astype("float64"), 1e-6, 1 - 1e-6)
    known = known.astype(bool)
    shares = numpy.full(p.shape[1], math.nan)
    for j in range(p.shape[1]):
        if known[:, j].any() and not known[:, j].all():
            shares[j] = mixture_share(numpy.log(p[:, j] / (1 - p[:, j])), known[:, j])
    return shares


def mixture_posterior(probabilities: numpy.ndarray, known: numpy.ndarray) -> numpy.ndarray:
    """The posterior that each entry is positive, per label (column) from the ranking of
    ``probabilities`` and the ``known`` positives (bool, same shape); see the module."""
    p = numpy.clip(probabilities.astype("float64"), 1e-6, 1 - 1e-6)
    known = known.astype(bool)
    result = p.copy()
    for j in range(p.shape[1]):
        if known[:, j].any() and not known[:, j].all():
            scores = numpy.log(p[:, j] / (1 - p[:, j]))
            share = mixture_share(scores, known[:, j])
            result[:, j] = numpy.minimum(1.0, share * density_ratio(scores, known[:, j]))
    return result


def mixture_share(scores: numpy.ndarray, known: numpy.ndarray) -> float:
    """The estimated share π of positives among the unlabeled entries of one label."""
    known_scores = numpy.sort(scores[known])[::-1]
    unlabeled_scores = numpy.sort(scores[~known])
    n_known, n_unlabeled = len(known_scores), len(unlabeled_scores)
    least = min(max(MIN_KNOWN, math.ceil(MIN_KNOWN_SHARE * n_known)), n_known)
    thresholds = known_scores[least - 1 :]  # at least `least` known positives at or above
    above_known = numpy.arange(least, n_known + 1)
    above_unlabeled = n_unlabeled - numpy.searchsorted(unlabeled_scores, thresholds, "left")
    ratios = (above_unlabeled / n_unlabeled) / (above_known / n_known)
    return float(min(1.0, ratios.min()))


def density_ratio(scores: numpy.ndarray, known: numpy.ndarray, steps: int = 50) -> numpy.ndarray:
    """``f_P(z) / f_U(z)`` at each score, from a logistic regression of known (1) against
    unlabeled (0) on ``[1, z]`` fitted by Newton's method with a small ridge on the slope.
    A step that lowers the penalised likelihood is halved: known positives that outscore
    every unlabeled entry make the Hessian singular and a full step diverge."""
    z = (scores - scores.mean()) / (scores.std() or 1.0)
    x = numpy.stack([numpy.ones_like(z), z], axis=1)
    y = known.astype("float64")
    prior_odds = y.mean() / (1 - y.mean())
    w = numpy.array([math.log(prior_odds), 0.0])
    ridge = numpy.diag([0.0, 1e-3])

    def likelihood(w: numpy.ndarray) -> float:
        eta = x @ w
        return float(y @ eta - numpy.logaddexp(0, eta).sum() - 0.5 * w @ ridge @ w)

    for _ in range(steps):
        g = numpy.exp(-numpy.logaddexp(0, -(x @ w)))
        hessian = x.T @ (x * (g * (1 - g))[:, None]) + ridge
        step = numpy.linalg.lstsq(hessian, x.T @ (y - g) - ridge @ w, rcond=None)[0]
        while likelihood(w + step) < likelihood(w) and numpy.abs(step).max() > 1e-12:
            step = step / 2
        w = w + step
        if numpy.abs(step).max() < 1e-8:
            break
    return numpy.exp(numpy.minimum(x @ w, 700.0)) / prior_odds

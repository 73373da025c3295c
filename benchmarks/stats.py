"""Paired statistics for the multi-seed benchmark, and macro F1 at per-label thresholds.

Every method of a seed starts from the same source model, splits and hidden labels, so the
seed-to-seed spread cancels in per-seed differences: the comparisons are a paired-t 95% CI of
the mean difference and a Wilcoxon signed-rank p (with 5 seeds it cannot go below 0.0625, so
the CI is the criterion and p a check on it).
"""

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class PairedDifference:
    """Method − baseline over paired seeds; None where the statistic is undefined."""

    n: int
    mean_diff: float
    ci_low: Optional[float]
    ci_high: Optional[float]
    p_wilcoxon: Optional[float]


def mean_std(values: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (None for fewer than two values)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def ci_text(low: Optional[float], high: Optional[float]) -> str:
    """`` [low, high]`` in points with signs, or nothing where the interval is undefined."""
    return "" if low is None else f" [{low:+.1f}, {high:+.1f}]"


def paired_difference(
    method: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> PairedDifference:
    """Paired-t CI (``mean ± t_{(1+c)/2, n−1} · sd / √n``) and two-sided Wilcoxon p of
    ``method − baseline``, aligned by seed; both need two pairs, and p is None, not a
    misleading 1.0, when every difference is 0."""
    if len(method) != len(baseline):
        raise ValueError(f"paired values differ in length: {len(method)} and {len(baseline)}")
    if not method:
        raise ValueError("no paired values")
    diffs = np.asarray(method, dtype=float) - np.asarray(baseline, dtype=float)
    n = len(diffs)
    mean_diff = float(diffs.mean())
    ci_low = ci_high = None
    if n > 1:
        half = scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
        ci_low, ci_high = mean_diff - float(half), mean_diff + float(half)
    p_value = None
    if n > 1 and np.any(diffs != 0):
        p_value = float(scipy_stats.wilcoxon(diffs).pvalue)
    return PairedDifference(n, mean_diff, ci_low, ci_high, p_value)


def macro_f1(probabilities: np.ndarray, truth: np.ndarray, thresholds: Sequence[float]) -> float:
    """Macro F1 of ``probabilities >= thresholds`` (one per label column), 0 for a label
    without true or predicted positives, as spaCy's ``cats_macro_f`` (which it equals at 0.5
    for 0/1 ``truth``), so a report's tuned and 0.5 columns differ only by the thresholds."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(truth) == 1
    cut = np.asarray(thresholds, dtype=float)
    if p.shape != y.shape or p.ndim != 2 or cut.shape != (p.shape[1],):
        raise ValueError(f"probabilities {p.shape}, truth {y.shape}, thresholds {cut.shape}")
    predicted = p >= cut
    tp = (predicted & y).sum(axis=0)
    precision = tp / np.maximum(predicted.sum(axis=0), 1)
    recall = tp / np.maximum(y.sum(axis=0), 1)
    both = precision + recall
    return float(np.where(both > 0, 2 * precision * recall / np.where(both > 0, both, 1), 0).mean())

"""Paired statistics for the multi-seed benchmark, and macro F1 at per-label thresholds.

Every method of the paired protocol is trained from the same source model on the same splits
and hidden labels at a seed, so the seed-to-seed spread (7–9 points in the first, unpaired
tables) cancels in the per-seed differences. The comparisons here are therefore paired:

- a paired-t 95% confidence interval of the mean difference (method − baseline);
- a Wilcoxon signed-rank p-value, which does not assume normal differences (with 5 seeds the
  smallest two-sided exact p-value it can reach is 2 / 2**5 = 0.0625, so it cannot reach 0.05;
  the CI is the criterion, the p-value a check on it).

The recovery ``(m − ft_partial) / (ft_full − ft_partial)`` is the study report's
(:func:`spacy_dallmi.experiments.runs.recovery`), given the scores in points.
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
    """Paired-t confidence interval and Wilcoxon signed-rank p-value of ``method − baseline``.

    The two sequences are aligned by seed. The CI is ``mean ± t_{(1+c)/2, n−1} · sd / √n``; it
    needs two or more pairs, and so does the Wilcoxon test (two-sided, exact for small n without
    ties), which is also undefined when every difference is 0: p is then None rather than a
    misleading 1.0.
    """
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
    """Macro F1 of ``probabilities >= thresholds`` (one threshold per label column).

    Per label ``2PR / (P + R)``, 0 where a label has no true or no predicted positive, as
    spaCy's scorer computes ``cats_macro_f``: with every threshold 0.5 and 0/1 ``truth`` the
    two agree (spaCy counts any gold value above 0 as positive, this only 1), so the tuned
    and the 0.5 columns of a report differ only by the thresholds.
    """
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(truth) == 1
    cut = np.asarray(thresholds, dtype=float)
    if p.shape != y.shape or p.ndim != 2 or cut.shape != (p.shape[1],):
        raise ValueError(f"probabilities {p.shape}, truth {y.shape}, thresholds {cut.shape}")
    predicted = p >= cut
    tp = (predicted & y).sum(axis=0)
    precision = tp / np.maximum(predicted.sum(axis=0), 1)
    recall = tp / np.maximum(y.sum(axis=0), 1)
    denominator = precision + recall
    f1 = np.where(
        denominator > 0, 2 * precision * recall / np.where(denominator > 0, denominator, 1), 0.0
    )
    return float(f1.mean())

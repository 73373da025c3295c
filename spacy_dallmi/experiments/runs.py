"""Metrics files as :class:`Run` records, and the numbers the report and benchmarks take from
them: per-seed values of a metric, ``mean ± std`` cells and DALLMi's recovery.

Each metrics file is one :func:`spacy_dallmi.experiments.evaluate.evaluate_pipeline` result:
one method at one share of hidden positives (``settings.ratio``) with one seed. The methods
that read no hidden labels (``none``, ``ft_full``) may have no ratio: one run then counts at
every ratio.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import srsly

from .methods import ALL_METHODS, RATIO_FREE_METHODS

MISSING = "–"
#: Recovery is given only where ft_full − ft_partial is at least this many points.
MIN_RECOVERY_GAP = 3.0

REQUIRED_KEYS = (
    "method",
    "settings.seed",
    "n_docs",
    "wall_seconds",
    "metrics.cats_macro_ap",
    "metrics.cats_macro_ap_rounded",
    "metrics.cats_ap_per_type",
    "metrics.cats_ap_skipped_labels",
)


@dataclass(frozen=True)
class Run:
    """One metrics file: a method at one ratio and seed, with the file it came from."""

    path: Path
    method: str
    ratio: Optional[float]
    seed: Any
    result: Dict[str, Any]

    @property
    def metrics(self) -> Dict[str, Any]:
        return self.result["metrics"]


def _has_key(data: Any, dotted: str) -> bool:
    """Whether `data` holds the (possibly nested) key ``a.b``; the value may be null, as a
    metric is when it is undefined (e.g. macro AP of a test split without any positive)."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _ratio_key(value: float) -> float:
    """Ratios come from JSON floats; rounding makes 0.7 and 0.7000000001 one column."""
    return round(float(value), 6)


def load_runs(metrics_paths: Iterable[Path]) -> List[Run]:
    """Read and validate metrics files.

    Errors name the offending file: a report built from a folder of dozens of runs is otherwise
    hard to debug. Two files for the same method, ratio and seed are an error rather than two
    "seeds", since averaging them would understate the spread (it usually means runs of two
    configurations, e.g. different ``max_docs``, were mixed).
    """
    paths = [Path(path) for path in metrics_paths]
    if not paths:
        raise ValueError(
            "No metrics files given: write them with `python -m spacy_dallmi evaluate` "
            "(spacy_dallmi.experiments.evaluate.evaluate_pipeline) first."
        )
    runs: List[Run] = []
    seen: Dict[Tuple[str, float, str], Path] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Metrics file not found: {path}")
        try:
            result = srsly.read_json(path)
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        missing = [key for key in REQUIRED_KEYS if not _has_key(result, key)]
        if missing:
            raise ValueError(
                f"{path} lacks the required key(s) {missing}. Metrics files are written by "
                "`python -m spacy_dallmi evaluate`, with --set ratio=R --set seed=S."
            )
        method = result["method"]
        if method not in ALL_METHODS:
            raise ValueError(f"{path}: unknown method {method!r}; use one of {ALL_METHODS}.")
        ratio = result["settings"].get("ratio")
        if not (ratio is None and method in RATIO_FREE_METHODS) and (
            isinstance(ratio, bool) or not isinstance(ratio, (int, float))
        ):
            raise ValueError(f"{path}: settings.ratio must be a number, got {ratio!r}.")
        if result["settings"]["seed"] is None:
            raise ValueError(f"{path}: settings.seed is null; evaluate with --seed set.")
        key_ratio = None if ratio is None else _ratio_key(ratio)
        run = Run(path, method, key_ratio, result["settings"]["seed"], result)
        key = (run.method, run.ratio, srsly.json_dumps(run.seed))
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {path} are both method {run.method!r} at ratio {run.ratio} "
                f"with seed {run.seed!r}. Build the report from one configuration's files."
            )
        seen[key] = path
        runs.append(run)
    return runs


def metric_values(
    runs: Sequence[Run], method: str, ratio: float, metric: str, last: bool = False
) -> List[float]:
    """The metric of every seed of `method` at `ratio` (runs where it is null are left out; a
    run without a ratio counts at every ratio). ``last``: the last epoch's metrics
    (``metrics_last``) instead of the selected model's, where a run has them."""
    values = []
    for run in runs:
        metrics = run.result.get("metrics_last", run.metrics) if last else run.metrics
        value = metrics.get(metric)
        at_ratio = run.ratio is None or run.ratio == ratio
        if run.method == method and at_ratio and value is not None:
            values.append(float(value))
    return values


def format_cell(values: Sequence[float]) -> str:
    """``mean ± std (n=k)`` in percent, std over seeds with ddof=1; ``–`` without values.

    A single seed has no spread to estimate, so it is shown without ``±`` rather than with a
    misleading 0.0.
    """
    if not values:
        return MISSING
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f} (n=1)"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f} (n={len(values)})"


def recovery(
    method: float, ft_partial: float, ft_full: float, points: float = 100.0, decimals: int = 1
) -> str:
    """The share of the gap between partial- and full-label fine-tuning that ``method`` closes,
    as report text: ``52.6%``, or ``n/a (gap 1.7)`` where the gap is below
    :data:`MIN_RECOVERY_GAP` points.

    ``(method - ft_partial) / (ft_full - ft_partial)``: 0% means no better than fine-tuning on
    the partial labels, 100% as good as having every label. Below the minimum gap the ratio
    divides noise by noise (a 1.7-point gap once gave "−1010%"), so the gap is shown instead.
    The three scores share a unit with ``points`` points to it: 100 for the metrics files'
    fractions (the report), 1 for the benchmarks' points (their summaries, which print
    ``decimals=0``). The threshold is brought into that unit (3.0 / 100 is the float 0.03)
    rather than the gap into points, so scaling never rounds a gap across it.
    """
    gap = ft_full - ft_partial
    if gap < MIN_RECOVERY_GAP / points:
        return f"n/a (gap {points * gap:.1f})"
    return f"{100.0 * (method - ft_partial) / gap:.{decimals}f}%"


def ratio_header(ratio: Optional[float]) -> str:
    """The column heading of a ratio, e.g. ``50% removed``; ratio 0 is a target whose labels
    were partial as given, None a column of runs that do not depend on the ratio."""
    if ratio is None:
        return "any ratio"
    return f"{ratio * 100:g}% removed" if ratio else "labels as given"

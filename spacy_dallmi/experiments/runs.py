"""Metrics files as :class:`Run` records, and the numbers the report and the benchmarks take
from them: per-seed values, ``mean ± std`` cells and the recovery of the gap. A file is one
method at one ratio and seed; ``none`` and ``ft_full`` may have no ratio, counting at every one.
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
    path: Path
    method: str
    ratio: Optional[float]
    seed: Any
    result: Dict[str, Any]

    @property
    def metrics(self) -> Dict[str, Any]:
        return self.result["metrics"]


def _has_key(data: Any, dotted: str) -> bool:
    """Whether `data` holds the nested key ``a.b`` (its value may be null: an undefined metric)."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def load_runs(metrics_paths: Iterable[Path]) -> List[Run]:
    """Read and validate metrics files; errors name the file. Two files of one method, ratio and
    seed are an error, not two "seeds": they are runs of two configurations mixed."""
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
        key_ratio = None if ratio is None else round(float(ratio), 6)  # 0.7 == 0.7000000001
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
    """The non-null metric of every seed of `method` at `ratio`; ``last``: of the last epoch
    (``metrics_last``) instead of the selected model, where a run has it."""
    values = []
    for run in runs:
        metrics = run.result.get("metrics_last", run.metrics) if last else run.metrics
        value = metrics.get(metric)
        at_ratio = run.ratio is None or run.ratio == ratio
        if run.method == method and at_ratio and value is not None:
            values.append(float(value))
    return values


def format_cell(values: Sequence[float]) -> str:
    """``mean ± std (n=k)`` in percent (ddof=1; one seed has no ``±``), ``–`` without values."""
    if not values:
        return MISSING
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f} (n=1)"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f} (n={len(values)})"


def recovery(
    method: float, ft_partial: float, ft_full: float, points: float = 100.0, decimals: int = 1
) -> str:
    """The share of the partial-to-full gap ``method`` closes as text, ``52.6%``; ``n/a (gap
    1.7)`` below :data:`MIN_RECOVERY_GAP` points, where it divides noise by noise. ``points``:
    points per unit of the scores (100 for fractions, 1 for the benchmarks'); the threshold is
    scaled, not the gap, so scaling never rounds a gap across it."""
    gap = ft_full - ft_partial
    if gap < MIN_RECOVERY_GAP / points:
        return f"n/a (gap {points * gap:.1f})"
    return f"{100.0 * (method - ft_partial) / gap:.{decimals}f}%"


def ratio_header(ratio: Optional[float]) -> str:
    """A ratio's column heading: ``50% removed``, ``labels as given`` (0) or ``any ratio``."""
    if ratio is None:
        return "any ratio"
    return f"{ratio * 100:g}% removed" if ratio else "labels as given"

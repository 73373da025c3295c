"""Aggregate metrics files into a Markdown report shaped like the DALLMi paper's results.

Each metrics file is one :func:`spacy_dallmi.evaluate.evaluate_pipeline` result: one method
(``none``, ``ft_partial``, ``ft_full`` or ``dallmi``) at one share of hidden positives
(``settings.ratio``) with one seed (``settings.seed``). :func:`build_report` turns a set of them
into

- a Table-2-style table per metric: methods as rows, ratios as columns, mean ± sample standard
  deviation over seeds in percent, with the number of seeds, so a reader sees at once how many
  runs stand behind a number;
- the share of the partial-to-full fine-tuning gap that DALLMi recovers, per ratio: a single
  number that says whether the adaptation helps, independent of how hard the dataset is;
- the settings, wall times and labels left out of AP, so the numbers can be traced back;
- two PNG figures: macro mAP per epoch (the paper's Fig. 5) and AP per label.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so building a report needs
no display and changes no global matplotlib state.
"""

import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import srsly
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .evaluate import METHODS

MISSING = "–"

METHOD_DESCRIPTIONS = {
    "none": "the source model, no adaptation",
    "ft_partial": "BCE fine-tuning on the partial labels (hidden positives count as negatives)",
    "ft_full": "BCE fine-tuning on all labels (upper bound; does not depend on the ratio)",
    "dallmi": "DALLMi: variational PU loss, MixUp and label-balanced batches",
}

# The paper's Fig. 5 colours: fine-tuning with partial labels blue, DALLMi green, full red.
METHOD_COLOURS = {
    "none": "tab:gray",
    "ft_partial": "tab:blue",
    "dallmi": "tab:green",
    "ft_full": "tab:red",
}
CURVE_METHODS = ("ft_partial", "dallmi", "ft_full")

MAIN_METRICS = (
    ("cats_macro_ap", "Macro mAP", "Mean over labels of the AP of the predicted probabilities"),
    (
        "cats_macro_ap_rounded",
        "Macro mAP on rounded predictions",
        "The paper's protocol: AP of predictions rounded at the threshold; not a proper AP, "
        "shown only for comparison with the paper's Table 2",
    ),
)
OTHER_METRICS = (
    ("cats_micro_ap", "Micro AP", "AP over all (doc, label) pairs pooled"),
    (
        "cats_macro_auc",
        "Macro ROC AUC",
        "spaCy's: a label without a test positive counts as 0 in the mean",
    ),
    ("cats_macro_f", "Macro F1 at the threshold", "spaCy's macro F-score"),
)

REQUIRED_KEYS = (
    "method",
    "settings.ratio",
    "settings.seed",
    "n_docs",
    "wall_seconds",
    "metrics.cats_macro_ap",
    "metrics.cats_macro_ap_rounded",
    "metrics.cats_ap_per_type",
    "metrics.cats_ap_skipped_labels",
)

CURVE_FIGURE = "macro_map_per_epoch.png"
LABEL_FIGURE = "ap_per_label.png"


@dataclass(frozen=True)
class Run:
    """One metrics file: a method at one ratio and seed, with the file it came from."""

    path: Path
    method: str
    ratio: float
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
            "(spacy_dallmi.evaluate.evaluate_pipeline) first."
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
                "`python -m spacy_dallmi evaluate`, with --ratio and --seed set."
            )
        method = result["method"]
        if method not in METHODS:
            raise ValueError(f"{path}: unknown method {method!r}; use one of {METHODS}.")
        ratio = result["settings"]["ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ValueError(f"{path}: settings.ratio must be a number, got {ratio!r}.")
        if result["settings"]["seed"] is None:
            raise ValueError(f"{path}: settings.seed is null; evaluate with --seed set.")
        run = Run(path, method, _ratio_key(ratio), result["settings"]["seed"], result)
        key = (run.method, run.ratio, srsly.json_dumps(run.seed))
        if key in seen:
            raise ValueError(
                f"{seen[key]} and {path} are both method {run.method!r} at ratio {run.ratio} "
                f"with seed {run.seed!r}. Build the report from one configuration's files."
            )
        seen[key] = path
        runs.append(run)
    return runs


def metric_values(runs: Sequence[Run], method: str, ratio: float, metric: str) -> List[float]:
    """The metric of every seed of `method` at `ratio` (runs where it is null are left out)."""
    values = []
    for run in runs:
        value = run.metrics.get(metric)
        if run.method == method and run.ratio == ratio and value is not None:
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


def recovery(dallmi: float, ft_partial: float, ft_full: float) -> Optional[float]:
    """Share of the gap between partial- and full-label fine-tuning that DALLMi closes.

    ``(dallmi - ft_partial) / (ft_full - ft_partial)``: 0 means no better than fine-tuning on
    the partial labels, 1 means as good as having every label. None when the denominator is
    <= 0, where there is no gap to close and the ratio would be meaningless.
    """
    gap = ft_full - ft_partial
    if gap <= 0:
        return None
    return (dallmi - ft_partial) / gap


def _percent(value: Optional[float]) -> str:
    return MISSING if value is None else f"{100 * float(value):.1f}"


def _ratio_header(ratio: float) -> str:
    return f"{ratio * 100:g}% removed"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _recovery_row(runs: Sequence[Run], ratios: Sequence[float]) -> Tuple[List[str], bool]:
    """The recovery cells per ratio, and whether any was undefined (denominator <= 0)."""
    cells = ["recovery"]
    undefined = False
    for ratio in ratios:
        seeds = [
            metric_values(runs, method, ratio, "cats_macro_ap")
            for method in ("dallmi", "ft_partial", "ft_full")
        ]
        if not all(seeds):
            cells.append(MISSING)
            continue
        value = recovery(*(statistics.fmean(values) for values in seeds))
        undefined = undefined or value is None
        cells.append("n/a †" if value is None else f"{100 * value:.1f}%")
    return cells, undefined


def _metric_section(
    runs: Sequence[Run], ratios: Sequence[float], metric: str, name: str, description: str
) -> List[str]:
    """A Table-2-style table of `metric`; for macro mAP with the recovery row and its note."""
    header = ["method", *(_ratio_header(ratio) for ratio in ratios)]
    rows = [
        [f"`{method}`", *(format_cell(metric_values(runs, method, r, metric)) for r in ratios)]
        for method in METHODS
    ]
    if metric != "cats_macro_ap":
        return [
            f"## {name} (`{metric}`)",
            "",
            f"{description}.",
            "",
            *_markdown_table(header, rows),
        ]
    recovery_cells, undefined = _recovery_row(runs, ratios)
    rows.append(recovery_cells)
    lines = [f"## {name} (`{metric}`)", "", f"{description}.", "", *_markdown_table(header, rows)]
    lines.extend(
        [
            "",
            "recovery = (dallmi − ft_partial) / (ft_full − ft_partial) on the mean macro mAP: the "
            "share of the gap between partial- and full-label fine-tuning that DALLMi closes "
            "(0% = no better than `ft_partial`, 100% = as good as `ft_full`).",
        ]
    )
    if undefined:
        lines.extend(
            [
                "",
                "† `ft_full` does not beat `ft_partial` at this ratio, so there is no gap for "
                "DALLMi to close and the recovery is undefined.",
            ]
        )
    return lines


def _display(value: Any) -> str:
    return value if isinstance(value, str) else srsly.json_dumps(value)


def _settings_section(runs: Sequence[Run]) -> List[str]:
    """Every setting with its distinct values, so mixed configurations are visible."""
    values: Dict[str, List[str]] = {}
    for run in runs:
        for key, value in run.result["settings"].items():
            shown = _display(value)
            if shown not in values.setdefault(key, []):
                values[key].append(shown)
    rows = [
        [f"`{key}`", ", ".join(f"`{v}`" for v in sorted(shown))] for key, shown in values.items()
    ]
    return ["## Settings", "", *_markdown_table(["setting", "value(s) across runs"], rows)]


def _skipped_section(runs: Sequence[Run]) -> List[str]:
    """How many labels were left out of AP for having no positive in the test split."""
    counts: Dict[Tuple[str, ...], int] = {}
    for run in runs:
        skipped = tuple(run.metrics["cats_ap_skipped_labels"])
        counts[skipped] = counts.get(skipped, 0) + 1
    lines = [
        "## Labels left out of AP",
        "",
        "A label with no positive in the test split has no AP; it is left out of the AP "
        "averages (and counted as 0 in spaCy's macro ROC AUC).",
        "",
    ]
    for skipped, n_runs in counts.items():
        names = ", ".join(f"`{label}`" for label in skipped)
        listed = f": {names}" if skipped else ""
        lines.append(f"- {len(skipped)} label(s) left out in {n_runs} run(s){listed}")
    return lines


def _runs_section(runs: Sequence[Run]) -> List[str]:
    """One row per metrics file, with its test size and evaluation wall time."""
    rows = []
    ordered = sorted(runs, key=lambda r: (r.ratio, METHODS.index(r.method), _display(r.seed)))
    for run in ordered:
        rows.append(
            [
                f"`{run.path}`",
                f"`{run.method}`",
                f"{run.ratio:g}",
                _display(run.seed),
                str(run.result["n_docs"]),
                _percent(run.metrics["cats_macro_ap"]),
                f"{float(run.result['wall_seconds']):.1f}",
            ]
        )
    total = sum(float(run.result["wall_seconds"]) for run in runs)
    header = ["file", "method", "ratio", "seed", "test docs", "macro mAP", "eval wall s"]
    return [
        "## Runs",
        "",
        f"Evaluation wall time (load, predict, score): {total:.1f} s over {len(runs)} runs.",
        "",
        *_markdown_table(header, rows),
    ]


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)


def _first_ratio(runs: Sequence[Run], has_data: Callable[[Run], bool]) -> Optional[float]:
    """The smallest ratio with a run for which `has_data` holds, or None.

    The figures show one ratio; the smallest is the paper's Fig. 5 setting (50% removed).
    """
    ratios = [run.ratio for run in runs if has_data(run)]
    return min(ratios) if ratios else None


def curve_points(
    runs: Sequence[Run], method: str, ratio: float
) -> Tuple[Dict[int, List[float]], int]:
    """Macro mAP per epoch of every seed of `method` at `ratio`, and how many seeds had a curve.

    Epoch e is the model after e full epochs (0 = the source model before adaptation). The
    epoch callback records before each epoch, so it never sees the final model; that point is
    the run's own score, placed at ``settings["epochs"]``.
    """
    per_epoch: Dict[int, List[float]] = {}
    seeds = 0
    for run in runs:
        if run.method != method or run.ratio != ratio or not run.result.get("epochs"):
            continue
        seeds += 1
        recorded = set()
        for record in run.result["epochs"]:
            if record.get("cats_macro_ap") is not None:
                recorded.add(int(record["epoch"]))
                per_epoch.setdefault(int(record["epoch"]), []).append(record["cats_macro_ap"])
        last = run.result["settings"].get("epochs")
        final = run.metrics.get("cats_macro_ap")
        if isinstance(last, int) and last not in recorded and final is not None:
            per_epoch.setdefault(last, []).append(final)
    return per_epoch, seeds


def plot_learning_curve(runs: Sequence[Run], ratio: float, path: Path) -> None:
    """Macro mAP per epoch for ft_partial, dallmi and ft_full at `ratio`, mean over seeds.

    Points come from :func:`curve_points`. With several seeds a band shows ± one standard
    deviation.
    """
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.subplots()
    for method in CURVE_METHODS:
        per_epoch, seeds = curve_points(runs, method, ratio)
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        mean = np.array([100 * np.mean(per_epoch[e]) for e in epochs])
        std = np.array(
            [100 * np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0.0 for e in epochs]
        )
        colour = METHOD_COLOURS[method]
        axes.plot(epochs, mean, marker="o", color=colour, label=f"{method} (n={seeds})")
        if seeds > 1:
            axes.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch (0 = before adaptation)")
    axes.set_ylabel("macro mAP (%)")
    axes.set_title(f"Macro mAP per epoch, {_ratio_header(ratio)} (mean over seeds)")
    axes.grid(alpha=0.3)
    axes.legend()
    _save(figure, path)


def plot_ap_per_label(runs: Sequence[Run], ratio: float, path: Path) -> None:
    """Grouped bars of each method's AP per label at `ratio`, mean over seeds."""
    methods = [m for m in METHODS if any(r.method == m and r.ratio == ratio for r in runs)]
    labels: List[str] = []
    for run in runs:
        if run.ratio == ratio:
            labels.extend(label for label in run.metrics["cats_ap_per_type"] if label not in labels)
    figure = Figure(
        figsize=(max(6.4, min(24.0, 1.0 + 0.6 * len(labels))), 4.2), layout="constrained"
    )
    axes = figure.subplots()
    width = 0.8 / len(methods)
    positions = np.arange(len(labels))
    for i, method in enumerate(methods):
        heights = []
        for label in labels:
            values = [
                run.metrics["cats_ap_per_type"][label]
                for run in runs
                if run.method == method
                and run.ratio == ratio
                and run.metrics["cats_ap_per_type"].get(label) is not None
            ]
            heights.append(100 * np.mean(values) if values else math.nan)
        axes.bar(
            positions + (i - (len(methods) - 1) / 2) * width,
            heights,
            width,
            color=METHOD_COLOURS[method],
            label=method,
        )
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylabel("AP (%)")
    axes.set_title(f"AP per label, {_ratio_header(ratio)} (mean over seeds)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def _figures_section(runs: Sequence[Run], output_md: Path, figures_dir: Path) -> List[str]:
    """Draw the figures that the runs have data for and return the Markdown linking them."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    lines = ["## Figures", ""]

    def link(name: str, alt: str, caption: str) -> None:
        target = Path(os.path.relpath(figures_dir / name, output_md.parent)).as_posix()
        lines.extend([f"![{alt}]({target})", "", caption, ""])

    curve_ratio = _first_ratio(
        runs, lambda run: run.method in CURVE_METHODS and bool(run.result.get("epochs"))
    )
    if curve_ratio is None:
        lines.extend(
            [
                "No per-epoch records: train with `[training.before_update]` "
                "`spacy_dallmi.epoch_eval.v1` and pass its output to `evaluate --epoch-log` to "
                "get the learning curve.",
                "",
            ]
        )
    else:
        plot_learning_curve(runs, curve_ratio, figures_dir / CURVE_FIGURE)
        link(
            CURVE_FIGURE,
            "Macro mAP per epoch",
            f"Macro mAP per epoch at {_ratio_header(curve_ratio)} (the paper's Fig. 5), "
            "recorded during training for this figure only (never for model selection). Epoch "
            "e is the model after e full epochs; the last point is the model scored in the "
            "tables.",
        )
    label_ratio = _first_ratio(runs, lambda run: bool(run.metrics["cats_ap_per_type"]))
    if label_ratio is not None:
        plot_ap_per_label(runs, label_ratio, figures_dir / LABEL_FIGURE)
        link(
            LABEL_FIGURE,
            "AP per label",
            f"AP per label at {_ratio_header(label_ratio)}, mean over seeds.",
        )
    return lines


def build_report(
    metrics_paths: Iterable[Path], output_md: Path, figures_dir: Path, *, title: str
) -> None:
    """Write a Markdown report (tables, settings, figures) from metrics files.

    metrics_paths: JSON files written by :func:`spacy_dallmi.evaluate.write_metrics`.
    output_md: the Markdown file to write (parent folders are created).
    figures_dir: where the PNGs go; the report links them by relative path.
    title: the report's heading.

    Raises ValueError when no file is given, a file lacks a required key or has an unknown
    method (naming the file), or two files claim the same method, ratio and seed.
    """
    runs = load_runs(metrics_paths)
    output_md = Path(output_md)
    figures_dir = Path(figures_dir)
    output_md.parent.mkdir(parents=True, exist_ok=True)
    ratios = sorted({run.ratio for run in runs})
    seeds = sorted({_display(run.seed) for run in runs})
    lines = [
        f"# {title}",
        "",
        f"{len(runs)} runs; ratios (share of target train positives removed): "
        f"{', '.join(f'{r:g}' for r in ratios)}; seeds: {', '.join(seeds)}.",
        "",
        "Cells: mean ± sample standard deviation over seeds, in percent, with the number of "
        f"seeds n; {MISSING} = no run. Scores are on the fully labelled target test split.",
        "",
        *(f"- `{method}`: {description}" for method, description in METHOD_DESCRIPTIONS.items()),
        "",
    ]
    for metric, name, description in MAIN_METRICS + OTHER_METRICS:
        lines.extend(_metric_section(runs, ratios, metric, name, description))
        lines.append("")
    lines.extend(_figures_section(runs, output_md, figures_dir))
    lines.extend(_skipped_section(runs))
    lines.append("")
    lines.extend(_settings_section(runs))
    lines.append("")
    lines.extend(_runs_section(runs))
    output_md.write_text("\n".join(lines) + "\n", encoding="utf8")

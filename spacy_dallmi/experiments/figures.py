"""The report's two figures: macro mAP per epoch (the paper's Fig. 5) and AP per label.

Drawn on matplotlib's Agg canvas directly (no pyplot), so building a report needs no display
and changes no global matplotlib state. This is the only module of the kit that imports
matplotlib; the command line imports it only when a report is asked for.
"""

import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from wasabi import MarkdownRenderer

from .methods import ALL_METHODS, registered
from .runs import Run, ratio_header

# The paper's Fig. 5 colours: fine-tuning with partial labels blue, DALLMi green, full red.
METHOD_COLOURS = registered(
    {
        "none": "tab:gray",
        "ft_partial": "tab:blue",
        "an_ls": "tab:cyan",
        "wan": "tab:purple",
        "dallmi": "tab:green",
        "dallmi_lambda0": "tab:olive",
        "dallmi_paper": "tab:brown",
        "ft_full": "tab:red",
    }
)
CURVE_METHODS = registered(("ft_partial", "dallmi", "ft_full"))
CURVE_FIGURE = "macro_map_per_epoch.png"
LABEL_FIGURE = "ap_per_label.png"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)


def _first_ratio(runs: Sequence[Run], has_data: Callable[[Run], bool]) -> Optional[float]:
    """The smallest ratio with a run for which `has_data` holds, or None.

    The figures show one ratio; the smallest is the paper's Fig. 5 setting (50% removed).
    """
    ratios = [run.ratio for run in runs if run.ratio is not None and has_data(run)]
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
        if run.method != method or run.ratio not in (None, ratio) or not run.result.get("epochs"):
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
        mean = numpy.array([100 * numpy.mean(per_epoch[e]) for e in epochs])
        std = numpy.array(
            [
                100 * numpy.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0.0
                for e in epochs
            ]
        )
        colour = METHOD_COLOURS[method]
        axes.plot(epochs, mean, marker="o", color=colour, label=f"{method} (n={seeds})")
        if seeds > 1:
            axes.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.2)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch (0 = before adaptation)")
    axes.set_ylabel("macro mAP (%)")
    axes.set_title(f"Macro mAP per epoch, {ratio_header(ratio)} (mean over seeds)")
    axes.grid(alpha=0.3)
    axes.legend()
    _save(figure, path)


def plot_ap_per_label(runs: Sequence[Run], ratio: float, path: Path) -> None:
    """Grouped bars of each method's AP per label at `ratio`, mean over seeds."""
    at_ratio = [run for run in runs if run.ratio in (None, ratio)]
    methods = [m for m in ALL_METHODS if any(r.method == m for r in at_ratio)]
    labels: List[str] = []
    for run in at_ratio:
        labels.extend(label for label in run.metrics["cats_ap_per_type"] if label not in labels)
    figure = Figure(
        figsize=(max(6.4, min(24.0, 1.0 + 0.6 * len(labels))), 4.2), layout="constrained"
    )
    axes = figure.subplots()
    width = 0.8 / len(methods)
    positions = numpy.arange(len(labels))
    for i, method in enumerate(methods):
        heights = []
        for label in labels:
            values = [
                run.metrics["cats_ap_per_type"][label]
                for run in at_ratio
                if run.method == method and run.metrics["cats_ap_per_type"].get(label) is not None
            ]
            heights.append(100 * numpy.mean(values) if values else math.nan)
        axes.bar(
            positions + (i - (len(methods) - 1) / 2) * width,
            heights,
            width,
            color=METHOD_COLOURS[method],
            label=method,
        )
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylabel("AP (%)")
    axes.set_title(f"AP per label, {ratio_header(ratio)} (mean over seeds)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def figure_blocks(
    runs: Sequence[Run], output_md: Path, figures_dir: Path, md: MarkdownRenderer
) -> List[str]:
    """Draw the figures that the runs have data for; return the Markdown blocks linking them."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    blocks = [md.title(2, "Figures")]

    def link(name: str, alt: str, caption: str) -> None:
        target = Path(os.path.relpath(figures_dir / name, output_md.parent)).as_posix()
        blocks.extend([f"![{alt}]({target})", caption])

    curve_ratio = _first_ratio(
        runs, lambda run: run.method in CURVE_METHODS and bool(run.result.get("epochs"))
    )
    if curve_ratio is None:
        blocks.append(
            "No per-epoch records: train with `[training.before_update]` "
            "`spacy_dallmi.epoch_eval.v1` and pass its output to `evaluate --epoch-log` to "
            "get the learning curve."
        )
    else:
        plot_learning_curve(runs, curve_ratio, figures_dir / CURVE_FIGURE)
        link(
            CURVE_FIGURE,
            "Macro mAP per epoch",
            f"Macro mAP per epoch at {ratio_header(curve_ratio)} (the paper's Fig. 5), "
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
            f"AP per label at {ratio_header(label_ratio)}, mean over seeds.",
        )
    return blocks

"""The Markdown report of metrics files, shaped like the DALLMi paper's results.

A metrics file is one method at one ratio and seed (a :class:`Run`); ``none`` and ``ft_full``
may have no ratio, counting at every one. :func:`recovery` is the benchmarks' too.

Per metric a Table-2-style table (methods x ratios, selected model and last epoch), each
method's difference to no adaptation beside the share of the partial-to-full gap it recovers
(a method can recover more than another and still be below its starting model), settings,
wall times, and two figures (the paper's Fig. 5, AP per label). The kit's only matplotlib
user, on the Agg canvas (no pyplot: no display, no global state).
"""

import math
import os
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import srsly
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from wasabi import MarkdownRenderer

from .methods import ALL_METHODS, METHOD_DESCRIPTIONS, RATIO_FREE_METHODS, registered

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
            "No metrics files given: write them with the study's evaluate step "
            "(spacy_dallmi.experiments.evaluate.evaluate_run) first."
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
                "the study's evaluate step, with the run's ratio and seed in its settings."
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


METRICS = (
    ("cats_macro_ap", "Macro mAP", "Mean over labels of the AP of the predicted probabilities"),
    ("cats_macro_f", "Macro F1 at the threshold", "spaCy's macro F-score at 0.5"),
    (
        "cats_ece",
        "Expected calibration error",
        "15 equal-width bins over every (doc, label) probability; lower is better",
    ),
    (
        "cats_macro_ap_rounded",
        "Macro mAP on rounded predictions",
        "The paper's protocol: AP of predictions rounded at the threshold; not a proper AP, "
        "shown only for comparison with the paper's Table 2",
    ),
    ("cats_micro_ap", "Micro AP", "AP over all (doc, label) pairs pooled"),
    (
        "cats_macro_auc",
        "Macro ROC AUC",
        "spaCy's: a label without a test positive counts as 0 in the mean",
    ),
)
GAINS_NOTE = (
    "Δ none = the method's mean macro mAP minus the unadapted source model's, in points. "
    "Recovery = (method − ft_partial) / (ft_full − ft_partial): the share of the gap between "
    "partial- and full-label fine-tuning that the method closes (0% = no better than "
    "`ft_partial`, 100% = as good as `ft_full`); printed only where that gap is at least "
    f"{MIN_RECOVERY_GAP:g} points, else n/a with the gap. Both on the selected models."
)
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


def _display(value: Any, root: Path) -> str:
    """A setting's value as text; an absolute path is shown relative to ``root``."""
    if isinstance(value, str):
        return os.path.relpath(value, root) if os.path.isabs(value) else value
    return srsly.json_dumps(value)


def _gain_cells(runs: Sequence[Run], method: str, ratio: float) -> List[str]:
    """Δ none and recovery of ``method`` at ``ratio`` (mean macro mAP of the selected models)."""
    means = {}
    for name in (method, "none", "ft_partial", "ft_full"):
        values = metric_values(runs, name, ratio, "cats_macro_ap")
        means[name] = statistics.fmean(values) if values else None
    own, none = means[method], means["none"]
    delta = MISSING if own is None or none is None else f"{100 * (own - none):+.1f}"
    if method in ("ft_partial", "ft_full") or None in (own, means["ft_partial"], means["ft_full"]):
        return [delta, MISSING]
    return [delta, recovery(own, means["ft_partial"], means["ft_full"])]


def _tables(
    md: MarkdownRenderer, runs: Sequence[Run], methods: Sequence[str], ratios: Sequence[float]
) -> List[str]:
    """Per metric, per ratio the selected model and the last epoch side by side; after macro
    mAP, the gains against no adaptation."""
    blocks = []
    for key, name, description in METRICS:
        header = ["method"]
        for ratio in ratios:
            header += [f"{ratio_header(ratio)}, selected", "last epoch"]
        rows = []
        for method in methods:
            row = [md.code(method)]
            for ratio in ratios:
                row.append(format_cell(metric_values(runs, method, ratio, key)))
                row.append(format_cell(metric_values(runs, method, ratio, key, last=True)))
            rows.append(row)
        blocks += [
            md.title(3, f"{name} ({md.code(key)})"),
            f"{description}.",
            md.table(rows, header),
        ]
        if key != "cats_macro_ap":
            continue
        header = ["method"]
        for ratio in ratios:
            header += [f"{ratio_header(ratio)}: Δ none", "recovery"]
        rows = [
            [md.code(method), *[cell for r in ratios for cell in _gain_cells(runs, method, r)]]
            for method in methods
            if method != "none"
        ]
        blocks += [md.title(3, "Against no adaptation, and recovery"), md.table(rows, header)]
        blocks.append(GAINS_NOTE)
    return blocks


def _details(md: MarkdownRenderer, runs: Sequence[Run], root: Path) -> List[str]:
    """Labels left out of AP, how each source model stopped, the settings and the runs."""
    counts = Counter(tuple(run.metrics["cats_ap_skipped_labels"]) for run in runs)
    items = []
    for skipped, n_runs in counts.items():
        listed = f": {', '.join(md.code(label) for label in skipped)}" if skipped else ""
        items.append(f"{len(skipped)} label(s) left out in {n_runs} run(s){listed}")
    blocks = [
        md.title(3, "Labels left out of AP"),
        "A label with no positive in the test split has no AP; it is left out of the AP "
        "averages (and counted as 0 in spaCy's macro ROC AUC).",
        md.list(items),
    ]
    sources = []
    for run in runs:
        training = run.result.get("training")
        if run.method != "none" or not training:
            continue
        line = (
            f"seed {srsly.json_dumps(run.seed)}: source dev score "
            f"{100 * training['best_score']:.1f} at epoch {training['best_epoch']}, stopped "
            f"at epoch {training['stop_epoch']} of at most {training['epochs']}"
        )
        if training["reason"] == "upper_bound":
            line += (
                f": **stopped by the upper bound while still improving by "
                f"{training['last_gain_points']:.1f} points**; raise `source_epochs`"
            )
        elif training["reason"] == "converged":
            line += f" (converged, patience {training['patience']})"
        sources.append(line)
    if sources:
        blocks += [md.title(3, "Source model training"), md.list(sources)]
    values: Dict[str, List[str]] = {}
    for run in runs:
        for key, value in run.result["settings"].items():
            shown = _display(value, root)
            if shown not in values.setdefault(key, []):
                values[key].append(shown)
    rows = [[md.code(k), ", ".join(md.code(v) for v in sorted(vs))] for k, vs in values.items()]
    blocks += [md.title(3, "Settings"), md.table(rows, ["setting", "value(s) across runs"])]
    ordered = sorted(
        runs, key=lambda r: (r.ratio or 0.0, ALL_METHODS.index(r.method), srsly.json_dumps(r.seed))
    )
    rows = []
    for run in ordered:
        ap, ratio = run.metrics["cats_macro_ap"], "all" if run.ratio is None else f"{run.ratio:g}"
        row = [md.code(os.path.relpath(run.path, root)), md.code(run.method), ratio]
        row += [srsly.json_dumps(run.seed), str(run.result["n_docs"])]
        row += [MISSING if ap is None else f"{100 * ap:.1f}"]
        rows.append(row + [f"{float(run.result['wall_seconds']):.1f}"])
    total = sum(float(run.result["wall_seconds"]) for run in runs)
    header = ["file", "method", "ratio", "seed", "test docs", "macro mAP", "eval wall s"]
    return blocks + [
        md.title(3, "Runs"),
        f"Evaluation wall time (load, predict, score): {total:.1f} s over {len(runs)} runs.",
        md.table(rows, header),
    ]


def curve_points(
    runs: Sequence[Run], method: str, ratio: float
) -> Tuple[Dict[int, List[float]], int]:
    """Macro mAP per epoch (e: after e epochs) of every seed of `method` at `ratio`, and how
    many seeds had a curve. The callback runs before each epoch, so the final point is the
    run's own score."""
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


def _plot_curve(runs: Sequence[Run], ratio: float, figure: Figure) -> None:
    """Macro mAP per epoch of the curve methods, mean over seeds (± one std with several)."""
    axes = figure.subplots()
    for method in CURVE_METHODS:
        per_epoch, seeds = curve_points(runs, method, ratio)
        if not per_epoch:
            continue
        epochs = sorted(per_epoch)
        values = [per_epoch[epoch] for epoch in epochs]
        mean = numpy.array([100 * numpy.mean(v) for v in values])
        std = numpy.array([100 * numpy.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
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


def _plot_labels(runs: Sequence[Run], ratio: float, figure: Figure) -> None:
    """Grouped bars of each method's AP per label, mean over seeds."""
    at_ratio = [run for run in runs if run.ratio in (None, ratio)]
    methods = [m for m in ALL_METHODS if any(r.method == m for r in at_ratio)]
    labels: List[str] = []
    for run in at_ratio:
        labels.extend(label for label in run.metrics["cats_ap_per_type"] if label not in labels)
    figure.set_figwidth(max(6.4, min(24.0, 1.0 + 0.6 * len(labels))))
    axes = figure.subplots()
    width, positions = 0.8 / len(methods), numpy.arange(len(labels))
    for i, method in enumerate(methods):
        heights = []
        for label in labels:
            values = [
                run.metrics["cats_ap_per_type"][label]
                for run in at_ratio
                if run.method == method and run.metrics["cats_ap_per_type"].get(label) is not None
            ]
            heights.append(100 * numpy.mean(values) if values else math.nan)
        offset = (i - (len(methods) - 1) / 2) * width
        axes.bar(positions + offset, heights, width, color=METHOD_COLOURS[method], label=method)
    axes.set_xticks(positions, labels, rotation=45, ha="right")
    axes.set_ylabel("AP (%)")
    axes.set_title(f"AP per label, {ratio_header(ratio)} (mean over seeds)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _figures(
    md: MarkdownRenderer, runs: Sequence[Run], output_md: Path, figures_dir: Path
) -> List[str]:
    """Draw the figures the runs have data for, at the smallest ratio that has some (the
    paper's Fig. 5 setting); return the Markdown blocks linking them."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    blocks = [md.title(2, "Figures")]

    def draw(name: str, alt: str, has_data: Callable[[Run], bool], plot: Callable) -> Any:
        ratios = [run.ratio for run in runs if run.ratio is not None and has_data(run)]
        if not ratios:
            return None
        figure = Figure(figsize=(6.4, 4.2), layout="constrained")
        plot(runs, min(ratios), figure)
        FigureCanvasAgg(figure)
        figure.savefig(figures_dir / name, dpi=120)
        target = Path(os.path.relpath(figures_dir / name, output_md.parent)).as_posix()
        blocks.append(f"![{alt}]({target})")
        return min(ratios)

    def has_curve(run: Run) -> bool:
        return run.method in CURVE_METHODS and bool(run.result.get("epochs"))

    ratio = draw(CURVE_FIGURE, "Macro mAP per epoch", has_curve, _plot_curve)
    if ratio is None:
        blocks.append(
            "No per-epoch records: train with `[training.before_update]` "
            "`spacy_dallmi.epoch_eval.v1` (the study's `curve` option) to get the learning "
            "curve."
        )
    else:
        blocks.append(
            f"Macro mAP per epoch at {ratio_header(ratio)} (the paper's Fig. 5), "
            "recorded during training for this figure only (never for model selection). Epoch "
            "e is the model after e full epochs; the last point is the model scored in the "
            "tables."
        )
    has_labels = lambda run: bool(run.metrics["cats_ap_per_type"])  # noqa: E731
    ratio = draw(LABEL_FIGURE, "AP per label", has_labels, _plot_labels)
    if ratio is not None:
        blocks.append(f"AP per label at {ratio_header(ratio)}, mean over seeds.")
    return blocks


def _setting(result: Dict[str, Any]) -> Dict[str, str]:
    """The setting a metrics file belongs to: its settings without seed and ratio."""
    settings = result.get("settings") or {}
    return {k: srsly.json_dumps(v) for k, v in settings.items() if k not in ("seed", "ratio")}


def group_by_setting(
    results: Dict[Path, Dict[str, Any]],
) -> List[Tuple[Dict[str, str], List[Path]]]:
    """Group metrics files by setting: the settings no other file's extend. A file belongs to
    every setting its own settings are part of, so one `none` or `ft_full` run serves every
    learning rate or MixUp weight of the adapted models."""
    candidates: List[Dict[str, str]] = []
    for result in results.values():
        if _setting(result) not in candidates:
            candidates.append(_setting(result))
    maximal = [
        c for c in candidates if not any(c != d and c.items() <= d.items() for d in candidates)
    ]
    return [
        (setting, [p for p, r in results.items() if _setting(r).items() <= setting.items()])
        for setting in maximal
    ]


def build_report(
    metrics_paths: Iterable[Path],
    output_md: Path,
    figures_dir: Path,
    *,
    title: str,
    group_settings: bool = False,
    root: Optional[Path] = None,
) -> None:
    """Write a Markdown report (tables, settings, figures) from metrics files; skipped runs
    are listed with their reason. ``group_settings``: one section per setting (see
    :func:`group_by_setting`), else one table. Paths are shown relative to ``root`` (default:
    the working directory). ValueError (naming the file) for no files, a missing key, an
    unknown method or two files of one method, ratio and seed."""
    paths = [Path(path) for path in metrics_paths]
    root = Path(root or Path.cwd())
    results = {}
    for path in paths:
        try:
            results[path] = srsly.read_json(path)
        except (OSError, ValueError):  # load_runs names the file
            results[path] = {}
    skipped = {path: result for path, result in results.items() if "skipped" in result}
    scored = [path for path in paths if path not in skipped]
    output_md = Path(output_md)
    output_md.parent.mkdir(parents=True, exist_ok=True)
    md = MarkdownRenderer()
    blocks = [
        md.title(1, title),
        "Cells: mean ± sample standard deviation over seeds, in percent, with the number of "
        f"seeds n; {MISSING} = no run. Scores are on the fully labelled target test split; "
        "`selected` is the model chosen on the partially labelled validation slice by the "
        "label-free score (never on test labels), `last epoch` the final model.",
    ]
    if skipped:
        reasons = sorted({result["skipped"] for result in skipped.values()})
        methods = sorted({result["method"] for result in skipped.values()})
        blocks += [
            md.title(2, "Runs without test metrics"),
            f"{len(skipped)} run(s) ({', '.join(md.code(m) for m in methods)}) have no test "
            "metrics:",
            md.list(reasons),
        ]
    if scored or not skipped:
        scored_results = {p: results[p] for p in scored}
        groups = group_by_setting(scored_results) if group_settings else [({}, scored)]
        for number, (setting, group_paths) in enumerate(groups, start=1):
            runs = load_runs(group_paths)
            group_figures = figures_dir
            if len(groups) > 1:
                shown = ", ".join(
                    f"{key}={_display(srsly.json_loads(value), root)}"
                    for key, value in setting.items()
                    if any(other.get(key) != value for other, _ in groups)
                )
                blocks += [md.title(2, f"Setting {number}"), f"Differs from the others in: {shown}"]
                group_figures = figures_dir / f"setting{number}"
            ratios = sorted({r.ratio for r in runs if r.ratio is not None}) or [None]
            seeds = sorted({srsly.json_dumps(run.seed) for run in runs})
            methods = [m for m in ALL_METHODS if any(run.method == m for run in runs)]
            blocks += [
                f"{len(runs)} runs; ratios (share of target train positives removed): "
                f"{', '.join(f'{r:g}' for r in ratios)}; seeds: {', '.join(seeds)}.",
                md.list(f"{md.code(m)}: {METHOD_DESCRIPTIONS[m]}" for m in methods),
                *_tables(md, runs, methods, ratios),
                *_figures(md, runs, output_md, group_figures),
                *_details(md, runs, root),
            ]
    for block in blocks:
        md.add(block)
    output_md.write_text(md.text + "\n", encoding="utf8")

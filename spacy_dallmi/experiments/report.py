"""Aggregate metrics files into a Markdown report shaped like the DALLMi paper's results.

:func:`build_report` turns a set of metrics files (:mod:`.runs`) into

- a Table-2-style table per metric: methods as rows, ratios as columns, the selected model
  (``model-best``, chosen on the validation slice without true labels) and the last epoch
  (``model-last``) side by side, mean ± sample standard deviation over seeds in percent, with
  the number of seeds, so a reader sees at once how many runs stand behind a number;
- per method, the difference to doing nothing (``none``, the unadapted source model) and the
  share of the partial-to-full fine-tuning gap it recovers: a method can recover more of a gap
  than another and still be below the model it started from, and only both numbers show that;
- the settings, wall times and labels left out of AP, so the numbers can be traced back;
- two PNG figures (:mod:`.figures`): macro mAP per epoch and AP per label.

With ``group_settings`` the runs are first grouped by setting (every setting but seed and
ratio), one section per setting: runs that a setting does not affect (the source model
without adaptation, the all-labels upper bound) appear in every setting they fit.

The Markdown is written with wasabi's ``MarkdownRenderer``, as spaCy's own docs generators do.
"""

import os
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import srsly
from wasabi import MarkdownRenderer

from .figures import figure_blocks
from .methods import ALL_METHODS, METHOD_DESCRIPTIONS
from .runs import (
    MIN_RECOVERY_GAP,
    MISSING,
    Run,
    format_cell,
    load_runs,
    metric_values,
    ratio_header,
    recovery,
)

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
SETTING_EXCLUDED = ("seed", "ratio")


def _display(value: Any, root: Path) -> str:
    """A setting's value as text; an absolute path is shown relative to ``root``."""
    if isinstance(value, str):
        return os.path.relpath(value, root) if os.path.isabs(value) else value
    return srsly.json_dumps(value)


def _mean(values: List[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def _gain_cells(runs: Sequence[Run], method: str, ratio: float) -> List[str]:
    """Δ none and recovery of ``method`` at ``ratio`` (mean macro mAP of the selected models)."""
    means = {
        name: _mean(metric_values(runs, name, ratio, "cats_macro_ap"))
        for name in (method, "none", "ft_partial", "ft_full")
    }
    own = means[method]
    delta = (
        MISSING if own is None or means["none"] is None else f"{100 * (own - means['none']):+.1f}"
    )
    needed = (own, means["ft_partial"], means["ft_full"])
    if method in ("ft_partial", "ft_full") or None in needed:
        return [delta, MISSING]
    return [delta, recovery(own, means["ft_partial"], means["ft_full"])]


def _metric_blocks(
    md: MarkdownRenderer,
    runs: Sequence[Run],
    methods: Sequence[str],
    ratios: Sequence[float],
    metric: Tuple[str, str, str],
) -> List[str]:
    """One metric's table: per ratio, the selected model and the last epoch side by side."""
    key, name, description = metric
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
    return [md.title(3, f"{name} ({md.code(key)})"), f"{description}.", md.table(rows, header)]


def _gain_blocks(
    md: MarkdownRenderer, runs: Sequence[Run], methods: Sequence[str], ratios: Sequence[float]
) -> List[str]:
    header = ["method"]
    for ratio in ratios:
        header += [f"{ratio_header(ratio)}: Δ none", "recovery"]
    rows = []
    for method in methods:
        if method != "none":
            cells = [cell for ratio in ratios for cell in _gain_cells(runs, method, ratio)]
            rows.append([md.code(method), *cells])
    return [md.title(3, "Against no adaptation, and recovery"), md.table(rows, header), GAINS_NOTE]


def _settings_blocks(md: MarkdownRenderer, runs: Sequence[Run], root: Path) -> List[str]:
    """Every setting with its distinct values, so mixed configurations are visible."""
    values: Dict[str, List[str]] = {}
    for run in runs:
        for key, value in run.result["settings"].items():
            shown = _display(value, root)
            if shown not in values.setdefault(key, []):
                values[key].append(shown)
    rows = [
        [md.code(key), ", ".join(md.code(v) for v in sorted(shown))]
        for key, shown in values.items()
    ]
    return [md.title(3, "Settings"), md.table(rows, ["setting", "value(s) across runs"])]


def _skipped_blocks(md: MarkdownRenderer, runs: Sequence[Run]) -> List[str]:
    """How many labels were left out of AP for having no positive in the test split."""
    counts: Dict[Tuple[str, ...], int] = {}
    for run in runs:
        skipped = tuple(run.metrics["cats_ap_skipped_labels"])
        counts[skipped] = counts.get(skipped, 0) + 1
    items = []
    for skipped, n_runs in counts.items():
        names = ", ".join(md.code(label) for label in skipped)
        listed = f": {names}" if skipped else ""
        items.append(f"{len(skipped)} label(s) left out in {n_runs} run(s){listed}")
    return [
        md.title(3, "Labels left out of AP"),
        "A label with no positive in the test split has no AP; it is left out of the AP "
        "averages (and counted as 0 in spaCy's macro ROC AUC).",
        md.list(items),
    ]


def _source_blocks(md: MarkdownRenderer, runs: Sequence[Run]) -> List[str]:
    """How each seed's source model stopped training (its dev curve's end), and the setting
    to raise where the epoch bound stopped it while it was still improving."""
    items = []
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
        items.append(line)
    if not items:
        return []
    return [md.title(3, "Source model training"), md.list(items)]


def _runs_blocks(md: MarkdownRenderer, runs: Sequence[Run], root: Path) -> List[str]:
    """One row per metrics file, with its test size and evaluation wall time."""
    ordered = sorted(
        runs,
        key=lambda r: (r.ratio or 0.0, ALL_METHODS.index(r.method), srsly.json_dumps(r.seed)),
    )
    rows = [
        [
            md.code(os.path.relpath(run.path, root)),
            md.code(run.method),
            "all" if run.ratio is None else f"{run.ratio:g}",
            srsly.json_dumps(run.seed),
            str(run.result["n_docs"]),
            MISSING
            if run.metrics["cats_macro_ap"] is None
            else f"{100 * run.metrics['cats_macro_ap']:.1f}",
            f"{float(run.result['wall_seconds']):.1f}",
        ]
        for run in ordered
    ]
    total = sum(float(run.result["wall_seconds"]) for run in runs)
    header = ["file", "method", "ratio", "seed", "test docs", "macro mAP", "eval wall s"]
    return [
        md.title(3, "Runs"),
        f"Evaluation wall time (load, predict, score): {total:.1f} s over {len(runs)} runs.",
        md.table(rows, header),
    ]


def _group_blocks(
    md: MarkdownRenderer, runs: List[Run], output_md: Path, figures_dir: Path, root: Path
) -> List[str]:
    """Tables, gains, figures and details of the runs of one setting."""
    ratios: List[Optional[float]] = sorted({r.ratio for r in runs if r.ratio is not None})
    ratios = ratios or [None]
    seeds = sorted({srsly.json_dumps(run.seed) for run in runs})
    methods = [m for m in ALL_METHODS if any(run.method == m for run in runs)]
    blocks = [
        f"{len(runs)} runs; ratios (share of target train positives removed): "
        f"{', '.join(f'{r:g}' for r in ratios)}; seeds: {', '.join(seeds)}.",
        md.list(f"{md.code(m)}: {METHOD_DESCRIPTIONS[m]}" for m in methods),
    ]
    for metric in METRICS:
        blocks.extend(_metric_blocks(md, runs, methods, ratios, metric))
        if metric[0] == "cats_macro_ap":
            blocks.extend(_gain_blocks(md, runs, methods, ratios))
    blocks.extend(figure_blocks(runs, output_md, figures_dir, md))
    blocks.extend(_skipped_blocks(md, runs))
    blocks.extend(_source_blocks(md, runs))
    blocks.extend(_settings_blocks(md, runs, root))
    blocks.extend(_runs_blocks(md, runs, root))
    return blocks


def _read(path: Path) -> Dict[str, Any]:
    """A metrics file's content; {} for a missing or broken file, which :func:`load_runs`
    then reports by name."""
    try:
        return srsly.read_json(path)
    except (OSError, ValueError):
        return {}


def _setting(result: Dict[str, Any]) -> Dict[str, str]:
    """The setting a metrics file belongs to: its settings without seed and ratio."""
    settings = result.get("settings") or {}
    return {k: srsly.json_dumps(v) for k, v in settings.items() if k not in SETTING_EXCLUDED}


def group_by_setting(
    results: Dict[Path, Dict[str, Any]],
) -> List[Tuple[Dict[str, str], List[Path]]]:
    """Group metrics files by setting. A setting is one that no other file's extends; a file
    belongs to every setting its own settings are part of, so one `none` or `ft_full` run
    serves every learning rate or MixUp weight of the adapted models."""
    candidates: List[Dict[str, str]] = []
    for result in results.values():
        setting = _setting(result)
        if setting not in candidates:
            candidates.append(setting)
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
    """Write a Markdown report (tables, settings, figures) from metrics files.

    metrics_paths: JSON files written by :func:`.evaluate.write_metrics`; files that say a
        run was skipped (e.g. no labelled target test set) are listed with their reason.
    output_md: the Markdown file to write (parent folders are created).
    figures_dir: where the PNGs go; the report links them by relative path.
    title: the report's heading.
    group_settings: one section per setting (see :func:`group_by_setting`); otherwise all files
        form one table, and two files of one method, ratio and seed are an error.
    root: file paths in the report are relative to it (default: the working directory), so a
        report never holds a machine's absolute paths.

    Raises ValueError when no file is given, a file lacks a required key or has an unknown
    method (naming the file), or two files claim the same method, ratio and seed.
    """
    paths = [Path(path) for path in metrics_paths]
    root = Path(root or Path.cwd())
    results = {path: _read(path) for path in paths}
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
            blocks.extend(_group_blocks(md, runs, output_md, group_figures, root))
    for block in blocks:
        md.add(block)
    output_md.write_text(md.text + "\n", encoding="utf8")

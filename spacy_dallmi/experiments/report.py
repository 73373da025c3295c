"""Aggregate metrics files into a Markdown report shaped like the DALLMi paper's results.

:func:`build_report` turns a set of metrics files (:mod:`.runs`) into

- a Table-2-style table per metric: methods as rows, ratios as columns, mean ± sample standard
  deviation over seeds in percent, with the number of seeds, so a reader sees at once how many
  runs stand behind a number;
- the share of the partial-to-full fine-tuning gap that DALLMi recovers, per ratio: a single
  number that says whether the adaptation helps, independent of how hard the dataset is;
- the settings, wall times and labels left out of AP, so the numbers can be traced back;
- two PNG figures (:mod:`.figures`): macro mAP per epoch and AP per label.

The Markdown is written with wasabi's ``MarkdownRenderer``, as spaCy's own docs generators do.
"""

import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import srsly
from wasabi import MarkdownRenderer

from .evaluate import METHODS
from .figures import figure_blocks
from .runs import MISSING, Run, format_cell, load_runs, metric_values, ratio_header, recovery

METHOD_DESCRIPTIONS = {
    "none": "the source model, no adaptation",
    "ft_partial": "BCE fine-tuning on the partial labels (hidden positives count as negatives)",
    "ft_full": "BCE fine-tuning on all labels (upper bound; does not depend on the ratio)",
    "dallmi": "DALLMi: variational PU loss, MixUp and label-balanced batches",
}
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
RECOVERY_NOTE = (
    "recovery = (dallmi − ft_partial) / (ft_full − ft_partial) on the mean macro mAP: the share "
    "of the gap between partial- and full-label fine-tuning that DALLMi closes (0% = no better "
    "than `ft_partial`, 100% = as good as `ft_full`)."
)
NO_GAP_NOTE = (
    "† `ft_full` does not beat `ft_partial` at this ratio, so there is no gap for DALLMi to "
    "close and the recovery is undefined."
)


def _percent(value: Optional[float]) -> str:
    return MISSING if value is None else f"{100 * float(value):.1f}"


def _display(value: Any) -> str:
    return value if isinstance(value, str) else srsly.json_dumps(value)


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


def _metric_blocks(
    md: MarkdownRenderer,
    runs: Sequence[Run],
    ratios: Sequence[float],
    metric: Tuple[str, str, str],
) -> List[str]:
    """A Table-2-style table of one metric; for macro mAP with the recovery row and its note."""
    key, name, description = metric
    header = ["method", *(ratio_header(ratio) for ratio in ratios)]
    rows = [
        [f"`{method}`", *(format_cell(metric_values(runs, method, r, key)) for r in ratios)]
        for method in METHODS
    ]
    notes = []
    if key == "cats_macro_ap":
        recovery_cells, undefined = _recovery_row(runs, ratios)
        rows.append(recovery_cells)
        notes = [RECOVERY_NOTE, NO_GAP_NOTE] if undefined else [RECOVERY_NOTE]
    title = md.title(2, f"{name} ({md.code(key)})")
    return [title, f"{description}.", md.table(rows, header), *notes]


def _settings_blocks(md: MarkdownRenderer, runs: Sequence[Run]) -> List[str]:
    """Every setting with its distinct values, so mixed configurations are visible."""
    values: Dict[str, List[str]] = {}
    for run in runs:
        for key, value in run.result["settings"].items():
            shown = _display(value)
            if shown not in values.setdefault(key, []):
                values[key].append(shown)
    rows = [
        [md.code(key), ", ".join(md.code(v) for v in sorted(shown))]
        for key, shown in values.items()
    ]
    return [md.title(2, "Settings"), md.table(rows, ["setting", "value(s) across runs"])]


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
        md.title(2, "Labels left out of AP"),
        "A label with no positive in the test split has no AP; it is left out of the AP "
        "averages (and counted as 0 in spaCy's macro ROC AUC).",
        md.list(items),
    ]


def _runs_blocks(md: MarkdownRenderer, runs: Sequence[Run]) -> List[str]:
    """One row per metrics file, with its test size and evaluation wall time."""
    ordered = sorted(runs, key=lambda r: (r.ratio, METHODS.index(r.method), _display(r.seed)))
    rows = [
        [
            md.code(str(run.path)),
            md.code(run.method),
            f"{run.ratio:g}",
            _display(run.seed),
            str(run.result["n_docs"]),
            _percent(run.metrics["cats_macro_ap"]),
            f"{float(run.result['wall_seconds']):.1f}",
        ]
        for run in ordered
    ]
    total = sum(float(run.result["wall_seconds"]) for run in runs)
    header = ["file", "method", "ratio", "seed", "test docs", "macro mAP", "eval wall s"]
    return [
        md.title(2, "Runs"),
        f"Evaluation wall time (load, predict, score): {total:.1f} s over {len(runs)} runs.",
        md.table(rows, header),
    ]


def build_report(
    metrics_paths: Iterable[Path], output_md: Path, figures_dir: Path, *, title: str
) -> None:
    """Write a Markdown report (tables, settings, figures) from metrics files.

    metrics_paths: JSON files written by :func:`.evaluate.write_metrics`.
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
    md = MarkdownRenderer()
    blocks = [
        md.title(1, title),
        f"{len(runs)} runs; ratios (share of target train positives removed): "
        f"{', '.join(f'{r:g}' for r in ratios)}; seeds: {', '.join(seeds)}.",
        "Cells: mean ± sample standard deviation over seeds, in percent, with the number of "
        f"seeds n; {MISSING} = no run. Scores are on the fully labelled target test split.",
        md.list(f"{md.code(m)}: {text}" for m, text in METHOD_DESCRIPTIONS.items()),
    ]
    for metric in MAIN_METRICS + OTHER_METRICS:
        blocks.extend(_metric_blocks(md, runs, ratios, metric))
    blocks.extend(figure_blocks(runs, output_md, figures_dir, md))
    blocks.extend(_skipped_blocks(md, runs))
    blocks.extend(_settings_blocks(md, runs))
    blocks.extend(_runs_blocks(md, runs))
    for block in blocks:
        md.add(block)
    output_md.write_text(md.text + "\n", encoding="utf8")

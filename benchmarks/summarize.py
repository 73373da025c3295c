"""Tables, figure and ``summary.json`` from the paired runs' result files.

Reads only ``results/paired_<dataset>/*.json`` (so it can run while runs go on); for the default
``--results`` it also rewrites the overview section of ``benchmarks/README.md``.
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
from environment import REPO_ROOT, RESULTS, table
from paired import GUARDED, before_added, summarise_records
from spacy.util import load_config
from splits import ratio_name
from stats import ci_text, mean_std, paired_difference

from spacy_dallmi.experiments.methods import BENCHMARK_METHODS, registered
from spacy_dallmi.experiments.report import MIN_RECOVERY_GAP, recovery
from spacy_dallmi.settings import DallmiSettings

BASELINE = "ft_partial"
MODELS = {
    "last": "last epoch",
    "pu_score": "selected by PU score",
    "partial_ap": "selected by partial AP",
    "shipped_pu_score": "shipped by PU score (source, blends, [weight averages,] best epoch)",
    "shipped_partial_ap": "shipped by partial AP (source, blends, [weight averages,] best epoch)",
    "shipped_pu_score_c90": "shipped by PU score, beating the source on 90% of resamples",
    "shipped_partial_ap_guarded": "shipped by partial AP among the candidates whose PU score "
    "is at least the source's",
    "ceiling": "best on test among the source, every epoch, the blends and any weight averages "
    "(no selection rule can ship more)",
}
#: The product's selection score, as configs/adapt.cfg and finetune.cfg weight it.
CRITERION_OF_WEIGHT = {"cats_pu_score": "pu_score", "cats_macro_ap": "partial_ap"}
EXTRA_METRICS = {
    "macro_f": "macro F1 at 0.5",
    "macro_f_thresholds": "macro F1 at per-label thresholds (val, partial labels)",
    "macro_f_full_thresholds": "macro F1 at per-label thresholds (val, full labels; oracle)",
    "ece": "ECE (15 bins)",
    "macro_ap_rounded": "paper's rounded-prediction AP",
}
CURVE_METHODS = registered(("ft_partial", "dallmi"))
#: The section of benchmarks/README.md that ``overview`` rewrites.
OVERVIEW_START = "<!-- paired overview: written by summarize.py -->"
OVERVIEW_END = "<!-- end of paired overview -->"
#: Test metrics with one value per ratio (thresholds fitted on that ratio's partial labels).
PER_RATIO = ("macro_f_thresholds",)
#: Settings of the supervised objective that a ``bce`` run does not use.
DALLMI_ONLY = ("loss_form", "positive_term", "mixup")

Run = Dict[str, Any]
Runs = Dict[Tuple[str, int], Run]  # (method, seed) -> run, per ratio


def load_dataset_runs(folder: Path) -> Dict[str, Runs]:
    """Runs by ratio name; a ratio-independent run (``ratio`` None) counts at every ratio."""
    per_ratio: Dict[str, Runs] = defaultdict(dict)
    shared: List[Run] = []
    for path in sorted(folder.glob("*.json")):
        run = srsly.read_json(path)
        # selections are recomputed from the recorded candidates, so a criterion added after a
        # run was made counts for it too
        run.update(
            summarise_records(
                run["epochs"], list(run["selected"]), run.get("blends", ()), run.get("averages", ())
            )
        )
        if run["ratio"] is None:
            shared.append(run)
        else:
            per_ratio[ratio_name(run["ratio"])][(run["method"], run["seed"])] = run
    for runs in per_ratio.values():
        runs.update({(run["method"], run["seed"]): run for run in shared})
    fill_later_settings([*shared, *(run for runs in per_ratio.values() for run in runs.values())])
    return dict(sorted(per_ratio.items()))


def fill_later_settings(runs: List[Run]) -> None:
    """Give a run made before a setting existed the value it trained with: the default, or
    :func:`paired.before_added`'s where the setting changed what trains."""
    rank = {k: i for i, k in enumerate(DallmiSettings().to_dict())}
    keys: Dict[str, set] = defaultdict(set)
    for run in runs:
        keys[run["method"]].update((run.get("protocol", {}).get("settings") or {}).keys())
    for run in runs:
        settings = run.get("protocol", {}).get("settings")
        if settings is not None:
            defaults = {**DallmiSettings().to_dict(), **before_added(settings)}
            filled = {**{k: defaults[k] for k in keys[run["method"]] if k in defaults}, **settings}
            # one order (the settings' own, then the rest as recorded), so equal runs read alike
            order = sorted(filled, key=lambda k: rank.get(k, len(rank)))
            run["protocol"]["settings"] = {k: filled[k] for k in order}


def seeds_of(runs: Runs, method: str) -> List[int]:
    return sorted(seed for m, seed in runs if m == method)


def scores(runs: Runs, rname: str, method: str, model: str, metric="macro_ap") -> Dict[int, float]:
    """By seed, test ``metric`` in points of ``model`` (``last``, ``<criterion>``,
    ``shipped_<criterion>`` or ``ceiling``, the candidate best on test macro AP); runs made
    before the metric or criterion existed are left out."""
    found = {}
    for seed in seeds_of(runs, method):
        run = runs[(method, seed)]
        if model == "last" or method == "none":  # the source is all that none ships
            test = run["last"]
        elif model == "ceiling":  # an analysis of the selection: it reads the test scores
            made = run["epochs"] + run.get("blends", []) + run.get("averages", [])
            candidates = [r["test"] for r in made]
            test = max(candidates, key=lambda t: t["macro_ap"])
        elif model.startswith("shipped_"):  # runs without blends (ft_full, aad) ship the pick
            test = run.get("shipped", run["selected"])[rname].get(model[8:], {}).get("test")
        else:
            test = run["selected"][rname].get(model, {}).get("test")
        if test is not None and metric in run["last"]:
            found[seed] = 100.0 * (test[metric][rname] if metric in PER_RATIO else test[metric])
    return found


def versus(mine: Dict[int, float], other: Dict[int, float]):
    """The paired difference ``mine − other`` over the seeds both have; None without one."""
    common = [seed for seed in mine if seed in other]
    if common:
        return paired_difference([mine[s] for s in common], [other[s] for s in common])
    return None


def cell(runs: Runs, rname: str, method: str, model: str, metric="macro_ap") -> Optional[Dict]:
    """Mean and std, and paired differences to the baseline and ``none`` (same ``model``)."""
    mine = scores(runs, rname, method, model, metric)
    if not mine:
        return None
    mean, std = mean_std(list(mine.values()))
    paired = {m: versus(mine, scores(runs, rname, m, model, metric)) for m in (BASELINE, "none")}
    return {"n": len(mine), "mean": mean, "std": std, "versus": paired}


def source_models(per_ratio: Dict[str, Runs]) -> Dict[int, Dict[str, Any]]:
    return {seed: run["source_training"] for runs in per_ratio.values()
            for (method, seed), run in runs.items()
            if method == "none" and "curve" in run.get("source_training", {})}  # fmt: skip


def source_text(per_ratio: Dict[str, Runs]) -> str:
    sources = source_models(per_ratio)
    if not sources:
        return "source models: no dev curve recorded"
    mean, std = mean_std([100 * info["best_score"] for info in sources.values()])
    spread = "" if std is None else f" ± {std:.1f}"
    stops = ", ".join(f"s{seed}: {info['stop_epoch']}" for seed, info in sorted(sources.items()))
    bound = sum(info["reason"] == "upper_bound" for info in sources.values())
    any_info = next(iter(sources.values()))
    return (
        f"source models: dev macro AP {mean:.1f}{spread} at their best epoch "
        f"({len(sources)} seeds); stopped at epoch {stops} (patience {any_info['patience']}, "
        f"at most {any_info['epochs']}); {bound} stopped by the bound while still improving"
    )


def product_criterion() -> str:
    """What ``adapt`` ships by: ``configs/adapt.cfg``'s score and the default guard."""
    config = load_config(REPO_ROOT / "configs" / "adapt.cfg", interpolate=False)
    (name,) = [key for key, weight in config["training"]["score_weights"].items() if weight]
    guard = DallmiSettings().selection_guard
    if not guard:
        return CRITERION_OF_WEIGHT[name]
    spec = (CRITERION_OF_WEIGHT[name], CRITERION_OF_WEIGHT[guard])
    (criterion,) = [c for c, guarded in GUARDED.items() if guarded == spec]
    return criterion


def summary_records(dataset: str, per_ratio: Dict[str, Runs]) -> List[Dict[str, Any]]:
    """Per ratio and method, the last epoch and the shipped model, paired with the baseline."""
    source_dev = [info["best_score"] for info in source_models(per_ratio).values()]
    source_dev_mean = round(100 * sum(source_dev) / len(source_dev), 4) if source_dev else None
    shipped = f"shipped_{product_criterion()}"
    records = []
    for rname, runs in per_ratio.items():
        for selection, model in (("last", "last"), ("shipped", shipped)):
            for method in BENCHMARK_METHODS:
                found = cell(runs, rname, method, model)
                if found is None:
                    continue
                record = {"dataset": dataset, "ratio": int(rname[1:]) / 100, "method": method,
                          "selection": selection, "model": model, "baseline": BASELINE,
                          "n_seeds": found["n"], "mean": round(found["mean"], 4)}  # fmt: skip
                for key in ("mean_diff", "ci_low", "ci_high", "p_wilcoxon"):
                    value = getattr(found["versus"][BASELINE], key, None)
                    record[key] = None if value is None else round(value, 4)
                records.append({**record, "source_dev_macro_ap": source_dev_mean})
    return records


def fmt_mean(found: Optional[Dict[str, Any]]) -> str:
    if found is None:
        return "–"
    spread = "" if found["std"] is None else f" ± {found['std']:.1f}"
    return f"{found['mean']:.1f}{spread} (n={found['n']})"


def fmt_diff(found: Optional[Dict], method: str, to: str = BASELINE, p_value: bool = True) -> str:
    if found is None or method == to or found["versus"][to] is None:
        return "–"
    diff = found["versus"][to]
    p = "" if diff.p_wilcoxon is None or not p_value else f", p={diff.p_wilcoxon:.3f}"
    return f"{diff.mean_diff:+.1f}{ci_text(diff.ci_low, diff.ci_high)}{p}"


def mixed_settings(runs: Runs, method: str) -> bool:
    """Whether a method's seeds trained with different settings: a mean of no configuration."""
    specs = set()
    for seed in seeds_of(runs, method):
        protocol = dict(runs[(method, seed)]["protocol"])
        # the component's seed follows the run's seed by design; it is not a setting change
        settings = protocol.get("settings") or {}
        protocol["settings"] = {k: v for k, v in settings.items() if k != "seed"}
        specs.add(srsly.json_dumps(protocol))
    return len(specs) > 1


def ratio_section(runs: Runs, rname: str) -> List[str]:
    methods = [m for m in BENCHMARK_METHODS if seeds_of(runs, m)]
    lines = [f"## {int(rname[1:])}% of target positives removed", ""]
    mixed = [m for m in methods if mixed_settings(runs, m)]
    if mixed:
        lines += [f"**Warning: seeds trained with different settings: {mixed}.**", ""]
    ends = [cell(runs, rname, m, "last") for m in (BASELINE, "ft_full")]
    rows = []
    for m in methods:
        found = cell(runs, rname, m, "last")
        vs_none = found["versus"]["none"]
        vs_none = "–" if m == "none" or vs_none is None else f"{vs_none.mean_diff:+.1f}"
        recovered = "–"
        if None not in ends and m not in (BASELINE, "ft_full"):
            recovered = recovery(found["mean"], *(e["mean"] for e in ends), points=1, decimals=0)
        rows.append([f"`{m}`", fmt_mean(found), fmt_diff(found, m), vs_none, recovered])
    header = ["method", "macro AP, last epoch", "− ft_partial [95% CI], Wilcoxon p", "− none",
              "recovery"]  # fmt: skip
    lines += table(header, rows)
    lines += ["Last epoch beside the epoch chosen on the validation slice (partial labels only; "
              "the source model is a candidate):", ""]  # fmt: skip
    rows = []
    for m in methods:
        found = [cell(runs, rname, m, model) for model in MODELS]
        rows.append([f"`{m}`", *(f"{fmt_mean(f)}<br>{fmt_diff(f, m)}" for f in found)])
    lines += table(["method", *MODELS.values()], rows)
    rows = [
        [f"`{m}`", *(fmt_mean(cell(runs, rname, m, "last", k)) for k in EXTRA_METRICS)]
        for m in methods
    ]
    lines += ["Other metrics, last epoch (points):", ""]
    lines += table(["method", *EXTRA_METRICS.values()], rows)
    return lines + shipped_section(runs, rname, methods)


def shipped_section(runs: Runs, rname: str, methods: List[str]) -> List[str]:
    """Shipped models against what a user gets for free: the better of ``none`` and the
    baseline (B), and the share of the gap from B to ``ft_full`` each method recovers."""
    model = f"shipped_{product_criterion()}"
    means = {m: cell(runs, rname, m, model) for m in ("none", BASELINE, "ft_full")}
    if any(found is None for found in means.values()):
        return []
    free = max(("none", BASELINE), key=lambda m: means[m]["mean"])
    gap = (means[free]["mean"], means["ft_full"]["mean"])
    rows = []
    for m in methods:
        found = cell(runs, rname, m, model)
        vs = [fmt_diff(found, m, to, p_value=False) for to in ("none", BASELINE)]
        rows.append(
            [f"`{m}`", fmt_mean(found), *vs, recovery(found["mean"], *gap, points=1, decimals=0)]
        )
    header = ["method", f"macro AP, `{model}`", "− none [95% CI]", "− ft_partial [95% CI]",
              f"recovery of B = `{free}` → `ft_full`"]  # fmt: skip
    return [f"Shipped models (`{model}`, as `adapt` ships: the source, its blends with the last "
            "epoch and the best epoch, by the product's selection rule; the SWA screens add "
            "their weight averages):", "",
            *table(header, rows)]  # fmt: skip


def plot_curves(per_ratio: Dict[str, Runs], path: Path) -> bool:
    """Mean test macro AP per epoch, one panel per ratio; False without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r, runs in per_ratio.items() if any(seeds_of(runs, m) for m in CURVE_METHODS)]
    if not panels:
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for axis, rname in zip(axes[0], panels):
        runs = per_ratio[rname]
        for method in CURVE_METHODS:
            curves = [[100 * r["test"]["macro_ap"] for r in runs[(method, s)]["epochs"]]
                      for s in seeds_of(runs, method)]  # fmt: skip
            if curves:
                length = min(len(c) for c in curves)
                mean = [sum(c[e] for c in curves) / len(curves) for e in range(length)]
                axis.plot(range(length), mean, marker="o", label=f"{method} (n={len(curves)})")
        for method, style in (("ft_full", ":"), ("none", "--")):
            found = cell(runs, rname, method, "last")
            if found:
                axis.axhline(found["mean"], linestyle=style, color="grey", label=method)
        axis.set(title=f"{int(rname[1:])}% removed", xlabel="epoch (0 = source model)",
                 ylabel="test macro AP")  # fmt: skip
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def settings_text(run: Run) -> str:
    if run["method"] == "none":
        source = run["source_training"]
        return (
            f"source model (`source.cfg`, at most {run['protocol']['source_epochs']} epochs, "
            f"patience {source['patience']}, model-best, lr {source['learn_rate']:g}), no "
            "adaptation"
        )
    settings = {k: v for k, v in run["protocol"]["settings"].items() if k != "seed"}
    if settings.get("objective") == "bce":
        settings = {k: v for k, v in settings.items() if not k.startswith(DALLMI_ONLY)}
    tuned = run["protocol"].get("tuned_from")
    return values_text(settings) + (f" (learning rate from `{tuned}`)" if tuned else "")


def values_text(values: Dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()
    )


def settings_section(per_ratio: Dict[str, Runs]) -> List[str]:
    texts: Dict[str, Dict[str, None]] = defaultdict(dict)  # in order, once each
    for runs in per_ratio.values():
        for (method, _), run in sorted(runs.items(), key=lambda item: item[0][1]):
            texts[method][settings_text(run)] = None
    rows = [
        [f"`{m}`", ("" if len(texts[m]) == 1 else "**differs between runs:** ")
         + "<br>".join(texts[m])]
        for m in BENCHMARK_METHODS
        if m in texts
    ]  # fmt: skip
    return ["## Settings of each method", "", *table(["method", "settings"], rows)]


def render(dataset: str, per_ratio: Dict[str, Runs], curve: Optional[str]) -> str:
    any_run = next(run for runs in per_ratio.values() for run in runs.values())
    spec = any_run["protocol"]
    walls: Dict[str, List[float]] = defaultdict(list)
    for run in {run["key"]: run for runs in per_ratio.values() for run in runs.values()}.values():
        walls[run["method"]].append(run["wall_seconds"])
    lines = [
        f"# Paired protocol on `{dataset}`",
        "",
        f"- {spec['epochs']} epochs (linear decay to 0, clip 1.0), batch {spec['batch_size']}, "
        f"max length {spec['max_length']}, backbone {spec['backbone']}, source model "
        f"at most {spec['source_epochs']} epochs, early-stopped on its dev macro AP; caps "
        f"{spec['sizes']}",
        f"- {source_text(per_ratio)}",
        f"- docs: {any_run['docs']}; machine: {any_run['machine']['cpu_model']}, torch threads "
        f"{any_run['machine']['torch_threads']}",
        "- every method of a seed starts from one source model with the same splits and hidden "
        "labels; `none`, `ft_full`, `aad` read no partial labels and count at every ratio",
        "- macro AP on probabilities, in points, on the fully labelled target test split; "
        "paired differences over the seeds both methods have (95% paired-t CI, Wilcoxon "
        "signed-rank p; with 5 seeds p cannot go below 0.0625); recovery = (m − ft_partial) / "
        f"(ft_full − ft_partial), printed where that gap is ≥ {MIN_RECOVERY_GAP:g} points",
        "- mean wall time per run (min): "
        + ", ".join(f"`{m}` {sum(v) / len(v) / 60:.1f}" for m, v in walls.items()),
        "",
    ]
    for rname, runs in per_ratio.items():
        lines += ratio_section(runs, rname)
    lines += settings_section(per_ratio)
    if curve:
        lines += ["## Test macro AP per epoch", "", f"![per-epoch curve]({curve})", ""]
    return "\n".join(lines)


def render_tuned(tuned: Dict[str, Any]) -> str:
    lines = [
        f"# Tune grid on `{tuned['dataset']}` (seed {tuned['seed']}, "
        f"{100 * tuned['ratio']:g}% removed)",
        "",
        f"Each point's epoch is chosen on the validation slice by each criterion; the grid "
        f"choice is the best `{tuned['criterion']}`. Test macro AP (points) is shown for the "
        "analysis only; no choice reads it.",
        "",
    ]
    rows = []
    for point in tuned["points"]:
        scores = point["scores"]
        row = [f"`{point['name']}`"]
        for criterion in ("pu_score", "partial_ap"):
            chosen = scores[criterion]
            row += [f"{chosen['val']:.4f} (ep {chosen['epoch']})",
                    f"{100 * chosen['test_macro_ap']:.1f}"]  # fmt: skip
        rows.append(row + [f"{100 * scores['last_test_macro_ap']:.1f}"])
    header = ["point", "val PU score", "test AP", "val partial AP", "test AP", "test AP, last"]
    lines += [*table(header, rows), "Chosen:", ""]
    lines += [f"- `{method}`: {values_text(values)}" for method, values in tuned["chosen"].items()]
    lines += ["", "Spearman correlation of each criterion with the test AP over grid points:", ""]
    rows = [
        [group, *("–" if v is None else f"{v:+.2f}" for v in rhos.values())]
        for group, rhos in tuned["spearman_with_test_ap"].items()
    ]
    lines += table(["points", "PU score", "partial AP"], rows)
    return "\n".join(lines)


def overview(records: List[Dict[str, Any]]) -> str:
    """Per dataset and selection, methods × ratios: mean and difference to the baseline."""
    lines: List[str] = []
    for dataset in sorted({r["dataset"] for r in records}):
        mine = [r for r in records if r["dataset"] == dataset]
        ratios = sorted({r["ratio"] for r in mine})
        source = mine[0]["source_dev_macro_ap"]
        source = "not recorded" if source is None else f"{source:.1f}"
        for selection in ("shipped", "last"):
            chosen = [r for r in mine if r["selection"] == selection]
            if not chosen:
                continue
            what = f"shipped (`{chosen[0]['model']}`)" if selection == "shipped" else "last epoch"
            lines += [f"**{dataset}**, macro AP (points), {what}: mean (seeds) and paired "
                      "difference to `ft_partial` [95% CI]; the source models' dev macro AP "
                      f"at their best epoch: {source}", ""]  # fmt: skip
            cells = {(r["method"], r["ratio"]): overview_cell(r) for r in chosen}
            rows = [
                [f"`{method}`", *(cells.get((method, ratio), "–") for ratio in ratios)]
                for method in BENCHMARK_METHODS
                if any((method, ratio) in cells for ratio in ratios)
            ]
            lines += table(["method", *(f"{100 * r:g}% removed" for r in ratios)], rows)
    return "\n".join(lines)


def overview_cell(record: Dict[str, Any]) -> str:
    text = f"{record['mean']:.1f} ({record['n_seeds']})"
    if record["method"] == BASELINE or record["mean_diff"] is None:
        return text
    return f"{text}<br>{record['mean_diff']:+.1f}{ci_text(record['ci_low'], record['ci_high'])}"


def replace_marked(path: Path, content: str) -> bool:
    text = path.read_text(encoding="utf8")
    if OVERVIEW_START not in text or OVERVIEW_END not in text:
        return False
    head, rest = text.split(OVERVIEW_START, 1)
    tail = rest.split(OVERVIEW_END, 1)[1]
    path.write_text(f"{head}{OVERVIEW_START}\n{content}\n{OVERVIEW_END}{tail}", encoding="utf8")
    return True


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    records: List[Dict[str, Any]] = []
    for folder in sorted(args.results.glob("paired_*")):
        if not folder.is_dir() or folder.name.endswith("_quick"):
            continue
        dataset = folder.name[len("paired_") :]
        per_ratio = load_dataset_runs(folder)
        if not per_ratio:
            continue
        records += summary_records(dataset, per_ratio)
        curve = f"paired_{dataset}_curve.png"
        drawn = plot_curves(per_ratio, args.results / curve)
        markdown = render(dataset, per_ratio, curve if drawn else None)
        (args.results / f"paired_{dataset}.md").write_text(markdown + "\n", encoding="utf8")
        print(markdown)
    srsly.write_json(args.results / "summary.json", records)
    readme = REPO_ROOT / "benchmarks" / "README.md"
    if args.results == RESULTS and not replace_marked(readme, overview(records)):
        raise SystemExit(f"{readme} lacks the lines {OVERVIEW_START} and {OVERVIEW_END}")
    for path in sorted(args.results.glob("tuned_*.json")):
        markdown = render_tuned(srsly.read_json(path))
        path.with_suffix(".md").write_text(markdown + "\n", encoding="utf8")


if __name__ == "__main__":
    main(sys.argv[1:])

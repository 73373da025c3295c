"""The ``tune`` grid (issue 8, item 5): one seed, one ratio, chosen on the validation slice.

Grid, every point with the protocol's epochs, batch size and schedule (so each baseline gets
the same budget as DALLMi):

- ``dallmi``, searched one coordinate at a time, each stage from the best point so far: the
  learning rate {3e-5, 1e-4, 3e-4} at the default λ; then the MixUp weight λ {0, 0.03, 0.1};
  then λ warm-up on (one epoch of steps; skipped at λ = 0); then the log loss form. Seven
  points (six when λ = 0 wins) instead of the 15 of the full product that the project's
  ``tune`` workflow runs, which at 6–20 CPU-minutes a point would not fit this machine's
  budget of about a CPU-hour per dataset. The final choice is made over every point,
  the log form's included, by :func:`write_tuned`;
- ``ft_partial``, ``an_ls``, ``wan``: the same three learning rates.

A grid point's score is the best validation score over its epochs (the selection it would get
in use); the choice is the point with the best PU score. Nothing in the choice reads a test
label. The test macro AP of every point is recorded all the same, for one analysis only:
which label-free criterion (PU score, or AP against the partial labels) ranks the grid points
like the true test AP does (Spearman, within each method and over all points).

Writes ``results/tune_<dataset>/<point>.json`` (one per grid point, resumable like the paired
runs) and ``results/tuned_<dataset>.json`` (the chosen values, read by ``paired.py``). Takes
``paired.py``'s options; the first of ``--seeds`` and of ``--ratios`` is used.

    python benchmarks/tune.py --dataset emotions --seeds 0 --ratios 0.7
"""

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import srsly
import torch
from paired import (
    CONFIGS,
    CRITERIA,
    METHODS,
    Method,
    Protocol,
    parse_args,
    run_method,
)
from scipy import stats as scipy_stats
from splits import ratio_name

from spacy_dallmi.experiments.methods import TUNED_METHODS
from spacy_dallmi.settings import DallmiSettings
from spacy_dallmi.training import batches_per_epoch

LEARN_RATES = (3e-5, 1e-4, 3e-4)
LAMBDAS = (0.0, 0.03, 0.1)
#: The baselines whose learning rate the grid chooses (``paired.py`` reads it back for them).
BASELINES = tuple(name for name, method in METHODS.items() if method.tuned)
CHOICE = "pu_score"
STAGED = ("mixup_lambda", "mixup_warmup_steps")  # the DALLMi settings the search varies


def point_name(method: str, lr: float, extra: Dict[str, Any]) -> str:
    parts = [method, f"lr{lr:g}"] + [f"{k}{v}" for k, v in sorted(extra.items())]
    return "_".join(parts)


def score_point(run: Dict[str, Any], rname: str) -> Dict[str, Any]:
    """Per criterion: the selected epoch's validation score and its test macro AP; plus the
    last epoch's, for the same analysis without selection."""
    scores: Dict[str, Any] = {}
    trained = run["epochs"][1:]  # epoch 0 (the source model) is the same at every point
    for criterion in CRITERIA:
        best = max(trained, key=lambda r: (r["val"][rname][criterion], -r["epoch"]))
        scores[criterion] = {
            "epoch": best["epoch"],
            "val": best["val"][rname][criterion],
            "test_macro_ap": best["test"]["macro_ap"],
            "last_val": trained[-1]["val"][rname][criterion],
        }
    scores["last_test_macro_ap"] = run["last"]["macro_ap"]
    return scores


def spearman(points: List[Dict[str, Any]], criterion: str, last: bool = False) -> Optional[float]:
    """Rank correlation of a criterion with the true test AP over grid points; None when
    undefined (fewer than 3 points, or a criterion that does not vary)."""
    if len(points) < 3:
        return None
    key = "last_val" if last else "val"
    values = [p["scores"][criterion][key] for p in points]
    truth = [
        p["scores"]["last_test_macro_ap"] if last else p["scores"][criterion]["test_macro_ap"]
        for p in points
    ]
    rho = float(scipy_stats.spearmanr(values, truth).statistic)
    return None if math.isnan(rho) else rho  # NaN: a constant column has no ranking


def search_dallmi(run_point: Callable[..., Dict[str, Any]], one_epoch: int) -> None:
    """The coordinate search over DALLMi's settings (see the module docstring)."""

    def best(points: List[Dict[str, Any]]) -> Dict[str, Any]:
        return max(points, key=lambda p: p["scores"][CHOICE]["val"])

    def settings(point: Dict[str, Any], **changes: Any) -> Dict[str, Any]:
        return {**{k: point[k] for k in STAGED}, **changes}

    start = {"mixup_lambda": DallmiSettings().mixup_lambda, "mixup_warmup_steps": 0}
    chosen = best([run_point("dallmi", lr, start) for lr in LEARN_RATES])
    lr = chosen["learn_rate"]
    others = [lam for lam in LAMBDAS if lam != chosen["mixup_lambda"]]
    lambdas = [run_point("dallmi", lr, settings(chosen, mixup_lambda=lam)) for lam in others]
    chosen = best([chosen, *lambdas])
    if chosen["mixup_lambda"] > 0:
        warm = run_point("dallmi", lr, settings(chosen, mixup_warmup_steps=one_epoch))
        chosen = best([chosen, warm])
    run_point("dallmi", lr, {**settings(chosen), "loss_form": "log"})


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    ratio = float(args.ratios.split(",")[0])
    seed = int(args.seeds.split(",")[0])
    rname = ratio_name(ratio)
    torch.set_num_threads(args.threads)
    protocol = Protocol(args)
    protocol.tuned = {}  # the grid runs every point as given, never a tuned value
    folder = args.results.parent / args.results.name.replace("paired_", "tune_")
    methods = [m for m in args.methods.split(",") if m in TUNED_METHODS]
    start = time.perf_counter()
    corpora, source = protocol.setup_seed(seed)
    points: List[Dict[str, Any]] = []

    def run_point(method: str, lr: float, extra: Dict[str, Any]) -> Dict[str, Any]:
        base = METHODS[method]
        variant = Method(base.config, base.labels, {**base.settings, **extra})
        name = point_name(method, lr, extra)
        path = folder / f"s{seed}_{rname}_{name}.json"
        run = run_method(protocol, path, method, variant, lr, seed, ratio, corpora, source)
        point = {"method": method, "name": name, "learn_rate": lr, **extra}
        point["scores"] = score_point(run, rname)
        points.append(point)
        return point

    if "dallmi" in methods:
        overrides = protocol.method_overrides(METHODS["dallmi"], seed, ratio, corpora)
        one_epoch = batches_per_epoch(str(CONFIGS / METHODS["dallmi"].config), overrides)
        search_dallmi(run_point, one_epoch)
    for method in methods:
        if method in BASELINES:
            for lr in LEARN_RATES:
                run_point(method, lr, {})
    output = folder.parent / f"{folder.name.replace('tune_', 'tuned_')}.json"
    write_tuned(output, args.dataset, seed, ratio, points, time.perf_counter() - start)


def write_tuned(
    output: Path,
    dataset: str,
    seed: int,
    ratio: float,
    points: List[Dict[str, Any]],
    seconds: float,
) -> None:
    """The chosen values per method, every point's scores and the criterion analysis."""
    chosen: Dict[str, Any] = {}
    by_criterion: Dict[str, Any] = {}
    correlations: Dict[str, Any] = {}
    for method in sorted({p["method"] for p in points}):
        mine = [p for p in points if p["method"] == method]
        best = {c: max(mine, key=lambda p, c=c: p["scores"][c]["val"]) for c in CRITERIA}
        chosen[method] = {k: v for k, v in best[CHOICE].items() if k not in ("method", "scores")}
        by_criterion[method] = {
            c: {"name": best[c]["name"], "test_macro_ap": best[c]["scores"][c]["test_macro_ap"]}
            for c in CRITERIA
        }
        correlations[method] = {c: spearman(mine, c) for c in CRITERIA}
    correlations["all"] = {c: spearman(points, c) for c in CRITERIA}
    correlations["all_last_epoch"] = {c: spearman(points, c, last=True) for c in CRITERIA}
    payload = {
        "dataset": dataset,
        "seed": seed,
        "ratio": ratio,
        "criterion": CHOICE,
        "chosen": chosen,
        "chosen_by_each_criterion": by_criterion,
        "spearman_with_test_ap": correlations,
        "points": points,
        "wall_seconds": seconds,
    }
    srsly.write_json(output, payload)
    print(srsly.json_dumps({"chosen": chosen, "spearman": correlations}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])

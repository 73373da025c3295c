"""The ``tune`` grid (issue 8, item 5): one seed and ratio, chosen on the validation slice.

Every point is a paired cell (:meth:`paired.Protocol.run`). ``ft_partial``, ``an_ls`` and
``wan`` try :data:`LEARN_RATES`; ``dallmi`` is searched one setting at a time from the best
point so far (:func:`search_dallmi`, 7 points instead of the project ``tune`` workflow's 15, to
fit about a CPU-hour per dataset). The choice is the best validation PU score over a point's
epochs and reads no test label; the test AP is kept only to ask which label-free criterion
ranks the points like it (Spearman). Writes ``results/tune_<dataset>/<point>.json`` and
``results/tuned_<dataset>.json`` (read by ``paired.py``); the first of ``--seeds`` and
``--ratios`` is used.

    python benchmarks/tune.py --dataset emotions --seeds 0 --ratios 0.7
"""

import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import srsly
from paired import ADAPT, CONFIGS, CRITERIA, METHODS, Method, Protocol, beside, parse_args, select
from scipy import stats as scipy_stats
from splits import ratio_name

from spacy_dallmi.experiments.methods import TUNED_METHODS
from spacy_dallmi.settings import DallmiSettings
from spacy_dallmi.training import batches_per_epoch

LEARN_RATES = (3e-5, 1e-4, 3e-4)
LAMBDAS = (0.0, 0.03, 0.1)
CHOICE = "pu_score"
STAGED = ("mixup_lambda", "mixup_warmup_steps")  # the DALLMi settings the search varies


def score_point(run: Dict[str, Any], rname: str) -> Dict[str, Any]:
    """Per criterion: the best trained epoch's validation score and its test macro AP, and the
    last epoch's validation score; plus the last epoch's test macro AP."""
    scores: Dict[str, Any] = {}
    trained = run["epochs"][1:]  # epoch 0 (the source model) is the same at every point
    for criterion in CRITERIA:
        best = select(trained, rname, criterion)  # the earliest of equal scores
        scores[criterion] = {"epoch": best["epoch"], "val": best["val"],
                             "test_macro_ap": best["test"]["macro_ap"],
                             "last_val": trained[-1]["val"][rname][criterion]}  # fmt: skip
    scores["last_test_macro_ap"] = run["last"]["macro_ap"]
    return scores


def spearman(points: List[Dict[str, Any]], criterion: str, last: bool = False) -> Optional[float]:
    """Rank correlation of a criterion with the test AP over grid points; None when undefined
    (fewer than 3 points, or a criterion that does not vary)."""
    if len(points) < 3:
        return None
    scores = [p["scores"] for p in points]
    values = [s[criterion]["last_val" if last else "val"] for s in scores]
    truth = [s["last_test_macro_ap"] if last else s[criterion]["test_macro_ap"] for s in scores]
    rho = float(scipy_stats.spearmanr(values, truth).statistic)
    return None if math.isnan(rho) else rho


def search_dallmi(run_point: Callable[..., Dict[str, Any]], one_epoch: int) -> None:
    """The learning rates at the default λ, then λ, then λ warm-up over one epoch (unless λ is
    0), then the log loss form, each stage from the best point so far."""

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
    seed, ratio = args.seeds[0], args.ratios[0]
    rname = ratio_name(ratio)
    protocol = Protocol(args)
    folder = beside(args, "tune_")
    methods = [m for m in args.methods if m in TUNED_METHODS]
    start = time.perf_counter()
    points: List[Dict[str, Any]] = []

    def run_point(method: str, lr: float, extra: Dict[str, Any]) -> Dict[str, Any]:
        # untuned: the point's learning rate, the settings as given; DALLMi's grid is of its
        # PU loss on every label (dallmi_pu), as the committed tune results were made
        base = METHODS["dallmi_pu" if method == "dallmi" else method]
        variant = Method(base.config, base.labels, {**base.settings, **extra}, lr)
        name = "_".join([method, f"lr{lr:g}", *(f"{k}{v}" for k, v in sorted(extra.items()))])
        run = protocol.run(method, seed, ratio, variant, folder / f"s{seed}_{rname}_{name}.json")
        point = {"method": method, "name": name, "learn_rate": lr, **extra}
        point["scores"] = score_point(run, rname)
        points.append(point)
        return point

    if "dallmi" in methods:
        corpora, _ = protocol.setup_seed(seed)
        overrides = protocol.method_overrides(METHODS["dallmi"], seed, ratio, corpora)
        search_dallmi(run_point, batches_per_epoch(str(CONFIGS / ADAPT), overrides))
    for method in methods:
        if method != "dallmi":
            for lr in LEARN_RATES:
                run_point(method, lr, {})
    output = beside(args, "tuned_", ".json")
    write_tuned(output, args.dataset, seed, ratio, points, time.perf_counter() - start)


def write_tuned(output: Path, dataset: str, seed: int, ratio: float, points, seconds) -> None:
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
    srsly.write_json(output, {"dataset": dataset, "seed": seed, "ratio": ratio,
                              "criterion": CHOICE, "chosen": chosen,
                              "chosen_by_each_criterion": by_criterion,
                              "spearman_with_test_ap": correlations, "points": points,
                              "wall_seconds": seconds})  # fmt: skip
    print(srsly.json_dumps({"chosen": chosen, "spearman": correlations}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])

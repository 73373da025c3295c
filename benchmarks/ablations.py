"""The paper's ablations (Tables 3 and 4) as paired cells beside default DALLMi (issue 9).

The variants are :func:`ablation_variants` (of DALLMi as published); each trains
through :meth:`paired.Protocol.run` and differs from the defaults only in what its name
says. A variant equal to a paired method reuses its finished run. Writes
``results/ablations_<dataset>/<run>.json`` and ``results/ablations_<dataset>.md`` (test
macro AP, the change relative to the defaults, training CPU seconds per epoch). Processes
started together share the variants (a lock each); ``--report`` only writes the report;
``--variants`` trains only the named ones. The first of ``--ratios`` is used.

    python benchmarks/ablations.py --dataset pubmed --seeds 0 --ratios 0.7   # one per core
    python benchmarks/ablations.py --dataset pubmed --seeds 1,2,3,4 --ratios 0.7 \
        --variants mixup_at_word_embeddings_log_loss
"""

import argparse
import fcntl
import itertools
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import paired
import srsly
from environment import table
from paired import ADAPT, CONFIGS, METHODS, Method, Protocol, beside, run_key
from spacy.util import load_config
from splits import ratio_name
from stats import ci_text, mean_std
from summarize import Runs, scores, versus

from spacy_dallmi.settings import LOSS_FORMS, MIXUP_LOCATIONS, PU_ONLY, DallmiSettings

LAMBDAS = (0.0, 0.03, 0.1, 0.3, 1.0)
Variants = List[Tuple[str, Dict[str, Any]]]


def ablation_variants(lambdas: List[float]) -> Variants:
    """The paper's ablations as (name, settings) of DALLMi as published (``PU_ONLY``: the PU
    loss on every label, without adapt.cfg's teacher): MixUp location x loss form (Table 3),
    the positive term, the MixUp weight and the batching (Table 4, ``batcher``)."""
    default = DallmiSettings()
    name = f"{default.mixup_location}, {default.loss_form} loss, lambda {default.mixup_lambda:g}"
    variants: Variants = [(f"default ({name}, cycle batches)", {})]
    for location, loss in itertools.product(MIXUP_LOCATIONS, LOSS_FORMS):
        if (location, loss) != (default.mixup_location, default.loss_form):
            settings = {"mixup_location": location, "loss_form": loss}
            variants.append((f"mixup at {location}, {loss} loss", settings))
    variants.append(("positive term l2", {"positive_term": "l2"}))
    lams = [lam for lam in lambdas if lam != default.mixup_lambda]
    variants += [(f"lambda {lam:g}", {"mixup_lambda": lam}) for lam in lams]
    variants.append(("plain shuffled batches", {"batcher": "spacy.batch_by_sequence.v1"}))
    batcher = {"batcher": "spacy_dallmi.positive_sampling_batcher.v1"}
    variants.append(("reference's positive-per-label sampling", batcher))
    return [(name, {**PU_ONLY, **settings}) for name, settings in variants]


def variant_slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")


def batcher_config(config: Path, folder: Path, batcher: str, batch_size: int, seed: int) -> Path:
    """A copy of ``config`` with another batcher (the blocks' arguments differ, so an
    override cannot swap it)."""
    loaded = load_config(config)
    block: Dict[str, Any] = {"@batchers": batcher, "size": batch_size}
    if batcher == "spacy.batch_by_sequence.v1":
        block["get_length"] = None
    else:
        block["seed"] = seed
    loaded["training"]["batcher"] = block
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"adapt_{batcher.replace('.', '_')}.cfg"
    loaded.to_disk(path)
    return path


def variant_method(settings: Dict[str, Any], config: str = ADAPT) -> Tuple[Method, Optional[str]]:
    """A variant as a paired method, and its batcher (None: the config's cycle batcher)."""
    bare = {k: v for k, v in settings.items() if k != "batcher"}
    return Method(config, "partial", bare), settings.get("batcher")


def variant_path(
    args: argparse.Namespace, folder: Path, seed: int, ratio: float, name: str
) -> Tuple[Path, Optional[str]]:
    """Where a variant's run is, and the paired method it reuses (None: its own run): its own
    run once it exists, else a finished paired twin (same config, settings and learning rate)."""
    own = folder / f"{run_key(seed, ratio, variant_slug(name))}.json"
    method, batcher = variant_method(dict(ablation_variants(list(LAMBDAS)))[name])
    twin = None if batcher else next((n for n, m in METHODS.items() if m == method), None)
    if twin and not own.exists():
        paired_run = args.results / f"{run_key(seed, ratio, twin)}.json"
        if paired_run.exists():
            return paired_run, twin
    return own, None


def parse(argv: List[str]) -> Tuple[argparse.Namespace, bool, Optional[List[str]]]:
    options = paired.parser(__doc__)
    options.add_argument("--report", action="store_true", help="only write the report")
    options.add_argument("--variants", type=lambda s: s.split(","), help="default: all")
    args = paired.parse_args(argv, options)
    return args, args.report, args.variants


def chosen(variants: Variants, slugs: Optional[List[str]]) -> Variants:
    """The variants that ``--variants`` names (all of them without it), in the table's order."""
    if slugs is None:
        return variants
    by_slug = {variant_slug(name): (name, overrides) for name, overrides in variants}
    unknown = [slug for slug in slugs if slug not in by_slug]
    if unknown:
        known = ", ".join(by_slug)
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; known: {known}")
    return [variant for slug, variant in by_slug.items() if slug in slugs]


def main(argv: List[str]) -> None:
    args, report_only, slugs = parse(argv)
    variants = ablation_variants(list(LAMBDAS))
    if not report_only:
        # the defaults first, then the batching variants (Table 4 compares their time with the
        # defaults'), then the others in the table's order
        order = sorted(
            chosen(variants, slugs), key=lambda v: (v != variants[0], "batcher" not in v[1])
        )
        train(args, order)
    write_report(args, variants)


def train(args: argparse.Namespace, variants: Variants) -> None:
    """Train each variant at each seed unless it is finished or another process trains it."""
    protocol, folder, ratio = Protocol(args), beside(args, "ablations_"), args.ratios[0]
    for seed in args.seeds:
        protocol.setup_seed(seed)
        locks = args.work / f"s{seed}" / "ablation_locks"
        locks.mkdir(parents=True, exist_ok=True)
        for name, overrides in variants:
            with open(locks / f"{variant_slug(name)}.lock", "w") as lock:
                try:  # released when the run ends or its process dies
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    print(f"[ablations] {name}: another process is training it", flush=True)
                    continue
                method, batcher = variant_method(overrides)
                extra = None
                if batcher:  # from a copy of the config: the blocks' arguments differ
                    configs = args.work / f"s{seed}" / "ablation_configs"
                    config = batcher_config(
                        CONFIGS / ADAPT, configs, batcher, args.batch_size, seed
                    )
                    method = variant_method(overrides, str(config))[0]
                    extra = {"batcher": dict(load_config(config)["training"]["batcher"])}
                path, twin = variant_path(args, folder, seed, ratio, name)
                protocol.run(twin or f"ablation: {name}", seed, ratio, method, path, extra)


def write_report(args: argparse.Namespace, variants: Variants) -> None:
    folder, ratio = beside(args, "ablations_"), args.ratios[0]
    runs: Runs = {}  # (variant, seed) -> its finished run, in the table's order
    for (name, _), seed in itertools.product(variants, args.seeds):
        path = variant_path(args, folder, seed, ratio, name)[0]
        if path.exists():
            runs[(name, seed)] = srsly.read_json(path)
    if not runs:
        print("[ablations] no finished run yet: no report", flush=True)
        return
    body, default = [], variants[0][0]
    for name, _ in variants:
        cells = [name]
        for model in ("last", "pu_score"):
            mine, base = (scores(runs, ratio_name(ratio), m, model) for m in (name, default))
            cells.append(f"{mean_std(list(mine.values()))[0]:.1f} (n={len(mine)})" if mine else "–")
            diff = None if name == default else versus(mine, base)
            if diff is None:
                cells.append("–")
                continue
            common = [base[s] for s in mine if s in base]
            relative = 100 * diff.mean_diff / (sum(common) / len(common))
            ci = ci_text(diff.ci_low, diff.ci_high)
            cells.append(f"{relative:+.1f}% ({diff.mean_diff:+.1f}{ci}; n={diff.n})")
        cpu = [r["run"]["train_cpu_seconds"] / args.epochs for (n, _), r in runs.items()
               if n == name and "train_cpu_seconds" in r["run"]]  # fmt: skip
        cells.append(f"{sum(cpu) / len(cpu):.0f} (n={len(cpu)})" if cpu else "–")
        body.append(cells)
    header = ["variant", "macro AP, last epoch", "vs default: relative (points [95% CI])",
              "macro AP, selected by PU score", "vs default: relative (points [95% CI])",
              "train CPU s / epoch (n runs)"]  # fmt: skip
    any_run = next(iter(runs.values()))
    machine = any_run["machine"]
    lines = [
        f"# DALLMi ablations on `{args.dataset}` ({100 * ratio:g}% of target positives removed)",
        "",
        f"Paired protocol of [`paired_{args.dataset}.md`](paired_{args.dataset}.md): "
        f"{args.epochs} epochs (linear decay), batch {args.batch_size}, max length "
        f"{args.max_length}, {any_run['protocol']['backbone']}; every variant starts from the "
        "seed's source model with the same splits and hidden labels as default DALLMi (first "
        "row), and differs from it only in what its name says. Test macro AP in "
        "points; the change relative to default DALLMi is paired over the seeds both have "
        "(95% paired-t CI in points where there are at least 2; n = pairs). Training CPU "
        "seconds per epoch exclude the per-epoch evaluation and average over the runs that "
        "record them (paired runs from before that was recorded do not); machine "
        f"{machine['cpu_model']}, torch threads {machine['torch_threads']}.",
        "",
        *table(header, body),
        "Table 3 of the paper: MixUp location × loss form; Table 4: batching (the cycle batcher "
        "of the defaults, spaCy's plain shuffled batches, the reference code's one positive per "
        "label with replacement). Also the positive term `l2` (the reference code's `‖p‖₂`) "
        "and the MixUp weight λ.",
        "",
    ]
    output = folder.parent / f"{folder.name}.md"
    output.write_text("\n".join(lines), encoding="utf8")
    print(f"[ablations] report -> {output.name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

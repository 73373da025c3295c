"""The paper's ablations (Tables 3 and 4) in the paired protocol (issue 9, item 4).

The variants are the project's ``ablate`` command's (:func:`spacy_dallmi.experiments.grid.
ablation_variants`): MixUp location × loss form, the positive term ``l2``, the MixUp weight λ
and the batching (the cycle batcher, spaCy's plain shuffled batches, the reference code's one
positive per label). Here each one trains like a ``paired.py`` run: from the seed's source
model, on its splits and hidden labels, with the protocol's epochs, batch size and schedule, so
it is compared with default DALLMi paired over seeds. A variant differs from the defaults only
in what its name says (the sampling batcher's epoch also has another number of batches, so its
run has another number of steps).

A variant equal to a paired method (the defaults: ``dallmi``; λ = 0: ``dallmi_lambda0``)
reuses that method's finished run (the same training, to the last digit: seed 0 of pubmed was
run both ways); otherwise it is trained here. Nothing is written into the paired results. Runs
from before the training CPU time was recorded count in every column but Table 4's, whose
``n`` says how many runs stand behind it.

Writes ``results/ablations_<dataset>/<run>.json`` (resumable like the paired runs) and
``results/ablations_<dataset>.md``: test macro AP at the last epoch and selected by the PU
score, the change relative to default DALLMi (the paper's tables report relative changes),
and the training CPU time per epoch (Table 4; evaluation excluded; CPU time, because the
variants run beside other processes). Two processes can run it together: each trains the
next variant that no other is training (a lock per variant), the defaults and the batching
variants first; each writes the report from whatever has finished, and ``--report`` only
writes it. ``--variants`` trains only the named variants (their file names, for example
``mixup_at_word_embeddings_log_loss``), to add seeds where a one-seed direction needs a CI; the
report still covers every variant. The first of ``--ratios`` is used; the other options are
``paired.py``'s.

    python benchmarks/ablations.py --dataset pubmed --seeds 0 --ratios 0.7   # one per core
    python benchmarks/ablations.py --dataset pubmed --seeds 1,2,3,4 --ratios 0.7 \
        --variants mixup_at_word_embeddings_log_loss
"""

import argparse
import fcntl
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
import torch
from environment import table
from paired import (
    CONFIGS,
    METHODS,
    SETTINGS_KEY,
    Method,
    Protocol,
    parse_args,
    run_key,
    run_method,
)
from spacy.util import load_config
from splits import SeedCorpora, ratio_name
from stats import ci_text, mean_std, paired_difference

from spacy_dallmi.experiments.grid import ablation_variants, batcher_config, variant_slug

LAMBDAS = (0.0, 0.03, 0.1, 0.3, 1.0)
ADAPT = "adapt.cfg"  # under configs/; a batching variant trains from a copy in the work folder


Variants = List[Tuple[str, Dict[str, Any]]]


def variant_method(settings: Dict[str, Any], config: str) -> Method:
    """A DALLMi variant as a paired method (its settings keys without their config section),
    so that it trains through the same code as every paired run. ``config`` is a file under
    ``configs/`` or an absolute path."""
    bare = {k[len(SETTINGS_KEY) + 1 :]: v for k, v in settings.items()}
    return Method(config, "partial", bare)


def paired_twin(method: Method) -> Optional[str]:
    """The paired method that trains exactly like ``method``, if there is one."""
    for name, other in METHODS.items():
        if other.config == method.config and other.labels == method.labels:
            if other.settings == method.settings and other.learn_rate is None:
                return name
    return None


def split_variant(overrides: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[str]]:
    """A variant's settings overrides, and its batcher (None: the config's cycle batcher)."""
    settings = dict(overrides)
    return settings, settings.pop("batcher", None)


def variant_path(
    args: argparse.Namespace, folder: Path, seed: int, ratio: float, name: str
) -> Tuple[Path, Optional[str]]:
    """Where a variant's run is, and the paired method it reuses (None: its own run).

    Its own run wins once it exists, then a finished paired twin. ``main`` and the report both
    go through here, so they read the same files."""
    own = folder / f"{run_key(seed, ratio, variant_slug(name))}.json"
    settings, batcher = split_variant(dict(ablation_variants(list(LAMBDAS)))[name])
    twin = None if batcher else paired_twin(variant_method(settings, ADAPT))
    if own.exists() or twin is None:
        return own, None
    paired = args.results / f"{run_key(seed, ratio, twin)}.json"
    return (paired, twin) if paired.exists() else (own, None)


def parse(argv: List[str]) -> Tuple[argparse.Namespace, bool, Optional[List[str]]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--report", action="store_true", help="only write the report")
    parser.add_argument("--variants", help="comma-separated variant file names; default: all")
    own, rest = parser.parse_known_args(argv)
    slugs = None if own.variants is None else own.variants.split(",")
    return parse_args(rest), own.report, slugs


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


def training_order(variants: Variants) -> Variants:
    """The defaults first, then the batching variants (Table 4's timing compares them with
    the defaults), then the others in the table's order."""
    return sorted(variants, key=lambda v: (v is not variants[0], "batcher" not in v[1]))


def main(argv: List[str]) -> None:
    args, report_only, slugs = parse(argv)
    folder = args.results.parent / args.results.name.replace("paired_", "ablations_")
    ratio = float(args.ratios.split(",")[0])
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = ablation_variants(list(LAMBDAS))
    if report_only:
        write_report(folder, args, ratio, seeds, variants)
        return
    torch.set_num_threads(args.threads)
    protocol = Protocol(args)
    for seed in seeds:
        corpora, source = protocol.setup_seed(seed)
        locks = args.work / f"s{seed}" / "ablation_locks"
        locks.mkdir(parents=True, exist_ok=True)
        for name, overrides in training_order(chosen(variants, slugs)):
            with open(locks / f"{variant_slug(name)}.lock", "w") as lock:
                try:  # released when the run ends or its process dies
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    print(f"[ablations] {name}: another process is training it", flush=True)
                    continue
                train_variant(args, protocol, folder, seed, ratio, name, overrides, corpora, source)
    write_report(folder, args, ratio, seeds, variants)


def train_variant(
    args: argparse.Namespace,
    protocol: Protocol,
    folder: Path,
    seed: int,
    ratio: float,
    name: str,
    overrides: Dict[str, Any],
    corpora: SeedCorpora,
    source: Dict[str, Any],
) -> None:
    """Train one variant (or skip it if finished), from a copy of the config when it swaps
    the batcher."""
    settings, batcher = split_variant(overrides)
    config, extra = ADAPT, None
    if batcher:
        configs = args.work / f"s{seed}" / "ablation_configs"
        path = batcher_config(CONFIGS / ADAPT, configs, batcher, args.batch_size, seed)
        config = str(path)
        extra = {"batcher": dict(load_config(path)["training"]["batcher"])}
    method = variant_method(settings, config)
    path, twin = variant_path(args, folder, seed, ratio, name)
    label = twin or f"ablation: {name}"
    run_method(protocol, path, label, method, None, seed, ratio, corpora, source, extra)


def load_runs(
    folder: Path, args: argparse.Namespace, ratio: float, seeds: List[int], variants: Variants
) -> List[Tuple[str, Dict[int, Dict[str, Any]]]]:
    """Per variant (in the table's order): its finished runs by seed."""
    rows = []
    for name, _ in variants:
        runs = {}
        for seed in seeds:
            path, _ = variant_path(args, folder, seed, ratio, name)
            if path.exists():
                runs[seed] = srsly.read_json(path)
        rows.append((name, runs))
    return rows


def write_report(
    folder: Path, args: argparse.Namespace, ratio: float, seeds: List[int], variants: Variants
) -> None:
    rows = load_runs(folder, args, ratio, seeds, variants)
    default = rows[0][1]
    rname = ratio_name(ratio)

    def scores(runs: Dict[int, Dict[str, Any]], which: str) -> Dict[int, float]:
        if which == "last":
            return {s: 100 * r["last"]["macro_ap"] for s, r in runs.items()}
        return {
            s: 100 * r["selected"][rname]["pu_score"]["test"]["macro_ap"] for s, r in runs.items()
        }

    body = []
    for name, runs in rows:
        cells = [name]
        for which in ("last", "selected"):
            mine, base = scores(runs, which), scores(default, which)
            common = sorted(set(mine) & set(base))
            if not mine:
                cells += ["–", "–"]
                continue
            cells.append(f"{mean_std(list(mine.values()))[0]:.1f} (n={len(mine)})")
            if runs is default or not common:
                cells.append("–")
                continue
            diff = paired_difference([mine[s] for s in common], [base[s] for s in common])
            base_mean = sum(base[s] for s in common) / len(common)
            relative = 100 * diff.mean_diff / base_mean
            ci = ci_text(diff.ci_low, diff.ci_high)
            cells.append(f"{relative:+.1f}% ({diff.mean_diff:+.1f}{ci}; n={diff.n})")
        cpu = [
            r["run"]["train_cpu_seconds"] / args.epochs
            for r in runs.values()
            if "train_cpu_seconds" in r["run"]
        ]
        cells.append(f"{sum(cpu) / len(cpu):.0f} (n={len(cpu)})" if cpu else "–")
        body.append(cells)
    any_run = next((r for _, runs in rows for r in runs.values()), None)
    if any_run is None:
        print("[ablations] no finished run yet: no report", flush=True)
        return
    header = [
        "variant",
        "macro AP, last epoch",
        "vs default: relative (points [95% CI])",
        "macro AP, selected by PU score",
        "vs default: relative (points [95% CI])",
        "train CPU s / epoch (n runs)",
    ]
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
        f"{any_run['machine']['cpu_model']}, torch threads {any_run['machine']['torch_threads']}.",
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

"""The paired protocol (issue 9): every method, per seed, from one source model on one split.

Per (dataset, seed): the corpora are prepared once (:mod:`splits`), the source model is trained
once until its source dev macro AP stops improving (issue 26; its dev curve and stopping epoch
are in every result file), and every method starts from it with the same hidden labels,
schedule (linear decay to 0, clip 1.0), epoch budget and batch size. ``none``, ``ft_full`` and
``aad`` read no target labels, so they run once per seed and count at every ratio. Each
finished run is written at once to ``benchmarks/results/paired_<dataset>/<key>.json``; a
re-run skips finished runs (and refuses to mix runs made with other settings), so a stopped
session loses at most one run.

Every trained run records the test scores of every epoch (the learning curve), of the last
epoch, and of the epoch chosen on the validation slice by each label-free criterion (the
PU score, and AP against the partial labels), where the source model (epoch 0) is a candidate.

    python benchmarks/paired.py --dataset emotions --seeds 0,1,2,3,4 --ratios 0.7
    python benchmarks/paired.py --dataset pubmed --methods dallmi,ft_partial --ratios 0.5,0.9
    python benchmarks/paired.py --quick --backbone /path/to/tiny-bert --results /tmp/out
"""

import argparse
import fcntl
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import environment
import spacy
import srsly
import torch
from aad import AAD_SETTINGS, train_aad
from environment import REPO_ROOT, RESULTS, provenance
from runner import Evaluator, effective_settings, train_run
from spacy.util import load_config
from splits import RATIOS, SeedCorpora, Sizes, prepare_seed, prepared_counts, ratio_name

from spacy_dallmi.experiments.methods import (
    BENCHMARK_METHODS,
    METHOD_INFO,
    TUNED_METHODS,
    registered,
)
from spacy_dallmi.interpolation import interpolate_into
from spacy_dallmi.settings import PAPER_SETTINGS, PAPER_TRAINING
from spacy_dallmi.training import TRAINING_FILE, train_epochs

CONFIGS = REPO_ROOT / "configs"
SETTINGS_KEY = "initialize.before_init.settings"
LEARN_RATE_KEY = "training.optimizer.learn_rate.initial_rate"
CRITERIA = ("pu_score", "partial_ap")
#: Confident selection (``selection_confidence``): criterion -> (score, share of resamples).
CONFIDENT = {"pu_score_c90": ("pu_score", 0.9)}
#: Guarded selection: criterion -> (score, guard): the best ``score`` among the source and the
#: candidates whose ``guard`` score is at least the source's.
GUARDED = {"partial_ap_guarded": ("partial_ap", "pu_score")}
#: WiSE-FT weights between the source (0) and the last epoch (1) scored for partial-label runs.
ALPHAS = (0.25, 0.5, 0.75)
SOURCE_INFO = "benchmark_source.json"
SIZES = {
    "emotions": Sizes(source=2000, target_train=1800, target_test=1500),
    "pubmed": Sizes(source=None, target_train=None, target_test=None),
}
QUICK_SIZES = Sizes(source=60, target_train=60, target_test=40)


@dataclass(frozen=True)
class Method:
    """How a method trains: config, which target labels, settings and learning rate.

    ``learn_rate`` None keeps the config's (or the tuned file's, for the tuned baselines).
    """

    config: Optional[str]
    labels: Optional[str] = None  # "partial", "full" or None (reads no target labels)
    settings: Dict[str, Any] = field(default_factory=dict)
    learn_rate: Optional[float] = None
    tuned: bool = False

    @property
    def per_seed(self) -> bool:
        return self.labels != "partial"


def as_registered(methods: Dict[str, Method]) -> Dict[str, Method]:
    """``methods`` once they are the registry's (:mod:`spacy_dallmi.experiments.methods`), in
    its order, each reading the target labels the registry gives it, and a tuned learning rate
    only for a method the tune workflow tunes: the summaries list the methods by the registry."""
    registered(methods, exactly=BENCHMARK_METHODS)
    for name, method in methods.items():
        if method.labels != METHOD_INFO[name].labels or (
            method.tuned and name not in TUNED_METHODS
        ):
            raise ValueError(f"{name}: {method} disagrees with the registry's {METHOD_INFO[name]}")
    return methods


_PAPER = {k: v for k, v in PAPER_SETTINGS.to_dict().items() if k not in ("objective", "seed")}
METHODS: Dict[str, Method] = as_registered(
    {
        "none": Method(None),
        "ft_partial": Method("finetune.cfg", "partial", tuned=True),
        "ft_full": Method("finetune.cfg", "full"),
        "an_ls": Method("finetune.cfg", "partial", {"label_smoothing": 0.1}, tuned=True),
        "wan": Method("finetune.cfg", "partial", {"negative_weighting": "wan"}, tuned=True),
        "aad": Method("aad", settings=AAD_SETTINGS),
        "dallmi": Method("adapt.cfg", "partial"),
        "dallmi_lambda0": Method("adapt.cfg", "partial", {"mixup_lambda": 0.0}),
        "dallmi_paper": Method("adapt.cfg", "partial", _PAPER, PAPER_TRAINING["learn_rate"]),
        "ft_teacher": Method(
            "finetune.cfg", "partial", {"teacher_weight": 1.0, "teacher_target": "posterior"}
        ),
        "dallmi_teacher": Method("adapt.cfg", "partial", {"teacher_weight": 0.5}),
        "ft_teacher_source": Method(
            "finetune.cfg", "partial", {"teacher_weight": 1.0, "teacher_target": "source"}
        ),
        "dallmi_posterior": Method(
            "adapt.cfg", "partial", {"teacher_weight": 1.0, "teacher_target": "posterior"}
        ),
    }
)


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = environment.parser(__doc__, device=False, max_length=64, batch_size=32, threads=1)
    parser.add_argument("--dataset", default="emotions", choices=sorted(SIZES))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--ratios", default="0.7")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--source-epochs", type=int, default=20, help="upper bound")
    parser.add_argument("--source-patience", type=int, default=2, help="epochs without gain")
    parser.add_argument("--tuned", type=Path, help="default: tuned_<dataset>.json beside --results")
    parser.add_argument("--results", type=Path, help="default: results/paired_<dataset>[_quick]")
    parser.add_argument("--work", type=Path, help="corpora and source models; default /tmp/...")
    args = parser.parse_args(argv)
    if args.quick:  # tiny sizes, 2 epochs
        args.epochs, args.source_epochs, args.max_length, args.batch_size = 2, 2, 32, 16
    name = f"paired_{args.dataset}" + ("_quick" if args.quick else "")
    args.results = args.results or RESULTS / name
    args.work = args.work or Path("/tmp/dallmi_paired") / name
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; use {list(METHODS)}")
    return args


class Protocol:
    """One dataset's protocol: shared settings, the seed's corpora and source model, results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK_SIZES if args.quick else SIZES[args.dataset]
        default = args.results.parent / f"{args.results.name.replace('paired_', 'tuned_')}.json"
        tuned_path = args.tuned or default
        self.tuned = srsly.read_json(tuned_path)["chosen"] if tuned_path.exists() else {}
        self.tuned_from = tuned_path.name if self.tuned else None

    def shared(self) -> Dict[str, Any]:
        """What every run of a results folder must share to be compared (checked on resume)."""
        a = self.args
        return {
            "dataset": a.dataset,
            "epochs": a.epochs,
            "source_epochs": a.source_epochs,
            "source_patience": a.source_patience,
            "max_length": a.max_length,
            "batch_size": a.batch_size,
            "backbone": Path(a.backbone).name,
            "sizes": self.sizes.__dict__,
            "quick": a.quick,
        }

    def setup_seed(self, seed: int) -> Tuple[SeedCorpora, Dict[str, Any]]:
        """The seed's corpora and its source model's results (``none``), made once.

        Two processes (say the tune grid and the paired runs) may start the same seed
        together; a lock file makes the second one wait and then reuse the first one's work.
        """
        a = self.args
        a.work.mkdir(parents=True, exist_ok=True)
        with open(a.work / f"s{seed}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            corpora = prepare_seed(a.dataset, a.data_dir, a.work, seed, self.sizes)
            source = run_none(self, seed, corpora, self.source_model(seed, corpora))
        return corpora, source

    def source_model(self, seed: int, corpora: SeedCorpora) -> Path:
        """Train the seed's source model once, as the project does: until the source dev macro
        AP has not improved for ``--source-patience`` epochs (at most ``--source-epochs``),
        keeping the best dev epoch. A finished one is reused if it was trained the same way;
        its dev curve and stopping epoch go into every result file of the seed."""
        a = self.args
        folder = corpora.folder / "source"
        wanted = {
            key: value
            for key, value in self.shared().items()
            if key in ("source_epochs", "source_patience", "max_length", "batch_size", "backbone")
        }
        if folder.exists():
            stored = srsly.read_json(folder / SOURCE_INFO).get("settings")
            if stored != wanted:
                raise SystemExit(f"{folder} was trained with {stored}, not {wanted}: delete it.")
            return folder
        overrides = {
            "paths.train": str(corpora.source_train),
            "paths.dev": str(corpora.source_dev),
            "paths.backbone": a.backbone,
            "system.seed": seed,
            "components.textcat.model.max_length": a.max_length,
            "training.batcher.size": a.batch_size,
        }
        config = str(CONFIGS / "source.cfg")
        run = corpora.folder / "source_run"
        start = time.perf_counter()
        train_epochs(config, run, a.source_epochs, patience=a.source_patience, overrides=overrides)
        info = srsly.read_json(run / TRAINING_FILE)
        info["train_seconds"] = time.perf_counter() - start
        info["settings"] = wanted
        learn_rate = load_config(config, interpolate=True)["training"]["optimizer"]["learn_rate"]
        info["learn_rate"] = learn_rate["initial_rate"]
        info["overrides"] = {k: relative(v, a.work) for k, v in overrides.items()}
        srsly.write_json(run / "model-best" / SOURCE_INFO, info)
        (run / "model-best").rename(folder)
        shutil.rmtree(run)
        return folder

    def method_overrides(
        self, method: Method, seed: int, ratio: Optional[float], corpora: SeedCorpora
    ) -> Dict[str, Any]:
        train = corpora.fit(ratio) if method.labels == "partial" else corpora.fit_full
        dev = corpora.val(ratio) if method.labels == "partial" else corpora.val_full
        overrides: Dict[str, Any] = {
            "paths.source": str(corpora.folder / "source"),
            "paths.train": str(train),
            "paths.dev": str(dev),
            "system.seed": seed,
            "training.batcher.size": self.args.batch_size,
        }
        overrides.update({f"{SETTINGS_KEY}.{k}": v for k, v in method.settings.items()})
        return overrides

    def learn_rate(self, name: str, method: Method) -> Optional[float]:
        if method.learn_rate is not None:
            return method.learn_rate
        if method.tuned and name in self.tuned:
            return self.tuned[name]["learn_rate"]
        return None


def relative(value: Any, work: Path) -> Any:
    """Paths under the work folder as ``<work>/...``: no machine paths in committed files."""
    if isinstance(value, str) and value.startswith(str(work)):
        return "<work>" + value[len(str(work)) :]
    return value


def allowed(
    candidate: Dict[str, Any],
    source: Dict[str, Any],
    rname: str,
    confidence: float = 0.0,
    guard: Optional[str] = None,
) -> bool:
    """Whether a candidate may be shipped: the source always, another only if it beat the
    source's PU score on ``confidence`` of the resamples (``pu_win``) and, with a ``guard``,
    scores at least the source's ``guard`` score."""
    if candidate.get("epoch") == 0:
        return True
    val = candidate["val"][rname]
    return (confidence == 0.0 or val["pu_win"] >= confidence) and (
        guard is None or val[guard] >= source["val"][rname][guard]
    )


def select(
    records: List[Dict[str, Any]],
    rname: str,
    criterion: str,
    confidence: float = 0.0,
    guard: Optional[str] = None,
) -> Dict[str, Any]:
    """The record with the best validation ``criterion`` at ratio ``rname``; ties go to the
    earliest epoch (the source model first), so adaptation must earn its place."""
    source = records[0]
    records = [r for r in records if allowed(r, source, rname, confidence, guard)]
    best = max(records, key=lambda r: (r["val"][rname][criterion], -r["epoch"]))
    return {"epoch": best["epoch"], "val": best["val"][rname][criterion], "test": best["test"]}


def select_shipped(
    records: List[Dict[str, Any]],
    blends: List[Dict[str, Any]],
    rname: str,
    criterion: str,
    confidence: float = 0.0,
    guard: Optional[str] = None,
) -> Dict[str, Any]:
    """The candidate the product ships (``training._select_shipped``): among the source
    (epoch 0), the blends of the source with the last epoch and spaCy's ``model-best`` (the
    trained epoch with the best validation ``criterion``, the later of equal ones), the best
    ``criterion`` of those :func:`allowed`. Ties go to the candidate nearest the source: the
    source, then the blends by alpha, then the checkpoint."""
    source, *trained = records
    checkpoint = max(trained, key=lambda r: (r["val"][rname][criterion], r["epoch"]))
    last = records[-1]["epoch"]
    candidates = [(0.0, 0, source), *((b["alpha"], last, b) for b in blends)]
    candidates.append((1.0 + checkpoint["epoch"], checkpoint["epoch"], checkpoint))
    candidates = [c for c in candidates if allowed(c[2], source, rname, confidence, guard)]
    distance, epoch, best = max(candidates, key=lambda c: (c[2]["val"][rname][criterion], -c[0]))
    alpha = 0.0 if epoch == 0 else min(distance, 1.0)
    return {"epoch": epoch, "alpha": alpha, "val": best["val"][rname][criterion],
            "test": best["test"]}  # fmt: skip


def criteria(
    records: List[Dict[str, Any]], rname: str
) -> Dict[str, Tuple[str, float, Optional[str]]]:
    """Criterion name -> (validation score, confidence, guard): the plain and guarded ones,
    and the confident ones when every candidate but the source records its ``pu_win``."""
    found = {c: (c, 0.0, None) for c in CRITERIA}
    found.update({name: (score, 0.0, guard) for name, (score, guard) in GUARDED.items()})
    if all("pu_win" in r["val"][rname] for r in records if r["epoch"] != 0):
        found.update({name: (score, share, None) for name, (score, share) in CONFIDENT.items()})
    return found


def summarise_records(
    records: List[Dict[str, Any]], ratios: Sequence[str], blends: Sequence[Dict[str, Any]] = ()
) -> Dict[str, Any]:
    summary = {
        "last": records[-1]["test"],
        "selected": {
            r: {c: select(records, r, *spec) for c, spec in criteria(records, r).items()}
            for r in ratios
        },
    }
    if blends:
        summary["shipped"] = {
            r: {
                c: select_shipped(records, list(blends), r, *spec)
                for c, spec in criteria(records, r).items()
            }
            for r in ratios
        }
    return summary


def blended_records(
    corpora: SeedCorpora, adapted: spacy.Language, evaluate: Evaluator
) -> List[Dict[str, Any]]:
    """Scores of ``(1 - alpha)·source + alpha·adapted`` for each of :data:`ALPHAS`."""
    source = spacy.load(corpora.folder / "source")
    target = spacy.load(corpora.folder / "source")
    records = []
    for alpha in ALPHAS:
        interpolate_into(target, source, adapted, alpha)
        records.append({"alpha": alpha, **evaluate(target)})
    return records


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    srsly.write_json(partial, payload)
    partial.rename(path)


def run_key(seed: int, ratio: Optional[float], method: str) -> str:
    return f"s{seed}_{method}" if ratio is None else f"s{seed}_{ratio_name(ratio)}_{method}"


def existing(path: Path, protocol: Dict[str, Any]) -> bool:
    """Whether ``path`` holds a finished run of this protocol; a run of another is an error."""
    if not path.exists():
        return False
    stored = srsly.read_json(path)["protocol"]
    # Compared after the same JSON round trip, which does not keep every float's last digit.
    if stored != srsly.json_loads(srsly.json_dumps(protocol)):
        raise SystemExit(
            f"{path.name} was made with other settings:\n  stored  {stored}\n  current {protocol}"
            "\nUse another --results folder, or delete the file to re-run it."
        )
    return True


def context() -> Dict[str, Any]:
    return provenance(omp_num_threads=os.environ.get("OMP_NUM_THREADS"))


def run_method(
    protocol: Protocol,
    path: Path,
    name: str,
    method: Method,
    learn_rate: Optional[float],
    seed: int,
    ratio: Optional[float],
    corpora: SeedCorpora,
    source: Dict[str, Any],
    spec_extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Train one method into ``path`` unless it is there already; return its results.

    The stored ``protocol`` holds the effective settings (config defaults filled in), and
    ``spec_extra`` what else the config changes (an ablation's batcher), so a finished run is
    reused only if it was trained exactly like this one would be.
    """
    if method.config == "aad":
        overrides: Dict[str, Any] = {}
        effective = {**AAD_SETTINGS, **method.settings}
        if learn_rate is not None:
            effective["learn_rate"] = learn_rate
    else:
        config = str(CONFIGS / method.config)
        overrides = protocol.method_overrides(method, seed, ratio, corpora)
        if learn_rate is not None:
            overrides[LEARN_RATE_KEY] = learn_rate
        effective = effective_settings(config, overrides)
    spec = {
        **protocol.shared(),
        "method": name,
        "settings": effective,
        "tuned_from": protocol.tuned_from if method.tuned else None,
        **({"blend_alphas": list(ALPHAS)} if method.labels == "partial" else {}),
        **(spec_extra or {}),
    }
    key = path.stem
    if existing(path, spec):
        print(f"[paired] {key}: done before, skipped", flush=True)
        return srsly.read_json(path)
    print(f"[paired] {key}: training", flush=True)
    start = time.perf_counter()
    evaluate = Evaluator(corpora, source=spacy.load(corpora.folder / "source"))
    if method.config == "aad":
        run = train_aad(protocol, seed, corpora, effective, evaluate)
    else:
        run = train_run(config, overrides, protocol.args.epochs, evaluate)
    records = [source["epochs"][0], *run["records"]]
    ratios = list(source["selected"]) if ratio is None else [ratio_name(ratio)]
    blends = blended_records(corpora, run["nlp"], evaluate) if method.labels == "partial" else []
    work = protocol.args.work
    payload = {
        "key": key,
        "dataset": protocol.args.dataset,
        "seed": seed,
        "ratio": ratio,
        "method": name,
        "protocol": spec,
        "run": {k: v for k, v in run.items() if k not in ("nlp", "records", "overrides")},
        "overrides": {k: relative(v, work) for k, v in run.get("overrides", {}).items()},
        "docs": prepared_counts(corpora),
        "source_training": source["source_training"],
        "epochs": records,
        "blends": blends,
        **summarise_records(records, ratios, blends),
        "wall_seconds": time.perf_counter() - start,
        **context(),
    }
    write_json(path, payload)
    last = payload["last"]["macro_ap"]
    print(
        f"[paired] {key}: macro AP {100 * last:.1f} in {payload['wall_seconds']:.0f} s", flush=True
    )
    return payload


def run_none(protocol: Protocol, seed: int, corpora: SeedCorpora, source: Path) -> Dict[str, Any]:
    """Score the source model (epoch 0 of every run); written once per seed."""
    path = protocol.args.results / f"{run_key(seed, None, 'none')}.json"
    spec = {**protocol.shared(), "method": "none"}
    if existing(path, spec):
        return srsly.read_json(path)
    start = time.perf_counter()
    record = {"epoch": 0, "step": 0, **Evaluator(corpora)(spacy.load(source))}
    ratios = [ratio_name(r) for r in RATIOS]
    payload = {
        "key": run_key(seed, None, "none"),
        "dataset": protocol.args.dataset,
        "seed": seed,
        "ratio": None,
        "method": "none",
        "protocol": spec,
        "docs": prepared_counts(corpora),
        "source_training": srsly.read_json(source / SOURCE_INFO),
        "epochs": [record],
        **summarise_records([record], ratios),
        "wall_seconds": time.perf_counter() - start,
        **context(),
    }
    write_json(path, payload)
    return payload


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    protocol = Protocol(args)
    methods = args.methods.split(",")
    ratios = [float(r) for r in args.ratios.split(",")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        corpora, source = protocol.setup_seed(seed)
        for name in methods:
            method = METHODS[name]
            if name == "none":
                continue
            for ratio in [None] if method.per_seed else ratios:
                path = args.results / f"{run_key(seed, ratio, name)}.json"
                learn_rate = protocol.learn_rate(name, method)
                run_method(protocol, path, name, method, learn_rate, seed, ratio, corpora, source)


if __name__ == "__main__":
    main(sys.argv[1:])

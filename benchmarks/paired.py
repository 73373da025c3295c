"""The paired protocol (issue 9): every method, per seed, from one source model on one split.

Per seed the corpora (:mod:`splits`) and the source model (trained until its dev macro AP stops
improving) are made once, and each method starts from them with the same hidden labels and
budget. A run records every epoch's scores and what each label-free criterion selects, is
written to ``results/paired_<dataset>/<key>.json`` at once and skipped on a re-run.
:meth:`Protocol.run` runs one cell (seed, ratio, method, settings); the retired ``tune.py``
and ``ablations.py`` (benchmarks/README.md) call it, ``parser`` and ``parse_args`` too.

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

from spacy_dallmi.experiments import methods as registry
from spacy_dallmi.interpolation import interpolate_into
from spacy_dallmi.selection import choose
from spacy_dallmi.settings import PAPER_SETTINGS, PAPER_TRAINING, PU_ONLY, DallmiSettings
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
Record = Dict[str, Any]  # an epoch's (or a blend's) scores, or a whole run's results


@dataclass(frozen=True)
class Method:
    """Config (None: the source model), target labels, settings and learning rate (None: the
    config's, or the tuned one if ``tuned``)."""

    config: Optional[str]
    labels: Optional[str] = None
    settings: Dict[str, Any] = field(default_factory=dict)
    learn_rate: Optional[float] = None
    tuned: bool = False
    average_from: Tuple[int, ...] = ()


def as_registered(methods: Dict[str, Method]) -> Dict[str, Method]:
    """``methods`` once they agree with the registry: names, order, labels, tuned ones."""
    registry.registered(methods, exactly=registry.BENCHMARK_METHODS)
    for name, method in methods.items():
        info = registry.METHOD_INFO[name]
        if method.labels != info.labels or (method.tuned and name not in registry.TUNED_METHODS):
            raise ValueError(f"{name}: {method} disagrees with the registry's {info}")
    return methods


_PAPER = {k: v for k, v in PAPER_SETTINGS.to_dict().items() if k not in ("objective", "seed")}
_TEACHER = {"teacher_weight": 1.0, "teacher_target": "posterior"}
# self-training: refreshed every 62 updates, one epoch on emotions (about four on pubmed)
_SELF = {**_TEACHER, "teacher_target": "mixture", "teacher_split": False}
_SELF["teacher_refresh_steps"] = 62
FT, ADAPT = "finetune.cfg", "adapt.cfg"  # under configs/
SWA_FROM = (1, 3)  # weight averages of epochs 1..E and 3..E, shipped candidates beside the blends
METHODS: Dict[str, Method] = as_registered(
    {
        "none": Method(None),
        "ft_partial": Method(FT, "partial", tuned=True),
        "ft_full": Method(FT, "full"),
        "an_ls": Method(FT, "partial", {"label_smoothing": 0.1}, tuned=True),
        "wan": Method(FT, "partial", {"negative_weighting": "wan"}, tuned=True),
        "aad": Method("aad", settings=AAD_SETTINGS),
        "dallmi": Method(ADAPT, "partial"),
        "dallmi_pu": Method(ADAPT, "partial", PU_ONLY),
        "dallmi_lambda0": Method(ADAPT, "partial", {**PU_ONLY, "mixup_lambda": 0.0}),
        "dallmi_paper": Method(ADAPT, "partial", _PAPER, PAPER_TRAINING["learn_rate"]),
        "ft_teacher": Method(FT, "partial", _TEACHER),
        "dallmi_teacher": Method(ADAPT, "partial", {**PU_ONLY, "teacher_weight": 0.5}),
        "ft_teacher_source": Method(FT, "partial", {**_TEACHER, "teacher_target": "source"}),
        "dallmi_posterior": Method(ADAPT, "partial", {**_TEACHER, "teacher_split": False}),
        "ft_teacher_mixture": Method(FT, "partial", {**_TEACHER, "teacher_target": "mixture"}),
        "ft_llr": Method(FT, "partial", {"large_loss_rejection": 0.2}),
        "dallmi_self": Method(ADAPT, "partial", _SELF),
        "dallmi_nnpu": Method(ADAPT, "partial", {"loss_form": "nnpu"}),
        "dallmi_split_any": Method(ADAPT, "partial", {"teacher_calibration": 0.0}),
        "dallmi_lr1e4": Method(ADAPT, "partial", learn_rate=1e-4),
        "dallmi_swa": Method(ADAPT, "partial", average_from=SWA_FROM),
        "ft_partial_swa": Method(FT, "partial", average_from=SWA_FROM),
        "ft_partial_lr5e5": Method(FT, "partial", learn_rate=5e-5),
    }
)


def parser(doc: str = __doc__) -> argparse.ArgumentParser:
    """The options of ``paired.py``, which the retired ``ablations.py`` takes too."""
    parser = environment.parser(doc, device=False, max_length=64, batch_size=32, threads=1)
    parser.add_argument("--dataset", default="emotions", choices=sorted(SIZES))
    parser.add_argument("--seeds", default="0,1,2,3,4", type=lambda s: list(map(int, s.split(","))))
    parser.add_argument("--ratios", default="0.7", type=lambda s: list(map(float, s.split(","))))
    parser.add_argument("--methods", default=",".join(METHODS), type=lambda s: s.split(","))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--source-epochs", type=int, default=20, help="upper bound")
    parser.add_argument("--source-patience", type=int, default=2, help="epochs without gain")
    parser.add_argument("--tuned", type=Path, help="default: tuned_<dataset>.json beside --results")
    parser.add_argument("--results", type=Path, help="default: results/paired_<dataset>[_quick]")
    parser.add_argument("--work", type=Path, help="corpora and source models; default /tmp/...")
    return parser


def parse_args(argv: List[str], options: Optional[argparse.ArgumentParser] = None):
    options = options or parser()
    args = options.parse_args(argv)
    if args.quick:  # tiny sizes, 2 epochs
        args.epochs, args.source_epochs, args.max_length, args.batch_size = 2, 2, 32, 16
    name = f"paired_{args.dataset}" + ("_quick" if args.quick else "")
    args.results = args.results or RESULTS / name
    args.work = args.work or Path("/tmp/dallmi_paired") / name
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        options.error(f"unknown methods {sorted(unknown)}; use {list(METHODS)}")
    return args


def beside(args: argparse.Namespace, prefix: str, suffix: str = "") -> Path:
    """``tune_<dataset>``, ``tuned_<dataset>.json`` and so on, next to the results folder."""
    return args.results.parent / (args.results.name.replace("paired_", prefix) + suffix)


def relative(overrides: Record, work: Path) -> Record:
    """Paths under the work folder as ``<work>/...``: no machine paths in committed files."""
    folder = str(work)
    return {
        k: "<work>" + v[len(folder) :] if isinstance(v, str) and v.startswith(folder) else v
        for k, v in overrides.items()
    }


class Protocol:
    """One dataset's protocol: its settings, each seed's corpora and source model, its cells."""

    def __init__(self, args: argparse.Namespace) -> None:
        torch.set_num_threads(args.threads)
        self.args = args
        self.sizes = QUICK_SIZES if args.quick else SIZES[args.dataset]
        tuned_path = args.tuned or beside(args, "tuned_", ".json")
        self.tuned = srsly.read_json(tuned_path)["chosen"] if tuned_path.exists() else {}
        self.tuned_from = tuned_path.name if self.tuned else None
        self.seeds: Dict[int, Tuple[SeedCorpora, Record]] = {}

    def shared(self) -> Record:
        """What every run of a results folder must share to be compared (checked on resume)."""
        a = self.args
        return {"dataset": a.dataset, "epochs": a.epochs, "source_epochs": a.source_epochs,
                "source_patience": a.source_patience, "max_length": a.max_length,
                "batch_size": a.batch_size, "backbone": Path(a.backbone).name,
                "sizes": self.sizes.__dict__, "quick": a.quick}  # fmt: skip

    def setup_seed(self, seed: int) -> Tuple[SeedCorpora, Record]:
        """The seed's corpora and ``none`` run, made once (a second process waits on the lock)."""
        a = self.args
        if seed not in self.seeds:
            a.work.mkdir(parents=True, exist_ok=True)
            with open(a.work / f"s{seed}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                corpora = prepare_seed(a.dataset, a.data_dir, a.work, seed, self.sizes)
                self.seeds[seed] = corpora, self.run_none(seed, corpora)
        return self.seeds[seed]

    def source_model(self, seed: int, corpora: SeedCorpora) -> Path:
        """The seed's source model, trained once as the project does: until its dev macro AP
        stops improving for ``--source-patience`` epochs, keeping the best epoch."""
        a = self.args
        folder = corpora.folder / "source"
        keys = ("source_epochs", "source_patience", "max_length", "batch_size", "backbone")
        wanted = {key: value for key, value in self.shared().items() if key in keys}
        if folder.exists():
            stored = srsly.read_json(folder / SOURCE_INFO).get("settings")
            if stored != wanted:
                raise SystemExit(f"{folder} was trained with {stored}, not {wanted}: delete it.")
            return folder
        overrides = {"paths.train": str(corpora.source_train),
                     "paths.dev": str(corpora.source_dev), "paths.backbone": a.backbone,
                     "system.seed": seed, "components.textcat.model.max_length": a.max_length,
                     "training.batcher.size": a.batch_size}  # fmt: skip
        config = str(CONFIGS / "source.cfg")
        run = corpora.folder / "source_run"
        start = time.perf_counter()
        train_epochs(config, run, a.source_epochs, patience=a.source_patience, overrides=overrides)
        info = srsly.read_json(run / TRAINING_FILE)
        info["train_seconds"] = time.perf_counter() - start
        learn_rate = load_config(config, interpolate=True)["training"]["optimizer"]["learn_rate"]
        info.update(settings=wanted, learn_rate=learn_rate["initial_rate"])
        info["overrides"] = relative(overrides, a.work)
        srsly.write_json(run / "model-best" / SOURCE_INFO, info)
        (run / "model-best").rename(folder)
        shutil.rmtree(run)
        return folder

    def run_none(self, seed: int, corpora: SeedCorpora) -> Record:
        """Score the source model (epoch 0 of every run); written once per seed."""
        folder = self.source_model(seed, corpora)
        path = self.args.results / f"{run_key(seed, None, 'none')}.json"
        spec = {**self.shared(), "method": "none"}
        if existing(path, spec):
            return srsly.read_json(path)
        start = time.perf_counter()
        body = {
            "docs": prepared_counts(corpora),
            "source_training": srsly.read_json(folder / SOURCE_INFO),
            "epochs": [{"epoch": 0, "step": 0, **Evaluator(corpora)(spacy.load(folder))}],
        }
        return self.write(path, seed, None, spec, body, start)

    def method_overrides(self, method: Method, seed: int, ratio, corpora: SeedCorpora) -> Record:
        partial = method.labels == "partial"
        return {
            "paths.source": str(corpora.folder / "source"),
            "paths.train": str(corpora.fit(ratio) if partial else corpora.fit_full),
            "paths.dev": str(corpora.val(ratio) if partial else corpora.val_full),
            "system.seed": seed,
            "training.batcher.size": self.args.batch_size,
            **{f"{SETTINGS_KEY}.{k}": v for k, v in method.settings.items()},
        }

    def run(self, name: str, seed: int, ratio, method=None, path=None, spec_extra=None) -> Record:
        """One cell: ``method`` (default: the paired method ``name``) at ``seed`` and ``ratio``,
        trained into ``path`` (default: its paired result file) unless it is there, made with
        the same effective settings (config defaults filled in) and ``spec_extra``."""
        method = method or METHODS[name]
        corpora, source = self.setup_seed(seed)
        if method.config is None:
            return source
        path = path or self.args.results / f"{run_key(seed, ratio, name)}.json"
        lr = method.learn_rate
        if lr is None and method.tuned and name in self.tuned:
            lr = self.tuned[name]["learn_rate"]
        if method.config == "aad":
            effective = {**AAD_SETTINGS, **method.settings}
            if lr is not None:
                effective["learn_rate"] = lr
        else:
            config = str(CONFIGS / method.config)
            overrides = self.method_overrides(method, seed, ratio, corpora)
            if lr is not None:
                overrides[LEARN_RATE_KEY] = lr
            effective = effective_settings(config, overrides)
        partial = method.labels == "partial"
        spec = {
            **self.shared(),
            "method": name,
            "settings": effective,
            "tuned_from": self.tuned_from if method.tuned else None,
            **({"blend_alphas": list(ALPHAS)} if partial else {}),
            **({"average_from": list(method.average_from)} if method.average_from else {}),
            **(spec_extra or {}),
        }
        if existing(path, spec):
            print(f"[paired] {path.stem}: done before, skipped", flush=True)
            return srsly.read_json(path)
        print(f"[paired] {path.stem}: training", flush=True)
        start = time.perf_counter()
        evaluate = Evaluator(corpora, source=spacy.load(corpora.folder / "source"))
        if method.config == "aad":
            run = train_aad(self, seed, corpora, effective, evaluate)
        else:
            load_source = lambda: spacy.load(corpora.folder / "source")  # noqa: E731
            run = train_run(
                config, overrides, self.args.epochs, evaluate, method.average_from, load_source
            )
        blends, averages = [], []
        if partial:  # WiSE-FT: (1 - alpha)·source + alpha·adapted
            source_nlp, blend = (spacy.load(corpora.folder / "source") for _ in range(2))
            for alpha in ALPHAS:
                interpolate_into(blend, source_nlp, run["nlp"], alpha)
                blends.append({"alpha": alpha, **evaluate(blend)})
            for first, average in run.get("averages", {}).items():  # SWA of epochs first..E
                if average.count:  # none in a run shorter than ``first`` epochs (--quick)
                    averages.append({"from_epoch": first, **evaluate(average.pipeline)})
        unrecorded = ("nlp", "records", "overrides", "averages")
        body = {
            "run": {k: v for k, v in run.items() if k not in unrecorded},
            "overrides": relative(run.get("overrides", {}), self.args.work),
            "docs": prepared_counts(corpora),
            "source_training": source["source_training"],
            "epochs": [source["epochs"][0], *run["records"]],
            "blends": blends,
            **({"averages": averages} if averages else {}),
        }
        payload = self.write(path, seed, ratio, spec, body, start)
        last, seconds = payload["last"]["macro_ap"], payload["wall_seconds"]
        print(f"[paired] {path.stem}: macro AP {100 * last:.1f} in {seconds:.0f} s", flush=True)
        return payload

    def write(self, path: Path, seed: int, ratio, spec: Record, body: Record, start) -> Record:
        """Write a finished run (through a ``.partial`` file: a killed process leaves none)."""
        ratios = [ratio_name(r) for r in (RATIOS if ratio is None else [ratio])]
        payload = {
            "key": path.stem,
            "dataset": self.args.dataset,
            "seed": seed,
            "ratio": ratio,
            "method": spec["method"],
            "protocol": spec,
            **body,
            **summarise_records(
                body["epochs"], ratios, body.get("blends", ()), body.get("averages", ())
            ),
            "wall_seconds": time.perf_counter() - start,
            **provenance(omp_num_threads=os.environ.get("OMP_NUM_THREADS")),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        srsly.write_json(partial, payload)
        partial.rename(path)
        return payload


def select(
    records: List[Record],
    rname: str,
    criterion: str,
    confidence=0.0,
    guard=None,
    blends=None,
    averages=(),
) -> Record:
    """The epoch the product's rule (:func:`~spacy_dallmi.selection.choose`) picks by the
    validation ``criterion``, ties to the earliest (the source first). With ``blends``, what the
    product ships (``training._select_shipped``) among the source, its blends with the last
    epoch, the weight ``averages`` and ``model-best`` (the best trained epoch, the later of
    equal ones), ties to the source, then the blends, the averages, the checkpoint."""
    source, *trained = records
    if blends is None:  # (distance from the source, epoch, candidate)
        candidates = [(r["epoch"], r["epoch"], r) for r in records]
    else:
        checkpoint = max(trained, key=lambda r: (r["val"][rname][criterion], r["epoch"]))
        last = records[-1]["epoch"]
        candidates = [(0.0, 0, source), *((b["alpha"], last, b) for b in blends)]
        candidates.extend((1.0, last, a) for a in averages)
        candidates.append((1.0 + checkpoint["epoch"], checkpoint["epoch"], checkpoint))
    vals = [c[2]["val"][rname] for c in candidates]  # the source first, the nearest first
    wins = {i: val.get("pu_win", 0.0) for i, val in enumerate(vals)}
    guards = None if guard is None else {i: val[guard] for i, val in enumerate(vals)}
    scores = {i: val[criterion] for i, val in enumerate(vals)}
    distance, epoch, best = candidates[choose(scores, wins, confidence, 0, guards)]
    alpha = {} if blends is None else {"alpha": 0.0 if epoch == 0 else min(distance, 1.0)}
    if "from_epoch" in best:
        alpha["average_from"] = best["from_epoch"]
    return {"epoch": epoch, **alpha, "val": best["val"][rname][criterion], "test": best["test"]}


def criteria(records: List[Record], rname: str) -> Dict[str, Tuple[str, float, Optional[str]]]:
    """Criterion -> (score, confidence, guard); the confident ones only if all record pu_win."""
    found = {c: (c, 0.0, None) for c in CRITERIA}
    found.update({name: (score, 0.0, guard) for name, (score, guard) in GUARDED.items()})
    if all("pu_win" in r["val"][rname] for r in records if r["epoch"] != 0):
        found.update({name: (score, share, None) for name, (score, share) in CONFIDENT.items()})
    return found


def summarise_records(
    records: List[Record], ratios: Sequence[str], blends=(), averages=()
) -> Record:
    """The last epoch's test scores, and per ratio and criterion the selected and shipped ones."""

    def picked(**blended: Any) -> Record:
        specs = {r: criteria(records, r).items() for r in ratios}
        return {r: {c: select(records, r, *s, **blended) for c, s in specs[r]} for r in ratios}

    summary = {"last": records[-1]["test"], "selected": picked()}
    return {**summary, "shipped": picked(blends=blends, averages=averages)} if blends else summary


def run_key(seed: int, ratio: Optional[float], method: str) -> str:
    return f"s{seed}_{method}" if ratio is None else f"s{seed}_{ratio_name(ratio)}_{method}"


def before_added(settings: Record) -> Record:
    """The values of the settings added since a run was stored, where today's default would
    train otherwise (``teacher_calibration`` matters with ``teacher_split`` and a teacher)."""
    split = settings.get("teacher_split") and settings.get("teacher_weight", 0) > 0
    return {"teacher_calibration": 0.0} if split else {}


def existing(path: Path, protocol: Record) -> bool:
    """Whether ``path`` holds a finished run of this protocol; a run of another is an error."""
    stored = srsly.read_json(path)["protocol"] if path.exists() else None
    if stored and "objective" in (stored.get("settings") or {}):  # a setting added since
        settings = stored["settings"]
        stored["settings"] = {**DallmiSettings().to_dict(), **before_added(settings), **settings}
    # compared after the same JSON round trip, which does not keep every float's last digit
    if stored not in (None, srsly.json_loads(srsly.json_dumps(protocol))):
        raise SystemExit(
            f"{path.name} was made with other settings:\n  stored  {stored}\n  current {protocol}"
            "\nUse another --results folder, or delete the file to re-run it."
        )
    return stored is not None


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    protocol = Protocol(args)
    for seed in args.seeds:
        for name in args.methods:
            for ratio in args.ratios if METHODS[name].labels == "partial" else [None]:
                protocol.run(name, seed, ratio)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Speed benchmark of the ``dallmi_textcat`` training step: its time and peak memory.

Not a test: the numbers depend on the machine and its load (``benchmarks/README.md`` explains
them). 1. the step of ``bce``, ``dallmi`` and ``dallmi``+MixUp on PubMed, in ONE process taking
turns, the order rotating, so that a burst of load hits all alike (medians over the timed
rounds); 2. peak memory of training and of ``nlp.pipe``, each phase in its own process. The
one-off comparisons (the reference code's per-label MixUp loop, plain transformers, the step
against labels and batch size) ran until commit 00e7ef8 (README).

    python benchmarks/speed.py [--gpu-id 0] [--quick]   # results/speed_<device>[_quick].{json,md}
"""

import csv
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from argparse import SUPPRESS, Namespace
from collections import namedtuple
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import environment as env
import numpy
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam, set_gpu_allocator

from spacy_dallmi.architecture import resolve_backbone
from spacy_dallmi.batcher import cycle_batch_indices
from spacy_dallmi.experiments.datasets import MESH_ROOTS
from spacy_dallmi.experiments.protocol import hide_labels
from spacy_dallmi.experiments.readers import parse_literal_list

ALL_PARTS = ("training", "memory")
MEMORY_PHASES = ("train-bce", "train-dallmi-mixup", "infer-spacy")
TRAIN_CONFIGS = ("bce", "dallmi", "dallmi+mixup")
LEARN_RATE, DROPOUT = 5e-5, 0.1  # spaCy's default [training.optimizer], the paper's rate
HIDE_RATIO, SEED = 0.5, 0
TARGET_MIXUP_OVER_BCE = 1.3  # the package's promise (benchmarks/README.md)
#: The options --quick shrinks (rounds, texts, steps), recorded with every result.
QUICK = dict(warmup=1, steps=2, inference_texts=128, memory_steps=1)
PubMed = namedtuple("PubMed", "texts labels female n_pieces files")


def configure(argv: Sequence[str]) -> Namespace:
    """The options, plus ``device`` ("cpu"/"gpu"), ``use_gpu`` and ``sync`` (waits for it);
    sets the threads, silences truncation notices and selects the GPU as ``spacy train`` does,
    with PyTorch's allocator so that ``torch.cuda.max_memory_allocated`` sees thinc's arrays."""
    from transformers.utils import logging  # transformers is imported where used: memory counts

    options = env.parser(__doc__)
    add = options.add_argument
    add("--warmup", type=int, default=2, help="untimed rounds, training part")
    add("--steps", type=int, default=6, help="timed rounds, training part")
    add("--inference-texts", type=int, default=512, help="texts of the memory part's nlp.pipe")
    add("--memory-steps", type=int, default=3)
    add("--parts", nargs="+", choices=ALL_PARTS, default=ALL_PARTS, help="a subset: *_partial.*")
    add("--phase", choices=MEMORY_PHASES, help=SUPPRESS)  # a memory subprocess's, JSON out
    s = options.parse_args(argv)
    if s.quick:
        vars(s).update(QUICK)
    if s.steps < 1:
        options.error("--steps must be at least 1")
    s.data_dir, s.output_dir = (path.expanduser().resolve() for path in (s.data_dir, s.output_dir))
    s.parts = [part for part in ALL_PARTS if part in s.parts]
    s.use_gpu, s.device = s.gpu_id >= 0, "gpu" if s.gpu_id >= 0 else "cpu"
    s.sync = torch.cuda.synchronize if s.use_gpu else None
    warnings.filterwarnings("ignore", message=".*longer than max_length.*")
    warnings.filterwarnings("ignore", message=".*no known positive for label.*")
    logging.set_verbosity_error()
    if s.threads:
        torch.set_num_threads(s.threads)
    if s.use_gpu:
        spacy.require_gpu(s.gpu_id)
        set_gpu_allocator("pytorch")
        torch.cuda.reset_peak_memory_stats()
    return s


def gpu_peak(s: Namespace) -> Optional[int]:
    """The GPU's peak allocation since the start (each part runs first in its process)."""
    return int(torch.cuda.max_memory_allocated()) if s.use_gpu else None


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    median, values = round(statistics.median(values), 4), [round(v, 4) for v in values]
    return dict(median_s=median, min_s=min(values), max_s=max(values), n=len(values), all_s=values)


def load_pubmed(data_dir: Path, backbone: str) -> PubMed:
    """Every unique abstract: text, MeSH roots, target domain (``Female``), word pieces."""
    from transformers import AutoTokenizer

    files = sorted((data_dir / "pubmed").glob("*.csv"))
    if not files:
        raise SystemExit(f"No PubMed CSV files in {data_dir / 'pubmed'}: pass --data-dir.")
    seen, texts, labels, female = set(), [], [], []  # rows are not kept: memory is measured
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["pmid"] not in seen:
                    seen.add(row["pmid"])
                    texts.append(f"{row['Title'].strip()} {row['abstractText'].strip()}".strip())
                    labels.append([float(row[root]) for root in MESH_ROOTS])
                    female.append("Female" in parse_literal_list(row["meshMajor"]))
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(backbone))
    encoded = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    n_pieces = numpy.asarray([len(ids) for ids in encoded])
    files = [str(path.relative_to(data_dir)) for path in files]  # no machine paths
    return PubMed(texts, numpy.asarray(labels, "float32"), numpy.asarray(female), n_pieces, files)


def training_indices(data: PubMed, max_length: int) -> numpy.ndarray:
    """Target-domain documents that fill ``max_length`` word pieces, in a seeded order."""
    keep = numpy.flatnonzero(data.female)
    return numpy.random.default_rng(SEED).permutation(keep[data.n_pieces[keep] >= max_length])


def training_data(data: PubMed, s: Namespace) -> Tuple[List[str], Any, Any, List]:
    """Texts, full and known labels (the protocol's hiding) and the cycle batcher's full batches."""
    order = training_indices(data, s.max_length)
    full = data.labels[order]
    known = hide_labels(full, HIDE_RATIO, "per_sample", SEED).partial
    positives = [numpy.flatnonzero(row == 1.0).tolist() for row in known]
    rng = numpy.random.default_rng(SEED)
    batches = cycle_batch_indices(positives, known.shape[1], s.batch_size, rng)
    batches = [batch for batch in batches if len(batch) == s.batch_size]
    if not batches:
        raise SystemExit(f"Not enough documents for one full batch of {s.batch_size}.")
    if not all((known[batch].any(axis=0) >= known.any(axis=0)).all() for batch in batches):
        raise AssertionError("cycle batcher broke its coverage guarantee")
    return [data.texts[i] for i in order], full, known, batches


def make_examples(nlp: Language, texts: Sequence[str], matrix: Any) -> List[Example]:
    """Examples whose ``cats`` hold every label: 1.0 positive, 0.0 negative/unlabeled."""
    return [
        Example.from_dict(nlp.make_doc(text), {"cats": dict(zip(MESH_ROOTS, map(float, row)))})
        for text, row in zip(texts, matrix, strict=True)
    ]


def build_pipeline(s: Namespace, objective: str, mixup: bool) -> Tuple[Language, Any]:
    """A blank pipeline with one ``dallmi_textcat``, and spaCy's default optimizer; initialise
    it with ``nlp.initialize(lambda: examples)``, as spacy train would."""
    nlp = spacy.blank("en")
    arch = "spacy_dallmi.TransformerClassifier.v1"
    model = {"@architectures": arch, "name": s.backbone, "max_length": s.max_length}
    nlp.add_pipe("dallmi_textcat", config={"objective": objective, "mixup": mixup, "model": model})
    return nlp, Adam(LEARN_RATE, L2=0.01, grad_clip=1.0, use_averages=False)


def training_step(s: Namespace, name: str, texts, full, known, batches) -> Callable[[int], Any]:
    """``name``'s update on the i-th of ``batches``, cyclically (``bce`` sees all labels)."""
    matrix = full if name == "bce" else known
    nlp, optimizer = build_pipeline(s, name.split("+")[0], name == "dallmi+mixup")
    egs = [make_examples(nlp, [texts[i] for i in batch], matrix[batch]) for batch in batches]
    nlp.initialize(lambda: egs[0])
    return lambda i: nlp.update(egs[i % len(egs)], sgd=optimizer, drop=DROPOUT)


def base_shapes(s: Namespace, **extra: Any) -> Dict[str, Any]:
    return {"batch": s.batch_size, "max_length": s.max_length, "labels": len(MESH_ROOTS), **extra}


def add(results: Dict[str, Any], part: str, name: str, shapes: Dict, **values: Any) -> None:
    """A measurement, with its date and what it was measured on."""
    context = {key: results["context"][key] for key in ("machine", "versions", "backbone", "git")}
    measurement = {"part": part, "name": name, "shapes": shapes, **values, "date": env.now()}
    results["measurements"].append({**measurement, **context})


def write(s: Namespace, results: Dict[str, Any]) -> Path:
    """The JSON and Markdown, rewritten after every part."""
    stem = f"speed_{s.device}" + (f"_threads{s.threads}" if s.threads else "")
    stem += ("_quick" if s.quick else "") + ("_partial" if len(s.parts) < len(ALL_PARTS) else "")
    return env.write_report(s.output_dir, stem, results, markdown(results))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def mib(value: Optional[int]) -> str:
    return "n/a" if value is None else f"{value / 1024**2:.0f}"


def markdown(payload: Dict[str, Any]) -> str:
    ctx, measured = payload["context"], payload["measurements"]
    threads, settings = ctx["machine"]["torch_threads"], ctx["settings"]
    shares = [m["cpu_per_wall"] for m in measured if m.get("cpu_per_wall") is not None]
    share = statistics.median(shares) if shares and not ctx["machine"].get("gpu") else threads
    lines = [
        *env.report_header("speed", ctx, f"- backbone: {ctx['backbone']['name']}"),
        f"- optimizer: {settings['optimizer']}, dropout {settings['dropout']}",
        f"- load average (1, 5, 15 min) at start: {ctx.get('load_start')}, "
        f"at end: {ctx.get('load_end')}",
        "- CPU s per wall s (tables): CPU time this process got per second of a step; close to "
        f"the torch thread count ({threads}) means the step had the cores to itself, much lower "
        "means other processes were competing.", "",
        *([f"**Warning: contended run.** Median CPU s per wall s was {share:.2f} for {threads} "
           "torch threads: other processes took CPU time.", ""] if share < 0.75 * threads else []),
    ]  # fmt: skip
    if "training" in payload["summary"]:
        t = {key: fmt(value) for key, value in payload["summary"]["training"].items()}
        header = "configuration, median step (s), min, max, docs/s, CPU s per wall s"
        rows = [
            [m["name"], *(fmt(m["step"][key]) for key in ("median_s", "min_s", "max_s")),
             fmt(m["docs_per_s"], 1), fmt(m["cpu_per_wall"], 2)]
            for m in measured if m["part"] == "training"
        ]  # fmt: skip
        lines += [
            "## 1. Training throughput", "",
            f"Batch {t['batch']}, max length {t['max_length']}, {t['labels']} labels, "
            f"{t['timed_rounds']} timed round-robin rounds after {t['warmup_rounds']} warm-up "
            "rounds.", "", *env.table(header.split(", "), rows),
            f"- dallmi+MixUp step / bce step: **{t['mixup_over_bce']}** (paired per round: "
            f"{t['mixup_over_bce_paired']}); target <= {TARGET_MIXUP_OVER_BCE}: "
            f"{t['mixup_over_bce_target_met']}",
            f"- dallmi (no MixUp) step / bce step: {t['dallmi_over_bce']}", "",
        ]  # fmt: skip
    rows, keys = [], ("rss_after_setup_bytes", "peak_rss_bytes", "gpu_max_allocated_bytes")
    for m in (m for m in measured if m["part"] == "memory"):
        setup, peak, gpu = (m[key] for key in keys)
        rows.append([m["name"], *map(mib, (setup, peak, peak - setup, gpu))])
    if rows:
        header = "phase, RSS after setup, peak RSS, peak - setup, GPU max allocated".split(", ")
        lines += ["## 2. Peak memory (each in its own process)", ""]
        lines += env.table([header[0], *(f"{name} (MiB)" for name in header[1:])], rows)
    return "\n".join(lines)


def run_training(s: Namespace, data: PubMed, results: Dict[str, Any]) -> None:
    """Part 1: the three configurations on the same cycle-batcher batches."""
    print("[training] building pipelines", flush=True)
    texts, full, known, batches = training_data(data, s)
    rounds = s.warmup + s.steps
    chosen = [batches[r % len(batches)] for r in range(rounds)]
    steps = {name: training_step(s, name, texts, full, known, chosen) for name in TRAIN_CONFIGS}
    step, order = lambda name, rnd: steps[name](rnd), partial(env.rotated, TRAIN_CONFIGS)
    times, _, load = env.round_robin("training", step, order, rounds, s.warmup, s.sync)
    shapes = base_shapes(s, word_pieces_per_doc=s.max_length)
    note = f"{len(texts)} target-domain PubMed abstracts with >= {s.max_length} word pieces; "
    note += f"{len(batches)} distinct cycle-batcher batches"
    for name in TRAIN_CONFIGS:
        wall, cpu = zip(*times[name])
        shares = [c / w for w, c in times[name] if w > 0]
        record = dict(step=summarize(wall), step_cpu_time=summarize(cpu))
        record["cpu_per_wall"] = round(statistics.median(shares), 2) if shares else None
        record.update(load, gpu_max_allocated_bytes=gpu_peak(s))
        record["docs_per_s"] = round(s.batch_size / record["step"]["median_s"], 2)
        record["data"] = note + ("; ~50% of positives hidden" if name != "bce" else "; all labels")
        add(results, "training", name, shapes, **record)
    wall = {name: [w for w, _ in times[name]] for name in TRAIN_CONFIGS}
    med = {name: statistics.median(values) for name, values in wall.items()}
    paired = statistics.median(m / b for m, b in zip(wall["dallmi+mixup"], wall["bce"]))
    over_bce = round(med["dallmi+mixup"] / med["bce"], 3)
    results["summary"]["training"] = {
        **base_shapes(s, warmup_rounds=s.warmup, timed_rounds=s.steps),
        "median_step_s": {name: round(med[name], 4) for name in TRAIN_CONFIGS},
        "docs_per_s": {name: round(s.batch_size / med[name], 2) for name in TRAIN_CONFIGS},
        "mixup_over_bce": over_bce,
        "mixup_over_bce_paired": round(paired, 3),
        "mixup_over_bce_target_met": over_bce <= TARGET_MIXUP_OVER_BCE,
        "dallmi_over_bce": round(med["dallmi"] / med["bce"], 3),
    }


def memory_phase(s: Namespace, phase: str) -> Dict[str, Any]:
    """Part 2: ONE phase in this (fresh) process, and its peak resident memory."""
    data = load_pubmed(s.data_dir, s.backbone)
    shapes = base_shapes(s)
    if phase.startswith("train"):
        texts, full, known, batches = training_data(data, s)
        name = "bce" if phase == "train-bce" else "dallmi+mixup"
        update = training_step(s, name, texts, full, known, batches[: s.memory_steps])
        setup_rss = env.read_proc_status("VmRSS")
        for step in range(s.memory_steps):
            update(step)
        shapes["steps"] = s.memory_steps
    else:  # nlp.pipe over target texts with an untrained head
        nlp, _ = build_pipeline(s, "bce", False)
        nlp.initialize(lambda: make_examples(nlp, data.texts[:8], data.labels[:8]))
        texts = [data.texts[i] for i in numpy.flatnonzero(data.female)[: s.inference_texts]]
        labels = nlp.get_pipe("dallmi_textcat").labels
        setup_rss = env.read_proc_status("VmRSS")
        docs = nlp.pipe(texts, batch_size=s.batch_size)
        numpy.asarray([[doc.cats[label] for label in labels] for doc in docs])
        shapes["texts"] = len(texts)
    if s.sync:
        s.sync()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hwm = env.read_proc_status("VmHWM")
    return dict(phase=phase, shapes=shapes, rss_after_setup_bytes=setup_rss,
                peak_rss_bytes=hwm if hwm is not None else maxrss, ru_maxrss_bytes=maxrss,
                vm_hwm_bytes=hwm, gpu_max_allocated_bytes=gpu_peak(s))  # fmt: skip


def run_memory(s: Namespace, results: Dict[str, Any], argv: Sequence[str]) -> None:
    note = "peak RSS is VmHWM of the subprocess (ru_maxrss as fallback); setup = after "
    note += "imports, data loading and pipeline initialisation"
    for phase in MEMORY_PHASES:
        print(f"[memory] {phase}", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--data-dir"]
        command += [str(s.data_dir), "--phase", phase]
        started = time.perf_counter()
        out = subprocess.run(command, check=True, cwd=env.REPO_ROOT, stdout=subprocess.PIPE)
        measured = json.loads(out.stdout.decode("utf-8").splitlines()[-1])
        wall_s = round(time.perf_counter() - started, 1)
        add(results, "memory", phase, measured.pop("shapes"), **measured, note=note, wall_s=wall_s)
        write(s, results)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    s = configure(argv)
    if s.phase:
        print(json.dumps(memory_phase(s, s.phase)))
        return 0
    started = time.perf_counter()
    print(f"[setup] reading {s.data_dir / 'pubmed'}", flush=True)
    data = load_pubmed(s.data_dir, s.backbone)
    settings = {key: getattr(s, key) for key in (*QUICK, "quick")} | {"dropout": DROPOUT}
    settings["optimizer"] = f"thinc Adam(learn_rate={LEARN_RATE}, L2=0.01, grad_clip=1.0)"
    # the backbone's name only: the package's folder is a machine path (versions records it)
    gpu, backbone = s.gpu_id if s.use_gpu else None, {"name": s.backbone}
    context = env.provenance(gpu, device=s.device, backbone=backbone, settings=settings,
                             load_start=env.load_average())  # fmt: skip
    filling = len(training_indices(data, s.max_length))
    context["data"] = dict(files=data.files, unique_docs=len(data.texts),
        target_docs=int(data.female.sum()), target_docs_filling_max_length=filling)  # fmt: skip
    results: Dict[str, Any] = {"context": context, "summary": {}, "measurements": []}
    if "training" in s.parts:
        run_training(s, data, results)
        write(s, results)
        gc.collect()
    if "memory" in s.parts:
        run_memory(s, results, argv)
    context["load_end"] = env.load_average()
    context["total_wall_s"] = round(time.perf_counter() - started, 1)
    print(f"wrote {write(s, results)} and its .md in {context['total_wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

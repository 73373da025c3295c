"""Speed benchmark of the ``dallmi_textcat`` component: training, MixUp, inference, memory, scaling.

Not a test: the numbers depend on the machine and its load. The parts (``benchmarks/README.md``
explains each number): 1. the training step of ``bce``, ``dallmi`` and ``dallmi``+MixUp on PubMed;
2. our batched MixUp against the reference code's per-label loop (``2 * L`` gradient-free passes
of batch size 1); 3. ``nlp.pipe`` against plain transformers; 4. peak memory, each phase in its
own process; 5. the step against the number of labels and the batch size. A part's
configurations share ONE process and take their steps round-robin, the order rotating, so a
burst of load hits all alike; figures are medians over the timed rounds.

    python benchmarks/speed.py [--gpu-id 0] [--quick]   # results/speed_<device>[_quick].{json,md}
"""

import argparse
import csv
import functools
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import namedtuple
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import environment as env
import numpy
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam, set_gpu_allocator, xp2torch

from spacy_dallmi.architecture import get_hf_objects, resolve_backbone, tokenize
from spacy_dallmi.batcher import cycle_batch_indices
from spacy_dallmi.experiments.datasets import MESH_ROOTS
from spacy_dallmi.experiments.protocol import hide_labels
from spacy_dallmi.experiments.readers import parse_literal_list

ALL_PARTS = ("training", "inference", "scaling", "memory")
MEMORY_PHASES = ("train-bce", "train-dallmi-mixup", "infer-spacy", "infer-transformers")
TRAIN_CONFIGS = ("bce", "dallmi", "dallmi+mixup")
LEARN_RATE, DROPOUT = 5e-5, 0.1  # spaCy's default [training.optimizer], the paper's rate
HIDE_RATIO, SYNTHETIC_DENSITY, SEED = 0.5, 0.05, 0
# The targets the package promises (see benchmarks/README.md).
TARGET_MIXUP_OVER_BCE, TARGET_GPU_MIXUP_PART_SPEEDUP, TARGET_INFERENCE_RATIO = 1.3, 5.0, 0.9
#: The options --quick shrinks (rounds, texts, repetitions), recorded with every result.
QUICK = dict(warmup=1, steps=2, scaling_warmup=0, scaling_steps=1, inference_texts=128)
QUICK.update(inference_reps=1, memory_steps=1)
Times = List[Tuple[float, float]]  # (wall, CPU) seconds of each timed round
PubMed = namedtuple("PubMed", "texts labels female n_pieces files")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options, plus ``device`` ("cpu"/"gpu"), ``use_gpu`` and ``sync`` (waits for it)."""
    options = env.parser(__doc__)
    add = options.add_argument
    add("--warmup", type=int, default=2, help="untimed rounds, training part")
    add("--steps", type=int, default=6, help="timed rounds, training part")
    add("--scaling-warmup", type=int, default=2)
    add("--scaling-steps", type=int, default=3)
    add("--scaling-labels", type=int, nargs="+", default=[8, 14, 32, 64])
    add("--scaling-batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    add("--scaling-batch-labels", type=int, default=14)
    add("--inference-texts", type=int, default=512)
    add("--inference-reps", type=int, default=3)
    add("--memory-steps", type=int, default=3)
    add("--parts", nargs="+", choices=ALL_PARTS, default=ALL_PARTS, help="a subset: *_partial.*")
    add("--phase", choices=MEMORY_PHASES, help=argparse.SUPPRESS)  # a memory subprocess's
    add("--phase-output", type=Path, help=argparse.SUPPRESS)
    s = options.parse_args(argv)
    if s.quick:
        vars(s).update(QUICK)
    if min(s.steps, s.scaling_steps, s.inference_reps) < 1:
        options.error("--steps, --scaling-steps and --inference-reps must be at least 1")
    s.data_dir = s.data_dir.expanduser().resolve()
    s.output_dir = s.output_dir.expanduser().resolve()
    s.parts = [part for part in ALL_PARTS if part in s.parts]
    s.use_gpu, s.device = s.gpu_id >= 0, "gpu" if s.gpu_id >= 0 else "cpu"
    s.sync = torch.cuda.synchronize if s.use_gpu else None
    return s


def setup(s: argparse.Namespace) -> None:
    """Threads, no truncation notices, and the GPU as ``spacy train`` selects it, with PyTorch's
    allocator so that ``torch.cuda.max_memory_allocated`` also sees thinc's arrays."""
    from transformers.utils import logging  # transformers is imported where used: memory counts

    warnings.filterwarnings("ignore", message=".*longer than max_length.*")
    warnings.filterwarnings("ignore", message=".*no known positive for label.*")
    logging.set_verbosity_error()
    if s.threads:
        torch.set_num_threads(s.threads)
    if s.use_gpu:
        spacy.require_gpu(s.gpu_id)
        set_gpu_allocator("pytorch")
        torch.cuda.reset_peak_memory_stats()


def gpu_peak(s: argparse.Namespace, reset: bool = False) -> Optional[int]:
    """The GPU's peak allocation; ``reset`` starts a part's peak from zero instead."""
    if s.use_gpu and reset:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return int(torch.cuda.max_memory_allocated()) if s.use_gpu and not reset else None


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    median, values = round(statistics.median(values), 4), [round(v, 4) for v in values]
    return dict(median_s=median, min_s=min(values), max_s=max(values), n=len(values), all_s=values)


def timing(s: argparse.Namespace, times: Times, load: Dict, key: str = "step") -> Dict[str, Any]:
    wall, cpu = zip(*times)
    record = {key: summarize(wall), **({"step_cpu_time": summarize(cpu)} if key == "step" else {})}
    shares = [c / w for w, c in times if w > 0]
    record["cpu_per_wall"] = round(statistics.median(shares), 2) if shares else None
    return {**record, **load, "gpu_max_allocated_bytes": gpu_peak(s)}


def ratio(numerator: float, denominator: float) -> Optional[float]:
    return round(numerator / denominator, 3) if denominator > 0 else None


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


def training_data(data: PubMed, s: argparse.Namespace) -> Tuple[List[str], Any, Any, List]:
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


def synthetic_labels(n_docs: int, n_labels: int, rng: numpy.random.Generator) -> numpy.ndarray:
    """A random 0/1 matrix with >= 1 positive and >= 1 unlabeled document per label."""
    matrix = (rng.random((n_docs, n_labels)) < SYNTHETIC_DENSITY).astype("float32")
    for label in range(n_labels):
        if not matrix[:, label].any():
            matrix[rng.integers(n_docs), label] = 1.0
        if matrix[:, label].all():
            matrix[rng.integers(n_docs), label] = 0.0
    return matrix


def make_examples(nlp: Language, texts, matrix, names=MESH_ROOTS) -> List[Example]:
    """Examples whose ``cats`` hold every label: 1.0 positive, 0.0 negative/unlabeled."""
    return [
        Example.from_dict(nlp.make_doc(text), {"cats": dict(zip(names, map(float, row)))})
        for text, row in zip(texts, matrix, strict=True)
    ]


def build_pipeline(s: argparse.Namespace, objective: str, mixup: bool) -> Tuple[Language, Any]:
    """A blank pipeline with one ``dallmi_textcat``, and spaCy's default optimizer; initialise
    it with ``nlp.initialize(lambda: examples)``, as spacy train would."""
    nlp = spacy.blank("en")
    arch = "spacy_dallmi.TransformerClassifier.v1"
    model = {"@architectures": arch, "name": s.backbone, "max_length": s.max_length}
    nlp.add_pipe("dallmi_textcat", config={"objective": objective, "mixup": mixup, "model": model})
    return nlp, Adam(LEARN_RATE, L2=0.01, grad_clip=1.0, use_averages=False)


def training_pipeline(s, name: str, texts, full, known, batches) -> Tuple:
    """``name``'s pipeline, optimizer and example batches: ``bce`` sees all labels."""
    matrix = full if name == "bce" else known
    nlp, optimizer = build_pipeline(s, name.split("+")[0], name == "dallmi+mixup")
    egs = [make_examples(nlp, [texts[i] for i in batch], matrix[batch]) for batch in batches]
    nlp.initialize(lambda: egs[0])
    return nlp, optimizer, egs


def base_shapes(s: argparse.Namespace, **extra: Any) -> Dict[str, Any]:
    return {"batch": s.batch_size, "max_length": s.max_length, "labels": len(MESH_ROOTS), **extra}


def update(nlp: Language, optimizer: Any, batch: List[Example]) -> None:
    nlp.update(batch, sgd=optimizer, drop=DROPOUT)


def inference_setup(s: argparse.Namespace, data: PubMed) -> Tuple[List[str], Language]:
    nlp, _ = build_pipeline(s, "bce", False)
    examples = make_examples(nlp, data.texts[:8], data.labels[:8])
    nlp.initialize(lambda: examples)
    return [data.texts[i] for i in numpy.flatnonzero(data.female)[: s.inference_texts]], nlp


def spacy_predict(s: argparse.Namespace, nlp: Language, texts: Sequence[str]) -> numpy.ndarray:
    labels = nlp.get_pipe("dallmi_textcat").labels
    docs = nlp.pipe(texts, batch_size=s.batch_size)
    return numpy.asarray([[doc.cats[label] for label in labels] for doc in docs])


def linear_head(nlp: Language, device: Any) -> Tuple[torch.Tensor, ...]:
    head = nlp.get_pipe("dallmi_textcat").model.layers[2]
    return tuple(xp2torch(head.get_param(name), device=device) for name in "Wb")


def naive_mixup_loop(nlp: Language, tokens: Any, positives: numpy.ndarray, rng: Any) -> float:
    """The reference code's MixUp: per label, two forward passes of batch size 1 (``Phi(u)`` for
    the target, ``Phi(mix)`` on mixed embeddings) whose squared difference becomes a Python
    float, so nothing backpropagates: hence ``torch.no_grad()``."""
    transformer = get_hf_objects(nlp.get_pipe("dallmi_textcat").model).transformer
    embedding, device = transformer.get_input_embeddings(), transformer.device
    ids = torch.as_tensor(tokens.input_ids, device=device)
    mask = torch.as_tensor(tokens.attention_mask, device=device)
    weight, bias = linear_head(nlp, device)
    total = 0.0
    with torch.no_grad():
        for label in range(positives.shape[1]):
            pos = numpy.flatnonzero(positives[:, label] == 1.0)
            unl = numpy.flatnonzero(positives[:, label] != 1.0)
            if not len(pos) or not len(unl):
                continue
            p, u = int(rng.choice(pos)), int(rng.choice(unl))
            mu = float(rng.beta(0.3, 0.3))
            u_mask = mask[u : u + 1]
            out_u = transformer(input_ids=ids[u : u + 1], attention_mask=u_mask)
            p_u = torch.sigmoid(env.mean_pool(out_u.last_hidden_state, u_mask) @ weight.T + bias)
            mixed = mu * embedding(ids[p : p + 1]) + (1.0 - mu) * embedding(ids[u : u + 1])
            mix_mask = torch.maximum(mask[p : p + 1], u_mask)
            out_mix = transformer(inputs_embeds=mixed, attention_mask=mix_mask)
            q = torch.sigmoid(env.mean_pool(out_mix.last_hidden_state, mix_mask) @ weight.T + bias)
            target = mu + (1.0 - mu) * p_u[0, label]
            total += float(((target - q[0, label]) ** 2).item())
    return total


def naive_inputs(nlp: Language, batch: List[Example]) -> Tuple[Any, numpy.ndarray]:
    """The naive loop's inputs: the batch's word pieces and known positives."""
    textcat = nlp.get_pipe("dallmi_textcat")
    cats = [[eg.reference.cats.get(label) == 1.0 for label in textcat.labels] for eg in batch]
    tokens = tokenize(textcat.model, [eg.predicted for eg in batch])
    return tokens, numpy.asarray(cats, dtype="float32")


def transformers_baseline(s: argparse.Namespace, nlp: Language) -> Callable:
    """Plain transformers over the same folder, mean pooling and the component's head."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_backbone(s.backbone)
    device = torch.device(f"cuda:{s.gpu_id}" if s.use_gpu else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).to(device).eval()
    head, context = linear_head(nlp, device), torch.inference_mode
    options = {"max_length": s.max_length, "batch_size": s.batch_size, "context": context}
    return lambda texts: env.plain_classify(tokenizer, encoder, head, texts, **options)


class Results:
    """Measurements, rewritten as JSON and Markdown after every part."""

    def __init__(self, s: argparse.Namespace, context: Dict[str, Any]) -> None:
        self.settings, self.context, self.summary = s, context, {}
        self.measurements: List[Dict[str, Any]] = []
        self.stem = f"speed_{s.device}" + (f"_threads{s.threads}" if s.threads else "")
        self.stem += "_quick" if s.quick else ""
        self.stem += "" if s.parts == list(ALL_PARTS) else "_partial"

    def add(self, part: str, name: str, shapes: Dict[str, Any], **values: Any) -> None:
        context = {key: self.context[key] for key in ("machine", "versions", "backbone", "git")}
        measurement = {"part": part, "name": name, "shapes": shapes, **values, "date": env.now()}
        self.measurements.append({**measurement, **context})

    def write(self) -> Path:
        payload = {"context": self.context, "summary": self.summary}
        payload["measurements"] = self.measurements
        return env.write_report(self.settings.output_dir, self.stem, payload, markdown(payload))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def mib(value: Optional[int]) -> str:
    return "n/a" if value is None else f"{value / 1024**2:.0f}"


#: The Markdown of each part, filled with its summary's figures (fmt) and its table's ``rows``.
REPORT = {
    "training": """## 1. Training throughput

Batch {batch}, max length {max_length}, {labels} labels, {timed_rounds} timed round-robin \
rounds after {warmup_rounds} warm-up rounds.

| configuration | median step (s) | min | max | docs/s | CPU s per wall s |
| --- | --- | --- | --- | --- | --- |
{rows}

- dallmi+MixUp step / bce step: **{mixup_over_bce}** (paired per round: \
{mixup_over_bce_paired}); target <= {target}: {mixup_over_bce_target_met}
- dallmi (no MixUp) step / bce step: {dallmi_over_bce}
""",
    "mixup_vs_naive": """## 2. Batched MixUp vs the per-label loop

{labels_mixed_per_step} mixed pairs per step. The naive loop runs \
{naive_forward_passes_per_step} forward passes of batch size 1 under torch.no_grad() per step.

| | ours (s) | naive (s) | speed-up (naive / ours) |
| --- | --- | --- | --- |
| MixUp part | {ours_mixup_part_s} | {naive_mixup_part_s} | {mixup_part_speedup} |
| whole step | {ours_step_s} | {naive_step_s} | {step_speedup} |

- ours MixUp part = median over rounds of (dallmi+MixUp step - dallmi step); difference of \
medians: {ours_mixup_part_diff_of_medians_s} s
- naive step = median over rounds of (dallmi step + naive loop)
- target: {target}: {target_met}
""",
    "least_contended": """Least-contended view (minimum over the timed rounds, not the \
headline): {min_step_s}; dallmi+MixUp / bce {mixup_over_bce}; MixUp part ours \
{ours_mixup_part_s} s vs naive {naive_mixup_part_s} s (speed-up {mixup_part_speedup}); whole \
step speed-up {step_speedup}.
""",
    "inference": """## 3. Inference throughput

{texts} target texts, batch {batch}, truncation to {max_length} word pieces, {reps} \
interleaved repetitions.

| system | median time (s) | docs/s |
| --- | --- | --- |
{rows}

- nlp.pipe / transformers throughput: **{ratio}**; target >= {target}: {target_met}
- max |probability difference| between the two: {max_abs_prob_diff}
""",
    "memory": """## 4. Peak memory (each in its own process)

| phase | RSS after setup (MiB) | peak RSS (MiB) | peak - setup (MiB) | GPU max allocated (MiB) |
| --- | --- | --- | --- | --- |
{rows}
""",
    "scaling": """## 5. How the dallmi+MixUp step grows

Synthetic label matrices (~5% positives, >= 1 per label per batch) on the same texts; rows = \
documents + mixed pairs in the one backbone pass.

| labels | batch | rows | median step (s) | docs/s | s per row |
| --- | --- | --- | --- | --- | --- |
{rows}
""",
}


def table_row(part: str, m: Dict[str, Any]) -> str:
    """A measurement's row in its part's table."""
    if part == "memory":
        setup, peak = m["rss_after_setup_bytes"], m["peak_rss_bytes"]
        cells = [m["name"], *map(mib, (setup, peak, peak - setup, m["gpu_max_allocated_bytes"]))]
    elif part == "inference":
        cells = [m["name"], fmt(m["run"]["median_s"]), fmt(m["docs_per_s"], 1)]
    elif part == "training":
        step = [fmt(m["step"][key]) for key in ("median_s", "min_s", "max_s")]
        cells = [m["name"], *step, fmt(m["docs_per_s"], 1), fmt(m["cpu_per_wall"], 2)]
    else:
        cells = [m["shapes"]["labels"], m["shapes"]["batch"], m["backbone_rows"]]
        cells += [fmt(m["step"]["median_s"]), fmt(m["docs_per_s"], 1), fmt(m["s_per_row"], 4)]
    return "| " + " | ".join(map(str, cells)) + " |"


def markdown(payload: Dict[str, Any]) -> str:
    ctx, summary, measured = payload["context"], payload["summary"], payload["measurements"]
    threads = ctx["machine"]["torch_threads"]
    lines = [
        *env.report_header("speed", ctx, f"- backbone: {ctx['backbone']['name']}"),
        f"- optimizer: {ctx['settings']['optimizer']}, dropout {ctx['settings']['dropout']}",
        f"- load average (1, 5, 15 min) at start: {ctx.get('load_start')}, "
        f"at end: {ctx.get('load_end')}",
        "- CPU s per wall s (tables): CPU time this process got per second of a step; close to "
        f"the torch thread count ({threads}) means the step had the cores to itself, much lower "
        "means other processes were competing.",
        "",
    ]
    shares = [m["cpu_per_wall"] for m in measured if m.get("cpu_per_wall") is not None]
    if shares and not ctx["machine"].get("gpu") and statistics.median(shares) < 0.75 * threads:
        lines += [
            "**Warning: contended run.** Median CPU s per wall s was "
            f"{statistics.median(shares):.2f} for {threads} torch threads: other processes took "
            "CPU time, and small operations (batch-1 passes) suffer most from that.",
            "",
        ]
    targets = {"training": TARGET_MIXUP_OVER_BCE, "inference": TARGET_INFERENCE_RATIO}
    for key, template in REPORT.items():
        rows = [table_row(key, m) for m in measured if m["part"] == key]
        if summary.get(key) or rows:
            values = {name: fmt(value) for name, value in summary.get(key, {}).items()}
            if key == "least_contended":
                mins = summary[key]["min_step_s"].items()
                values["min_step_s"] = ", ".join(f"{k} {fmt(v)} s" for k, v in mins)
            if key == "inference":
                values["max_abs_prob_diff"] = f"{summary[key]['max_abs_prob_diff']:.2e}"
            values.setdefault("target", targets.get(key))
            lines.append(template.format(**values, rows="\n".join(rows)))
    return "\n".join(lines)


def run_training(s: argparse.Namespace, data: PubMed, results: Results) -> None:
    """Parts 1 and 2; the naive MixUp loop runs right after the dallmi step, on its batch."""
    gpu_peak(s, reset=True)
    print("[training] building pipelines", flush=True)
    texts, full, known, batches = training_data(data, s)
    rounds = s.warmup + s.steps
    chosen = [batches[r % len(batches)] for r in range(rounds)]
    pipes = {name: training_pipeline(s, name, texts, full, known, chosen) for name in TRAIN_CONFIGS}
    dallmi, _, dallmi_batches = pipes["dallmi"]
    naive = [naive_inputs(dallmi, batch) for batch in dallmi_batches]  # untimed
    naive_rng = numpy.random.default_rng(SEED + 1)

    def step(name: str, rnd: int) -> Any:
        if name == "naive-loop":
            return naive_mixup_loop(dallmi, *naive[rnd], naive_rng)
        nlp, optimizer, egs = pipes[name]
        return update(nlp, optimizer, egs[rnd])

    def order(rnd: int) -> List[str]:
        names = env.rotated(TRAIN_CONFIGS, rnd)
        return sum(([name, "naive-loop"] if name == "dallmi" else [name] for name in names), [])

    times, _, load = env.round_robin("training", step, order, rounds, s.warmup, s.sync)
    shapes = base_shapes(s, word_pieces_per_doc=s.max_length)
    note = f"{len(texts)} target-domain PubMed abstracts with >= {s.max_length} word pieces; "
    note += f"{len(batches)} distinct cycle-batcher batches"
    for name in (*TRAIN_CONFIGS, "naive-loop"):
        record = timing(s, times[name], load)
        docs_per_s = round(s.batch_size / record["step"]["median_s"], 2)
        docs_per_s = docs_per_s if name != "naive-loop" else None
        data_note = note + ("; ~50% of positives hidden" if name != "bce" else "; all labels")
        results.add("training", name, shapes, **record, docs_per_s=docs_per_s, data=data_note)

    wall = {name: [w for w, _ in times[name]] for name in (*TRAIN_CONFIGS, "naive-loop")}
    med = {name: statistics.median(values) for name, values in wall.items()}
    paired = statistics.median(m / b for m, b in zip(wall["dallmi+mixup"], wall["bce"]))
    over_bce = ratio(med["dallmi+mixup"], med["bce"])
    results.summary["training"] = {
        **base_shapes(s, warmup_rounds=s.warmup, timed_rounds=s.steps),
        "median_step_s": {name: round(med[name], 4) for name in TRAIN_CONFIGS},
        "docs_per_s": {name: round(s.batch_size / med[name], 2) for name in TRAIN_CONFIGS},
        "mixup_over_bce": over_bce,
        "mixup_over_bce_paired": round(paired, 3),
        "mixup_over_bce_target_met": over_bce is not None and over_bce <= TARGET_MIXUP_OVER_BCE,
        "dallmi_over_bce": ratio(med["dallmi"], med["bce"]),
    }
    # not the headline (the medians are): what the code costs when it gets the cores
    low = {name: min(values) for name, values in wall.items()}
    results.summary["least_contended"] = {
        "min_step_s": {name: round(value, 4) for name, value in low.items()},
        "mixup_over_bce": ratio(low["dallmi+mixup"], low["bce"]),
        "ours_mixup_part_s": round(low["dallmi+mixup"] - low["dallmi"], 4),
        "naive_mixup_part_s": round(low["naive-loop"], 4),
        "mixup_part_speedup": ratio(low["naive-loop"], low["dallmi+mixup"] - low["dallmi"]),
        "step_speedup": ratio(low["dallmi"] + low["naive-loop"], low["dallmi+mixup"]),
    }
    ours_part = statistics.median(m - d for m, d in zip(wall["dallmi+mixup"], wall["dallmi"]))
    naive_step = statistics.median(d + n for d, n in zip(wall["dallmi"], wall["naive-loop"]))
    part_speedup = ratio(med["naive-loop"], ours_part)
    step_speedup = ratio(naive_step, med["dallmi+mixup"])
    if s.use_gpu:
        target = f"MixUp part speed-up >= {TARGET_GPU_MIXUP_PART_SPEEDUP} (GPU)"
        met = part_speedup is not None and part_speedup >= TARGET_GPU_MIXUP_PART_SPEEDUP
    else:
        target = "our dallmi+MixUp step <= naive step (CPU), i.e. step speed-up >= 1"
        met = step_speedup is not None and step_speedup >= 1.0
    pairs = int(statistics.median(((p == 1).any(0) & (p != 1).any(0)).sum() for _, p in naive))
    results.summary["mixup_vs_naive"] = {
        **dict(labels_mixed_per_step=pairs, naive_forward_passes_per_step=2 * pairs),
        "ours_mixup_part_s": round(ours_part, 4),
        "ours_mixup_part_diff_of_medians_s": round(med["dallmi+mixup"] - med["dallmi"], 4),
        "naive_mixup_part_s": round(med["naive-loop"], 4),
        "mixup_part_speedup": part_speedup,
        "ours_step_s": round(med["dallmi+mixup"], 4),
        "naive_step_s": round(naive_step, 4),
        "step_speedup": step_speedup,
        "target": target,
        "target_met": met,
    }


def run_inference(s: argparse.Namespace, data: PubMed, results: Results) -> None:
    """Part 3, after a warm-up batch each (allocation, kernels)."""
    gpu_peak(s, reset=True)
    print("[inference] building pipeline and baseline", flush=True)
    texts, nlp = inference_setup(s, data)
    systems = {"nlp.pipe": functools.partial(spacy_predict, s, nlp)}
    systems["transformers"] = transformers_baseline(s, nlp)
    for predict in systems.values():
        predict(texts[: s.batch_size])
    run, order = lambda name, _: systems[name](texts), functools.partial(env.rotated, list(systems))
    times, out, load = env.round_robin("inference", run, order, s.inference_reps, sync=s.sync)
    longer = data.n_pieces[numpy.flatnonzero(data.female)][: len(texts)] > s.max_length
    shapes = base_shapes(s, texts=len(texts), texts_longer_than_max_length=int(longer.sum()))
    docs_per_s = {}
    for name in systems:
        record = timing(s, times[name], load, key="run")
        docs_per_s[name] = len(texts) / record["run"]["median_s"]
        results.add("inference", name, shapes, **record, docs_per_s=round(docs_per_s[name], 2))
    inference_ratio = round(docs_per_s["nlp.pipe"] / docs_per_s["transformers"], 3)
    shape = dict(texts=len(texts), batch=s.batch_size, max_length=s.max_length)
    results.summary["inference"] = {
        **shape,
        "reps": s.inference_reps,
        "docs_per_s": {name: round(value, 2) for name, value in docs_per_s.items()},
        "ratio": inference_ratio,
        "target_met": inference_ratio >= TARGET_INFERENCE_RATIO,
        "max_abs_prob_diff": float(numpy.abs(out["nlp.pipe"] - out["transformers"]).max()),
    }


def run_scaling(s: argparse.Namespace, data: PubMed, results: Results) -> None:
    """Part 5, on synthetic labels re-drawn per batch (>= 1 positive per label at any size)."""
    gpu_peak(s, reset=True)
    texts = [data.texts[i] for i in training_indices(data, s.max_length)]
    configs = [(n, s.batch_size) for n in s.scaling_labels]
    configs += [(s.scaling_batch_labels, b) for b in s.scaling_batch_sizes]
    configs = list(dict.fromkeys(configs))
    rounds, max_batch = s.scaling_warmup + s.scaling_steps, max(b for _, b in configs)
    starts = [(rnd * max_batch) % max(1, len(texts) - max_batch) for rnd in range(rounds)]
    chunks = [texts[start : start + max_batch] for start in starts]
    rng = numpy.random.default_rng(SEED + 2)
    label_counts = sorted({n for n, _ in configs})
    print(f"[scaling] building {len(label_counts)} pipelines", flush=True)
    pipelines, examples = {}, {}
    for n in label_counts:
        names, first = [f"S{i:02d}" for i in range(n)], synthetic_labels(16, n, rng)
        nlp, _ = pipelines[n] = build_pipeline(s, "dallmi", True)
        init = make_examples(nlp, chunks[0][:16], first, names)
        nlp.initialize(lambda init=init: init)
        for batch in (b for labels, b in configs if labels == n):
            matrices = [synthetic_labels(batch, n, rng) for _ in chunks]
            examples[(n, batch)] = [
                make_examples(nlp, chunk[:batch], matrix, names)
                for chunk, matrix in zip(chunks, matrices)
            ]

    def step(config: Tuple[int, int], rnd: int) -> None:
        update(*pipelines[config[0]], examples[config][rnd])

    order = functools.partial(env.rotated, configs)
    times, _, load = env.round_robin("scaling", step, order, rounds, s.scaling_warmup, s.sync)
    for n, batch in configs:
        record = timing(s, times[(n, batch)], load)
        median, rows = record["step"]["median_s"], batch + n
        shapes = {"batch": batch, "max_length": s.max_length, "labels": n}
        record.update(backbone_rows=rows, docs_per_s=round(batch / median, 2))
        record.update(s_per_row=round(median / rows, 5), positive_density=SYNTHETIC_DENSITY)
        results.add("scaling", f"dallmi+mixup labels={n} batch={batch}", shapes, **record)


def memory_phase(s: argparse.Namespace, phase: str) -> Dict[str, Any]:
    """Part 4: ONE phase in this (fresh) process, and its peak resident memory."""
    data = load_pubmed(s.data_dir, s.backbone)
    shapes = base_shapes(s)
    if phase.startswith("train"):
        texts, full, known, batches = training_data(data, s)
        name = "bce" if phase == "train-bce" else "dallmi+mixup"
        batches = batches[: s.memory_steps]
        nlp, optimizer, egs = training_pipeline(s, name, texts, full, known, batches)
        setup_rss = env.read_proc_status("VmRSS")
        for step in range(s.memory_steps):
            update(nlp, optimizer, egs[step % len(egs)])
        shapes["steps"] = s.memory_steps
    else:
        texts, nlp = inference_setup(s, data)
        predict = functools.partial(spacy_predict, s, nlp)
        if phase == "infer-transformers":
            predict = transformers_baseline(s, nlp)
            del nlp
            gc.collect()
        setup_rss = env.read_proc_status("VmRSS")
        predict(texts)
        shapes["texts"] = len(texts)
    if s.sync:
        s.sync()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hwm = env.read_proc_status("VmHWM")
    return {
        **dict(phase=phase, shapes=shapes, rss_after_setup_bytes=setup_rss),
        **dict(peak_rss_bytes=hwm if hwm is not None else maxrss, ru_maxrss_bytes=maxrss),
        **dict(vm_hwm_bytes=hwm, gpu_max_allocated_bytes=gpu_peak(s)),
    }


def run_memory(s: argparse.Namespace, results: Results, argv: Sequence[str]) -> None:
    note = "peak RSS is VmHWM of the subprocess (ru_maxrss as fallback); setup = after "
    note += "imports, data loading and pipeline initialisation"
    for phase in MEMORY_PHASES:
        print(f"[memory] {phase}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "phase.json"
            command = [sys.executable, str(Path(__file__).resolve()), *argv, "--data-dir"]
            command += [str(s.data_dir), "--phase", phase, "--phase-output", str(out)]
            started = time.perf_counter()
            subprocess.run(command, check=True, cwd=env.REPO_ROOT)
            measured = json.loads(out.read_text(encoding="utf-8"))
        wall_s = round(time.perf_counter() - started, 1)
        results.add("memory", phase, measured.pop("shapes"), **measured, note=note, wall_s=wall_s)
        results.write()


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    s = parse_args(argv)
    setup(s)
    if s.phase:
        s.phase_output.write_text(json.dumps(memory_phase(s, s.phase)), encoding="utf-8")
        return 0
    started = time.perf_counter()
    print(f"[setup] reading {s.data_dir / 'pubmed'}", flush=True)
    data = load_pubmed(s.data_dir, s.backbone)
    settings = {key: getattr(s, key) for key in (*QUICK, "quick")}
    settings["optimizer"] = f"thinc Adam(learn_rate={LEARN_RATE}, L2=0.01, grad_clip=1.0)"
    settings["dropout"] = DROPOUT
    # the backbone's name only: the package's folder is a machine path (versions records it)
    gpu, backbone = s.gpu_id if s.use_gpu else None, {"name": s.backbone}
    context = env.provenance(gpu, device=s.device, backbone=backbone, settings=settings)
    context["load_start"] = env.load_average()
    context["data"] = {"files": data.files, "unique_docs": len(data.texts)}
    context["data"]["target_docs"] = int(data.female.sum())
    context["data"]["target_docs_filling_max_length"] = len(training_indices(data, s.max_length))
    results = Results(s, context)
    parts = {"training": run_training, "inference": run_inference, "scaling": run_scaling}
    for part in s.parts:
        if part == "memory":
            run_memory(s, results, argv)
        else:
            parts[part](s, data, results)
            results.write()
            gc.collect()
    context["load_end"] = env.load_average()
    context["total_wall_s"] = round(time.perf_counter() - started, 1)
    print(f"wrote {results.write()} and its .md in {context['total_wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

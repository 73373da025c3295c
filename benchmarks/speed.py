"""Speed benchmark of ``spacy_dallmi``: training, MixUp, inference, memory and scaling.

This is a script, not a test: the numbers depend on the machine and on whatever else runs on
it, so CI does not run it. It answers five questions about the ``dallmi_textcat`` component
(see ``benchmarks/README.md`` for what each number means):

1. training throughput with ``bce``, ``dallmi`` without MixUp and ``dallmi`` with MixUp, and
   the ratio ``dallmi+MixUp step / bce step``;
2. our batched, differentiable MixUp against the reference code's per-label loop
   (``2 * L`` gradient-free forward passes of batch size 1), implemented here as the baseline;
3. ``nlp.pipe`` throughput against a plain transformers forward pass of the same model;
4. peak resident memory of training and of inference, each in its own subprocess;
5. how the step time grows with the number of labels and with the batch size.

The file holds, in order: the timing harness (every figure is a wall-clock and CPU interval,
with the GPU synchronised before and after, so a number always covers the work it started);
the data and pipelines (PubMed abstracts, labels hidden with the experiment protocol's own
function, so the benchmark trains on data made the way every experiment makes it); the
baselines (the reference MixUp loop, plain transformers); the results (JSON and Markdown,
both rewritten after every part, so a run stopped half-way still leaves what it measured);
and the five parts.

All training configurations of a part live in ONE process and take their steps round-robin
(the order rotating from round to round), so a burst of load from other processes hits every
configuration alike; figures are medians over the timed rounds.

Usage::

    python benchmarks/speed.py              # CPU, writes benchmarks/results/speed_cpu.{json,md}
    python benchmarks/speed.py --gpu-id 0   # GPU, writes benchmarks/results/speed_gpu.{json,md}
    python benchmarks/speed.py --quick      # smoke run, writes speed_<device>_quick.{json,md}
"""

import argparse
import ast
import cProfile
import csv
import functools
import gc
import io
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy
import spacy
import torch
from environment import (
    GIT_AT_START,
    REPO_ROOT,
    load_average,
    mean_pool,
    now,
    parser,
    plain_classify,
    provenance,
    read_proc_status,
    report_header,
    rotated,
    table,
    timed,
    write_report,
)
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam, Optimizer, set_gpu_allocator, xp2torch

from spacy_dallmi.architecture import get_hf_objects, resolve_backbone, tokenize
from spacy_dallmi.batcher import cycle_batch_indices
from spacy_dallmi.experiments.datasets import MESH_ROOTS
from spacy_dallmi.experiments.protocol import hide_labels

ALL_PARTS = ("training", "inference", "scaling", "memory")
MEMORY_PHASES = ("train-bce", "train-dallmi-mixup", "infer-spacy", "infer-transformers")
# spaCy's default [training.optimizer], with the paper's learning rate.
LEARN_RATE = 5e-5
DROPOUT = 0.1
HIDE_RATIO = 0.5
SYNTHETIC_DENSITY = 0.05
SEED = 0
TRAIN_CONFIGS = ("bce", "dallmi", "dallmi+mixup")
RECORDED_SETTINGS = "warmup steps scaling_warmup scaling_steps inference_texts inference_reps"
RECORDED_SETTINGS = (*RECORDED_SETTINGS.split(), "memory_steps", "quick")
# The targets the package promises (see the brief in benchmarks/README.md).
TARGET_MIXUP_OVER_BCE = 1.3
TARGET_GPU_MIXUP_PART_SPEEDUP = 5.0
TARGET_INFERENCE_RATIO = 0.9

#: Everything a run (or one of its memory subprocesses) needs to know: the parsed options,
#: plus ``device`` ("cpu"/"gpu") and ``use_gpu``.
Settings = argparse.Namespace


def parse_args(argv: Optional[Sequence[str]] = None) -> Settings:
    options = parser(__doc__)
    options.add_argument("--warmup", type=int, default=2, help="untimed rounds, training part")
    options.add_argument("--steps", type=int, default=6, help="timed rounds, training part")
    options.add_argument("--scaling-warmup", type=int, default=2)
    options.add_argument("--scaling-steps", type=int, default=3)
    options.add_argument("--scaling-labels", type=int, nargs="+", default=[8, 14, 32, 64])
    options.add_argument("--scaling-batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    options.add_argument("--scaling-batch-labels", type=int, default=14)
    options.add_argument("--inference-texts", type=int, default=512)
    options.add_argument("--inference-reps", type=int, default=3)
    options.add_argument("--memory-steps", type=int, default=3)
    options.add_argument(
        "--parts",
        nargs="+",
        choices=ALL_PARTS,
        default=list(ALL_PARTS),
        help="a subset writes *_partial.* files, so full results are not overwritten",
    )
    options.add_argument(
        "--profile",
        action="store_true",
        help="instead of the benchmark, cProfile one step of each training configuration "
        "and write results/profile_<device>.txt",
    )
    # Internal: the memory subprocesses re-invoke this script with these.
    options.add_argument("--phase", choices=MEMORY_PHASES, help=argparse.SUPPRESS)
    options.add_argument("--phase-output", type=Path, help=argparse.SUPPRESS)
    settings = options.parse_args(argv)
    if settings.quick:  # 1 warm-up + 2 timed rounds, few texts
        settings.warmup, settings.steps = 1, 2
        settings.scaling_warmup, settings.scaling_steps = 0, 1
        settings.inference_texts, settings.inference_reps = 128, 1
        settings.memory_steps = 1
    if settings.steps < 1 or settings.scaling_steps < 1 or settings.inference_reps < 1:
        options.error("--steps, --scaling-steps and --inference-reps must be at least 1")
    settings.data_dir = settings.data_dir.expanduser().resolve()
    settings.output_dir = settings.output_dir.expanduser().resolve()
    settings.parts = [part for part in ALL_PARTS if part in settings.parts]
    settings.use_gpu = settings.gpu_id >= 0
    settings.device = "gpu" if settings.use_gpu else "cpu"
    return settings


# ------------------------------------------------------------------------------ harness


def build_context(settings: Settings) -> Dict[str, Any]:
    return provenance(
        settings.gpu_id if settings.use_gpu else None,
        device=settings.device,
        # the name only: the package's folder is a machine path, and versions records it
        backbone={"name": settings.backbone},
        settings={
            **{key: getattr(settings, key) for key in RECORDED_SETTINGS},
            "optimizer": f"thinc Adam(learn_rate={LEARN_RATE}, L2=0.01, grad_clip=1.0)",
            "dropout": DROPOUT,
        },
    )


def setup_device(settings: Settings) -> None:
    """Select the GPU the way ``spacy train --gpu-id`` does, with PyTorch's allocator so
    that ``torch.cuda.max_memory_allocated`` also sees thinc's (CuPy) arrays."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.use_gpu:
        spacy.require_gpu(settings.gpu_id)
        set_gpu_allocator("pytorch")
        torch.cuda.reset_peak_memory_stats()


def sync(settings: Settings) -> None:
    """Wait for queued GPU work, so a wall-clock interval covers the work it started."""
    if settings.use_gpu:
        torch.cuda.synchronize()


def gpu_peak_bytes(settings: Settings) -> Optional[int]:
    return int(torch.cuda.max_memory_allocated()) if settings.use_gpu else None


def reset_gpu_peak(settings: Settings) -> None:
    """Start each part's GPU peak from zero, so one part's peak is not another's."""
    if settings.use_gpu:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def quiet_libraries() -> None:
    """The texts are deliberately longer than max_length: silence the truncation notices."""
    warnings.filterwarnings("ignore", message=".*longer than max_length.*")
    warnings.filterwarnings("ignore", message=".*no known positive for label.*")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:
        pass


@dataclass
class Timing:
    wall: List[float] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)


def summarize(values: Sequence[float]) -> Dict[str, Any]:
    values = list(values)
    return {
        "median_s": round(statistics.median(values), 4),
        "min_s": round(min(values), 4),
        "max_s": round(max(values), 4),
        "n": len(values),
        "all_s": [round(v, 4) for v in values],
    }


def cpu_share(timing: Timing) -> Optional[float]:
    """Median CPU seconds per wall second over the timed steps."""
    shares = [c / w for c, w in zip(timing.cpu, timing.wall, strict=True) if w > 0]
    return round(statistics.median(shares), 2) if shares else None


def ratio(numerator: float, denominator: float) -> Optional[float]:
    return round(numerator / denominator, 3) if denominator > 0 else None


# --------------------------------------------------------------------- data and pipelines


@dataclass
class PubMed:
    """The deduplicated PubMed abstracts, their 14 MeSH-root labels and their lengths."""

    texts: List[str]
    labels: numpy.ndarray
    female: numpy.ndarray
    n_pieces: numpy.ndarray
    files: List[str] = field(default_factory=list)

    def target_indices(self) -> numpy.ndarray:
        """Documents of the target domain (tagged ``Female``), in file order."""
        return numpy.flatnonzero(self.female)


def load_pubmed(data_dir: Path, backbone: str) -> PubMed:
    """Read Title + abstractText and the MeSH root columns of every unique ``pmid``.

    The word-piece count (special tokens included, untruncated) is measured with the
    backbone's own tokenizer, so the training part can keep only documents that fill
    ``max_length`` and every batch has the same, full shape.
    """
    from transformers import AutoTokenizer

    folder = data_dir / "pubmed"
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise SystemExit(
            f"No PubMed CSV files in {folder}. Pass --data-dir pointing at the shared "
            "datasets folder (the one holding pubmed/, goemotions/, semeval2018_ec/)."
        )
    seen = set()
    texts, labels, female = [], [], []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["pmid"] in seen:
                    continue
                seen.add(row["pmid"])
                texts.append(f"{row['Title'].strip()} {row['abstractText'].strip()}".strip())
                labels.append([float(row[root]) for root in MESH_ROOTS])
                try:
                    headings = ast.literal_eval(row["meshMajor"])
                except (ValueError, SyntaxError):
                    headings = []
                female.append("Female" in headings)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(backbone))
    encoded = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return PubMed(
        texts=texts,
        labels=numpy.asarray(labels, dtype="float32"),
        female=numpy.asarray(female, dtype=bool),
        n_pieces=numpy.asarray([len(ids) for ids in encoded]),
        files=[str(path.relative_to(data_dir)) for path in files],  # no machine paths
    )


def training_indices(data: PubMed, max_length: int) -> numpy.ndarray:
    """Target-domain documents that fill ``max_length`` word pieces, in a seeded order."""
    keep = data.target_indices()
    keep = keep[data.n_pieces[keep] >= max_length]
    return numpy.random.default_rng(SEED).permutation(keep)


def hidden_positives(labels: numpy.ndarray) -> numpy.ndarray:
    """The adaptation data's known positives: the experiment protocol's own hiding of
    ``HIDE_RATIO`` of each document's positives (a label keeps at least one)."""
    return hide_labels(labels, HIDE_RATIO, "per_sample", SEED).partial


def cycle_batches(known: numpy.ndarray, size: int) -> List[List[int]]:
    """Full batches from the package's cycle batcher: each holds a known positive of
    every label that has one, as spacy train with ``cycle_batcher.v1`` would give."""
    positives = [numpy.flatnonzero(row == 1.0).tolist() for row in known]
    rng = numpy.random.default_rng(SEED)
    batches = [
        batch
        for batch in cycle_batch_indices(positives, known.shape[1], size, rng)
        if len(batch) == size
    ]
    if not batches:
        raise SystemExit(f"Not enough documents for one full batch of {size}.")
    must_cover = known.any(axis=0)
    for batch in batches:
        if not (known[batch].any(axis=0) >= must_cover).all():
            raise AssertionError("cycle batcher broke its coverage guarantee")
    return batches


def training_data(
    data: PubMed, settings: Settings
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, List[List[int]]]:
    """The training part's documents (``order``), their full and known labels and batches."""
    order = training_indices(data, settings.max_length)
    full = data.labels[order]
    known = hidden_positives(full)
    return order, full, known, cycle_batches(known, settings.batch_size)


def synthetic_labels(
    n_docs: int, n_labels: int, density: float, rng: numpy.random.Generator
) -> numpy.ndarray:
    """A random 0/1 matrix with >= 1 positive and >= 1 unlabeled document per label."""
    matrix = (rng.random((n_docs, n_labels)) < density).astype("float32")
    for label in range(n_labels):
        if not matrix[:, label].any():
            matrix[rng.integers(n_docs), label] = 1.0
        if matrix[:, label].all():
            matrix[rng.integers(n_docs), label] = 0.0
    return matrix


def make_examples(
    nlp: Language, texts: Sequence[str], matrix: numpy.ndarray, names: Sequence[str]
) -> List[Example]:
    """Examples whose ``cats`` hold every label: 1.0 positive, 0.0 negative/unlabeled."""
    return [
        Example.from_dict(
            nlp.make_doc(text),
            {"cats": {name: float(v) for name, v in zip(names, row, strict=True)}},
        )
        for text, row in zip(texts, matrix, strict=True)
    ]


def build_pipeline(
    settings: Settings,
    objective: str,
    mixup: bool,
    init_examples: Callable[[Language], List[Example]],
) -> Tuple[Language, Optimizer]:
    """A blank pipeline with one ``dallmi_textcat``, initialised as spacy train would.

    The optimizer is spaCy's default ``[training.optimizer]`` with the paper's learning
    rate, so ``finish_update`` costs what it costs in ``spacy train``.
    """
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "dallmi_textcat",
        config={
            "objective": objective,
            "mixup": mixup,
            "model": {
                "@architectures": "spacy_dallmi.TransformerClassifier.v1",
                "name": settings.backbone,
                "max_length": settings.max_length,
            },
        },
    )
    examples = init_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(LEARN_RATE, L2=0.01, grad_clip=1.0, use_averages=False)
    return nlp, optimizer


def training_pipelines(
    settings: Settings,
    texts: Sequence[str],
    full: numpy.ndarray,
    known: numpy.ndarray,
    batches: Sequence[Sequence[int]],
    *only: str,
) -> Iterator[Tuple[str, Language, Optimizer, List[List[Example]]]]:
    """Build the ``bce``, ``dallmi`` and ``dallmi+mixup`` pipelines (or ``only`` those named)
    one at a time.

    Yields ``(name, nlp, optimizer, example batches)``: ``bce`` sees every label (``full``),
    the two ``dallmi`` configurations the partial ones (``known``); ``batches`` index ``texts``.
    """
    for name, objective, mixup, matrix in (
        ("bce", "bce", False, full),
        ("dallmi", "dallmi", False, known),
        ("dallmi+mixup", "dallmi", True, known),
    ):
        if only and name not in only:
            continue
        made: Dict[str, List[List[Example]]] = {}

        def init(
            nlp: Language,
            matrix: numpy.ndarray = matrix,
            made: Dict[str, List[List[Example]]] = made,
        ) -> List[Example]:
            made["batches"] = [
                make_examples(nlp, [texts[i] for i in batch], matrix[batch], MESH_ROOTS)
                for batch in batches
            ]
            return made["batches"][0]

        nlp, optimizer = build_pipeline(settings, objective, mixup, init)
        yield name, nlp, optimizer, made["batches"]
        del nlp, optimizer


def base_shapes(settings: Settings, **extra: Any) -> Dict[str, Any]:
    """The shapes every measurement records: batch, max length and labels, then ``extra``."""
    return {
        "batch": settings.batch_size,
        "max_length": settings.max_length,
        "labels": len(MESH_ROOTS),
        **extra,
    }


def component_model(nlp: Language):
    return nlp.get_pipe("dallmi_textcat").model


def update(nlp: Language, optimizer: Optimizer, batch: List[Example]) -> None:
    nlp.update(batch, sgd=optimizer, drop=DROPOUT)


def inference_texts(data: PubMed, settings: Settings) -> List[str]:
    """The first target-domain abstracts in file order, at their real (varied) lengths."""
    return [data.texts[i] for i in data.target_indices()[: settings.inference_texts]]


def inference_pipeline(settings: Settings, data: PubMed) -> Language:
    def init(nlp: Language) -> List[Example]:
        return make_examples(nlp, data.texts[:8], data.labels[:8], MESH_ROOTS)

    nlp, _ = build_pipeline(settings, "bce", False, init)
    return nlp


def spacy_predict(nlp: Language, texts: Sequence[str], batch_size: int) -> numpy.ndarray:
    labels = nlp.get_pipe("dallmi_textcat").labels
    return numpy.asarray(
        [[doc.cats[label] for label in labels] for doc in nlp.pipe(texts, batch_size=batch_size)]
    )


# ---------------------------------------------------------------------------- baselines


def naive_mixup_loop(
    nlp: Language,
    tokens: Any,
    positives: numpy.ndarray,
    rng: numpy.random.Generator,
    alpha: float = 0.3,
    beta: float = 0.3,
) -> float:
    """The authors' MixUp, as a baseline: per label, TWO forward passes of batch size 1.

    For every label with a positive ``p`` and an unlabeled ``u`` in the batch, the
    reference code runs ``Phi(u)`` for the target and ``Phi(mix)`` on interpolated word
    embeddings for the prediction, and turns the squared difference into a Python float,
    so nothing is backpropagated: hence ``torch.no_grad()``. Pooling and the linear head
    are included, as in the reference; the batch's word pieces are reused (tokenising is
    part of the main step). Returns the MixUp value so no pass is optimised away.
    """
    model = component_model(nlp)
    transformer = get_hf_objects(model).transformer
    embedding = transformer.get_input_embeddings()
    device = transformer.device
    ids = torch.as_tensor(tokens.input_ids, device=device)
    mask = torch.as_tensor(tokens.attention_mask, device=device)
    head = model.layers[2]
    weight = xp2torch(head.get_param("W"), device=device)
    bias = xp2torch(head.get_param("b"), device=device)

    def classify(hidden: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(mean_pool(hidden, row_mask) @ weight.T + bias)

    total = 0.0
    with torch.no_grad():
        for label in range(positives.shape[1]):
            pos = numpy.flatnonzero(positives[:, label] == 1.0)
            unl = numpy.flatnonzero(positives[:, label] != 1.0)
            if not len(pos) or not len(unl):
                continue
            p, u = int(rng.choice(pos)), int(rng.choice(unl))
            mu = float(rng.beta(alpha, beta))
            u_mask = mask[u : u + 1]
            out_u = transformer(input_ids=ids[u : u + 1], attention_mask=u_mask)
            p_u = classify(out_u.last_hidden_state, u_mask)[0, label]
            mixed = mu * embedding(ids[p : p + 1]) + (1.0 - mu) * embedding(ids[u : u + 1])
            mix_mask = torch.maximum(mask[p : p + 1], u_mask)
            out_mix = transformer(inputs_embeds=mixed, attention_mask=mix_mask)
            q = classify(out_mix.last_hidden_state, mix_mask)[0, label]
            target = mu + (1.0 - mu) * p_u
            total += float(((target - q) ** 2).item())
    return total


def naive_tokens_positives(nlp: Language, batch: List[Example]) -> Tuple[Any, numpy.ndarray]:
    """The batch's word pieces, and its known positives in the component's label order (as
    its update sees them): the naive loop's inputs."""
    labels = nlp.get_pipe("dallmi_textcat").labels
    positives = numpy.asarray(
        [[eg.reference.cats.get(label) == 1.0 for label in labels] for eg in batch],
        dtype="float32",
    )
    return tokenize(component_model(nlp), [eg.predicted for eg in batch]), positives


class TransformersBaseline:
    """A plain transformers classifier over the same folder: tokenizer, encoder, mean
    pooling and the component's own linear head, in inference mode."""

    def __init__(self, settings: Settings, nlp: Language) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = resolve_backbone(settings.backbone)
        self.device = torch.device(f"cuda:{settings.gpu_id}" if settings.use_gpu else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        head = component_model(nlp).layers[2]
        self.weight = xp2torch(head.get_param("W"), device=self.device)
        self.bias = xp2torch(head.get_param("b"), device=self.device)
        self.max_length = settings.max_length
        self.batch_size = settings.batch_size

    def predict(self, texts: Sequence[str]) -> numpy.ndarray:
        head = (self.weight, self.bias)
        options = {"max_length": self.max_length, "context": torch.inference_mode}
        return plain_classify(self.tokenizer, self.model, head, texts, self.batch_size, **options)


# ------------------------------------------------------------------------------ results


class Results:
    """Collects measurements and rewrites the JSON and Markdown files after every part,
    so a run that is stopped half-way still leaves what it measured."""

    def __init__(self, settings: Settings, context: Dict[str, Any]) -> None:
        self.settings = settings
        self.context = context
        self.measurements: List[Dict[str, Any]] = []
        self.summary: Dict[str, Any] = {}
        self.stem = f"speed_{settings.device}"
        if settings.threads:
            self.stem += f"_threads{settings.threads}"
        if settings.quick:
            self.stem += "_quick"
        if settings.parts != list(ALL_PARTS):
            self.stem += "_partial"
        self.json_path = settings.output_dir / f"{self.stem}.json"
        self.md_path = settings.output_dir / f"{self.stem}.md"

    def add(self, part: str, name: str, shapes: Dict[str, Any], **values: Any) -> None:
        """One measurement, carrying the full context (machine, versions, backbone,
        git) so it can be quoted on its own."""
        self.measurements.append(
            {
                "part": part,
                "name": name,
                "shapes": shapes,
                **values,
                "date": now(),
                **{key: self.context[key] for key in ("machine", "versions", "backbone", "git")},
            }
        )

    def write(self) -> None:
        payload = {
            "context": self.context,
            "summary": self.summary,
            "measurements": self.measurements,
        }
        write_report(self.settings.output_dir, self.stem, payload, render_markdown(payload))


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mib(value: Optional[int]) -> str:
    return "n/a" if value is None else f"{value / 1024**2:.0f}"


def render_markdown(payload: Dict[str, Any]) -> str:
    """A human-readable copy of the JSON: the same figures, rounded the same way."""
    ctx, summary = payload["context"], payload["summary"]
    machine = ctx["machine"]
    lines = [
        *report_header("speed", ctx, f"- backbone: {ctx['backbone']['name']}"),
        f"- optimizer: {ctx['settings']['optimizer']}, dropout {ctx['settings']['dropout']}",
        f"- load average (1, 5, 15 min) at start: {ctx.get('load_start')}, "
        f"at end: {ctx.get('load_end')}",
        "- CPU s per wall s (tables): CPU time this process got per second of a step; "
        f"close to the torch thread count ({machine['torch_threads']}) means the step had "
        "the cores to itself, much lower means other processes were competing.",
        "",
    ]
    shares = [
        m["cpu_per_wall"]
        for m in payload["measurements"]
        if m.get("cpu_per_wall") is not None and not machine.get("gpu")
    ]
    if shares and statistics.median(shares) < 0.75 * machine["torch_threads"]:
        lines += [
            f"**Warning: contended run.** Median CPU s per wall s was "
            f"{statistics.median(shares):.2f} for {machine['torch_threads']} torch threads: "
            "other processes took CPU time, and small operations (batch-1 passes) suffer "
            "most from that.",
            "",
        ]
    by_part: Dict[str, List[Dict[str, Any]]] = {}
    for m in payload["measurements"]:
        by_part.setdefault(m["part"], []).append(m)

    train = summary.get("training")
    if train:
        rows = [
            [
                m["name"],
                *(fmt(m["step"][key]) for key in ("median_s", "min_s", "max_s")),
                fmt(m.get("docs_per_s"), 1),
                fmt(m.get("cpu_per_wall"), 2),
            ]
            for m in by_part.get("training", [])
        ]
        header = ["configuration", "median step (s)", "min", "max", "docs/s", "CPU s per wall s"]
        lines += [
            "## 1. Training throughput",
            "",
            f"Batch {train['batch']}, max length {train['max_length']}, "
            f"{train['labels']} labels, {train['timed_rounds']} timed round-robin rounds "
            f"after {train['warmup_rounds']} warm-up rounds.",
            "",
            *table(header, rows),
            f"- dallmi+MixUp step / bce step: **{fmt(train['mixup_over_bce'])}** "
            f"(paired per round: {fmt(train['mixup_over_bce_paired'])}); target <= "
            f"{TARGET_MIXUP_OVER_BCE}: {fmt(train['mixup_over_bce_target_met'])}",
            f"- dallmi (no MixUp) step / bce step: {fmt(train['dallmi_over_bce'])}",
            "",
        ]
    mix = summary.get("mixup_vs_naive")
    if mix:
        lines += [
            "## 2. Batched MixUp vs the per-label loop",
            "",
            f"{mix['labels_mixed_per_step']} mixed pairs per step. The naive loop runs "
            f"{mix['naive_forward_passes_per_step']} forward passes of batch size 1 under "
            "torch.no_grad() per step.",
            "",
            "| | ours (s) | naive (s) | speed-up (naive / ours) |",
            "| --- | --- | --- | --- |",
            f"| MixUp part | {fmt(mix['ours_mixup_part_s'])} | "
            f"{fmt(mix['naive_mixup_part_s'])} | {fmt(mix['mixup_part_speedup'])} |",
            f"| whole step | {fmt(mix['ours_step_s'])} | {fmt(mix['naive_step_s'])} | "
            f"{fmt(mix['step_speedup'])} |",
            "",
            f"- ours MixUp part = median over rounds of (dallmi+MixUp step - dallmi step); "
            f"difference of medians: {fmt(mix['ours_mixup_part_diff_of_medians_s'])} s",
            "- naive step = median over rounds of (dallmi step + naive loop)",
            f"- target: {mix['target']}: {fmt(mix['target_met'])}",
            "",
        ]
    low = summary.get("least_contended")
    if low:
        mins = ", ".join(f"{k} {fmt(v)} s" for k, v in low["min_step_s"].items())
        lines += [
            "Least-contended view (minimum over the timed rounds, not the headline): "
            f"{mins}; dallmi+MixUp / bce {fmt(low['mixup_over_bce'])}; MixUp part ours "
            f"{fmt(low['ours_mixup_part_s'])} s vs naive {fmt(low['naive_mixup_part_s'])} s "
            f"(speed-up {fmt(low['mixup_part_speedup'])}); whole step speed-up "
            f"{fmt(low['step_speedup'])}.",
            "",
        ]
    inf = summary.get("inference")
    if inf:
        rows = [
            [m["name"], fmt(m["run"]["median_s"]), fmt(m["docs_per_s"], 1)]
            for m in by_part.get("inference", [])
        ]
        lines += [
            "## 3. Inference throughput",
            "",
            f"{inf['texts']} target texts, batch {inf['batch']}, truncation to "
            f"{inf['max_length']} word pieces, {inf['reps']} interleaved repetitions.",
            "",
            *table(["system", "median time (s)", "docs/s"], rows),
            f"- nlp.pipe / transformers throughput: **{fmt(inf['ratio'])}**; target >= "
            f"{TARGET_INFERENCE_RATIO}: {fmt(inf['target_met'])}",
            f"- max |probability difference| between the two: {inf['max_abs_prob_diff']:.2e}",
            "",
        ]
    if by_part.get("memory"):
        rows = [
            [
                m["name"],
                mib(m["rss_after_setup_bytes"]),
                mib(m["peak_rss_bytes"]),
                mib(m["peak_rss_bytes"] - m["rss_after_setup_bytes"]),
                mib(m.get("gpu_max_allocated_bytes")),
            ]
            for m in by_part["memory"]
        ]
        header = ["phase", "RSS after setup (MiB)", "peak RSS (MiB)", "peak - setup (MiB)"]
        lines += [
            "## 4. Peak memory (each in its own process)",
            "",
            *table([*header, "GPU max allocated (MiB)"], rows),
        ]
    if by_part.get("scaling"):
        rows = [
            [
                m["shapes"]["labels"],
                m["shapes"]["batch"],
                m["backbone_rows"],
                fmt(m["step"]["median_s"]),
                fmt(m["docs_per_s"], 1),
                fmt(m["s_per_row"], 4),
            ]
            for m in by_part["scaling"]
        ]
        header = ["labels", "batch", "rows", "median step (s)", "docs/s", "s per row"]
        lines += [
            "## 5. How the dallmi+MixUp step grows",
            "",
            "Synthetic label matrices (~5% positives, >= 1 per label per batch) on the same "
            "texts; rows = documents + mixed pairs in the one backbone pass.",
            "",
            *table(header, rows),
        ]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- parts


def run_training(settings: Settings, data: PubMed, results: Results) -> None:
    """Parts 1 and 2: bce, dallmi, dallmi+MixUp and the naive MixUp loop, round-robin."""
    reset_gpu_peak(settings)
    print("[training] building pipelines", flush=True)
    order, full, known, batches = training_data(data, settings)
    texts = [data.texts[i] for i in order]
    rounds = settings.warmup + settings.steps

    chosen = [batches[r % len(batches)] for r in range(rounds)]
    pipelines = {
        name: (nlp, optimizer, example_batches)
        for name, nlp, optimizer, example_batches in training_pipelines(
            settings, texts, full, known, chosen
        )
    }

    timings = {name: Timing() for name in (*TRAIN_CONFIGS, "naive-loop")}
    naive_rng = numpy.random.default_rng(SEED + 1)
    load_start = load_average()
    mixed_pairs = []
    for rnd in range(rounds):
        for name in rotated(TRAIN_CONFIGS, rnd):
            nlp, optimizer, egs = pipelines[name]
            batch = egs[rnd]
            step = functools.partial(update, nlp, optimizer, batch)
            wall, cpu, _ = timed(step, functools.partial(sync, settings))
            naive = None
            if name == "dallmi":
                # The naive baseline's extra passes, as if they were part of this step.
                tokens, positives = naive_tokens_positives(nlp, batch)
                loop = functools.partial(naive_mixup_loop, nlp, tokens, positives, naive_rng)
                naive = timed(loop, functools.partial(sync, settings))[:2]
                pairs = int(((positives == 1).any(0) & (positives != 1).any(0)).sum())
                mixed_pairs.append(pairs)
            if rnd >= settings.warmup:
                timings[name].add(wall, cpu)
                if naive is not None:
                    timings["naive-loop"].add(*naive)
            extra = f" + naive loop {naive[0]:.2f}s" if naive else ""
            print(f"[training] round {rnd} {name}: {wall:.2f}s{extra}", flush=True)
    load_end = load_average()

    shapes = base_shapes(settings, word_pieces_per_doc=settings.max_length)
    for name in (*TRAIN_CONFIGS, "naive-loop"):
        timing = timings[name]
        step = summarize(timing.wall)
        results.add(
            "training",
            name,
            shapes,
            step=step,
            step_cpu_time=summarize(timing.cpu),
            docs_per_s=(
                round(settings.batch_size / step["median_s"], 2) if name != "naive-loop" else None
            ),
            cpu_per_wall=cpu_share(timing),
            load_average_start=load_start,
            load_average_end=load_end,
            gpu_max_allocated_bytes=gpu_peak_bytes(settings),
            data=(
                f"{len(order)} target-domain PubMed abstracts with >= {settings.max_length} "
                f"word pieces; {len(batches)} distinct cycle-batcher batches"
                + ("; ~50% of positives hidden" if name != "bce" else "; all labels")
            ),
        )

    wall = {name: timings[name].wall for name in timings}
    med = {name: statistics.median(values) for name, values in wall.items()}
    paired_ratio = statistics.median(
        m / b for m, b in zip(wall["dallmi+mixup"], wall["bce"], strict=True)
    )
    over_bce = ratio(med["dallmi+mixup"], med["bce"])
    results.summary["training"] = {
        "batch": settings.batch_size,
        "max_length": settings.max_length,
        "labels": len(MESH_ROOTS),
        "warmup_rounds": settings.warmup,
        "timed_rounds": settings.steps,
        "median_step_s": {name: round(med[name], 4) for name in TRAIN_CONFIGS},
        "docs_per_s": {name: round(settings.batch_size / med[name], 2) for name in TRAIN_CONFIGS},
        "mixup_over_bce": over_bce,
        "mixup_over_bce_paired": round(paired_ratio, 3),
        "mixup_over_bce_target_met": over_bce is not None and over_bce <= TARGET_MIXUP_OVER_BCE,
        "dallmi_over_bce": ratio(med["dallmi"], med["bce"]),
    }
    # Minimum over rounds: the least-contended sample of each configuration. Not the
    # headline (the medians are), but on a busy shared machine it shows what the code
    # costs when it gets the cores.
    low = {name: min(values) for name, values in wall.items()}
    results.summary["least_contended"] = {
        "min_step_s": {name: round(low[name], 4) for name in wall},
        "mixup_over_bce": ratio(low["dallmi+mixup"], low["bce"]),
        "ours_mixup_part_s": round(low["dallmi+mixup"] - low["dallmi"], 4),
        "naive_mixup_part_s": round(low["naive-loop"], 4),
        "mixup_part_speedup": ratio(low["naive-loop"], low["dallmi+mixup"] - low["dallmi"]),
        "step_speedup": ratio(low["dallmi"] + low["naive-loop"], low["dallmi+mixup"]),
    }

    ours_part = statistics.median(
        m - d for m, d in zip(wall["dallmi+mixup"], wall["dallmi"], strict=True)
    )
    naive_step = statistics.median(
        d + n for d, n in zip(wall["dallmi"], wall["naive-loop"], strict=True)
    )
    part_speedup = ratio(med["naive-loop"], ours_part)
    step_speedup = ratio(naive_step, med["dallmi+mixup"])
    if settings.use_gpu:
        target = f"MixUp part speed-up >= {TARGET_GPU_MIXUP_PART_SPEEDUP} (GPU)"
        met = part_speedup is not None and part_speedup >= TARGET_GPU_MIXUP_PART_SPEEDUP
    else:
        target = "our dallmi+MixUp step <= naive step (CPU), i.e. step speed-up >= 1"
        met = step_speedup is not None and step_speedup >= 1.0
    results.summary["mixup_vs_naive"] = {
        "labels_mixed_per_step": int(statistics.median(mixed_pairs)),
        "naive_forward_passes_per_step": 2 * int(statistics.median(mixed_pairs)),
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
    results.write()
    del pipelines
    gc.collect()


def run_inference(settings: Settings, data: PubMed, results: Results) -> None:
    """Part 3: ``nlp.pipe`` vs transformers on the same texts, in the same order,
    repetitions interleaved (the order alternating)."""
    reset_gpu_peak(settings)
    print("[inference] building pipeline and baseline", flush=True)
    texts = inference_texts(data, settings)
    nlp = inference_pipeline(settings, data)
    baseline = TransformersBaseline(settings, nlp)
    systems: Dict[str, Callable[[], numpy.ndarray]] = {
        "nlp.pipe": lambda: spacy_predict(nlp, texts, settings.batch_size),
        "transformers": lambda: baseline.predict(texts),
    }
    # Warm-up on one batch each: first calls allocate and pick kernels.
    spacy_predict(nlp, texts[: settings.batch_size], settings.batch_size)
    baseline.predict(texts[: settings.batch_size])

    timings = {name: Timing() for name in systems}
    outputs: Dict[str, numpy.ndarray] = {}
    load_start = load_average()
    for rep in range(settings.inference_reps):
        for name in rotated(list(systems), rep):
            wall, cpu, outputs[name] = timed(systems[name], functools.partial(sync, settings))
            timings[name].add(wall, cpu)
            print(f"[inference] rep {rep} {name}: {wall:.2f}s", flush=True)
    load_end = load_average()
    diff = float(numpy.abs(outputs["nlp.pipe"] - outputs["transformers"]).max())

    pieces = data.n_pieces[data.target_indices()[: settings.inference_texts]]
    longer = int((pieces > settings.max_length).sum())
    shapes = base_shapes(settings, texts=len(texts), texts_longer_than_max_length=longer)
    docs_per_s = {}
    for name, timing in timings.items():
        run = summarize(timing.wall)
        docs_per_s[name] = len(texts) / run["median_s"]
        results.add(
            "inference",
            name,
            shapes,
            run=run,
            docs_per_s=round(docs_per_s[name], 2),
            cpu_per_wall=cpu_share(timing),
            load_average_start=load_start,
            load_average_end=load_end,
            gpu_max_allocated_bytes=gpu_peak_bytes(settings),
        )
    inf_ratio = round(docs_per_s["nlp.pipe"] / docs_per_s["transformers"], 3)
    results.summary["inference"] = {
        "texts": len(texts),
        "batch": settings.batch_size,
        "max_length": settings.max_length,
        "reps": settings.inference_reps,
        "docs_per_s": {name: round(value, 2) for name, value in docs_per_s.items()},
        "ratio": inf_ratio,
        "target_met": inf_ratio >= TARGET_INFERENCE_RATIO,
        "max_abs_prob_diff": diff,
    }
    results.write()


def run_scaling(settings: Settings, data: PubMed, results: Results) -> None:
    """Part 5: dallmi+MixUp step vs number of labels (at the full batch) and vs batch
    size (at ``scaling_batch_labels`` labels), all configurations round-robin."""
    reset_gpu_peak(settings)
    order = training_indices(data, settings.max_length)
    texts = [data.texts[i] for i in order]
    configs = [(n, settings.batch_size) for n in settings.scaling_labels]
    configs += [
        (settings.scaling_batch_labels, b)
        for b in settings.scaling_batch_sizes
        if (settings.scaling_batch_labels, b) not in configs
    ]
    label_counts = sorted({n for n, _ in configs})
    rounds = settings.scaling_warmup + settings.scaling_steps
    max_batch = max(b for _, b in configs)
    rng = numpy.random.default_rng(SEED + 2)
    print(f"[scaling] building {len(label_counts)} pipelines", flush=True)

    pipelines: Dict[int, Tuple[Language, Optimizer]] = {}
    examples: Dict[Tuple[int, int], List[List[Example]]] = {}
    for n_labels in label_counts:
        names = [f"S{i:02d}" for i in range(n_labels)]
        chunks = []
        for rnd in range(rounds):
            start = (rnd * max_batch) % max(1, len(texts) - max_batch)
            chunks.append(texts[start : start + max_batch])
        first = synthetic_labels(16, n_labels, SYNTHETIC_DENSITY, rng)

        def init(
            nlp: Language,
            texts: List[str] = chunks[0][:16],
            matrix: numpy.ndarray = first,
            names: List[str] = names,
        ) -> List[Example]:
            return make_examples(nlp, texts, matrix, names)

        nlp, optimizer = build_pipeline(settings, "dallmi", True, init)
        pipelines[n_labels] = (nlp, optimizer)
        for labels_, batch in configs:
            if labels_ != n_labels:
                continue
            per_round = []
            for rnd in range(rounds):
                # Re-draw the batch's own matrix so >= 1 positive per label holds at
                # every batch size, not only for the full batch.
                matrix = synthetic_labels(batch, n_labels, SYNTHETIC_DENSITY, rng)
                per_round.append(make_examples(nlp, chunks[rnd][:batch], matrix, names))
            examples[(labels_, batch)] = per_round

    timings = {config: Timing() for config in configs}
    load_start = load_average()
    for rnd in range(rounds):
        for config in rotated(configs, rnd):
            nlp, optimizer = pipelines[config[0]]
            batch = examples[config][rnd]
            step = functools.partial(update, nlp, optimizer, batch)
            wall, cpu, _ = timed(step, functools.partial(sync, settings))
            if rnd >= settings.scaling_warmup:
                timings[config].add(wall, cpu)
            print(f"[scaling] round {rnd} labels={config[0]} batch={config[1]}: {wall:.2f}s")
    load_end = load_average()
    for (n_labels, batch), timing in timings.items():
        step = summarize(timing.wall)
        rows = batch + n_labels
        results.add(
            "scaling",
            f"dallmi+mixup labels={n_labels} batch={batch}",
            {"batch": batch, "max_length": settings.max_length, "labels": n_labels},
            step=step,
            step_cpu_time=summarize(timing.cpu),
            backbone_rows=rows,
            docs_per_s=round(batch / step["median_s"], 2),
            s_per_row=round(step["median_s"] / rows, 5),
            cpu_per_wall=cpu_share(timing),
            positive_density=SYNTHETIC_DENSITY,
            load_average_start=load_start,
            load_average_end=load_end,
            gpu_max_allocated_bytes=gpu_peak_bytes(settings),
        )
    results.write()
    del pipelines, examples
    gc.collect()


def memory_phase(settings: Settings, phase: str) -> Dict[str, Any]:
    """Run ONE phase in this (fresh) process and report its peak resident memory."""
    data = load_pubmed(settings.data_dir, settings.backbone)
    shapes = base_shapes(settings)
    if phase.startswith("train"):
        order, full, known, batches = training_data(data, settings)
        texts = [data.texts[i] for i in order]
        config = "bce" if phase == "train-bce" else "dallmi+mixup"
        _, nlp, optimizer, egs = next(
            training_pipelines(
                settings, texts, full, known, batches[: settings.memory_steps], config
            )
        )
        setup_rss = read_proc_status("VmRSS")
        for step in range(settings.memory_steps):
            update(nlp, optimizer, egs[step % len(egs)])
        shapes["steps"] = settings.memory_steps
    else:
        texts = inference_texts(data, settings)
        nlp = inference_pipeline(settings, data)
        if phase == "infer-spacy":
            setup_rss = read_proc_status("VmRSS")
            spacy_predict(nlp, texts, settings.batch_size)
        else:
            baseline = TransformersBaseline(settings, nlp)
            del nlp
            gc.collect()
            setup_rss = read_proc_status("VmRSS")
            baseline.predict(texts)
        shapes["texts"] = len(texts)
    sync(settings)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    hwm = read_proc_status("VmHWM")
    return {
        "phase": phase,
        "shapes": shapes,
        "rss_after_setup_bytes": setup_rss,
        "peak_rss_bytes": hwm if hwm is not None else usage.ru_maxrss * 1024,
        "ru_maxrss_bytes": usage.ru_maxrss * 1024,
        "vm_hwm_bytes": hwm,
        "gpu_max_allocated_bytes": gpu_peak_bytes(settings),
    }


def run_memory(settings: Settings, results: Results, argv: Sequence[str]) -> None:
    """Part 4: each phase in its own subprocess, so one peak never hides another. The
    subprocess re-runs this script with this run's options (``argv``)."""
    for phase in MEMORY_PHASES:
        print(f"[memory] {phase}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "phase.json"
            command = [sys.executable, str(Path(__file__).resolve()), *argv]
            command += ["--data-dir", str(settings.data_dir), "--phase", phase]
            started = time.perf_counter()
            subprocess.run([*command, "--phase-output", str(out)], check=True, cwd=REPO_ROOT)
            measured = json.loads(out.read_text(encoding="utf-8"))
        results.add(
            "memory",
            phase,
            measured.pop("shapes"),
            **measured,
            note=(
                "peak RSS is VmHWM of the subprocess (ru_maxrss as fallback); setup = "
                "after imports, data loading and pipeline initialisation"
            ),
            wall_s=round(time.perf_counter() - started, 1),
        )
        results.write()


def run_profile(settings: Settings, data: PubMed) -> Path:
    """cProfile one step of each training configuration (after one warm-up step) and
    write the top functions by cumulative and by own time, to see where a step goes."""
    order, full, known, batches = training_data(data, settings)
    texts = [data.texts[i] for i in order]
    report = io.StringIO()
    for name, nlp, optimizer, example_batches in training_pipelines(
        settings, texts, full, known, batches[:2]
    ):
        update(nlp, optimizer, example_batches[0])
        steps = [
            (f"{name}: one step", functools.partial(update, nlp, optimizer, example_batches[1]))
        ]
        if name == "dallmi":
            tokens, positives = naive_tokens_positives(nlp, example_batches[1])
            rng = numpy.random.default_rng(SEED)
            loop = functools.partial(naive_mixup_loop, nlp, tokens, positives, rng)
            steps.append(("naive MixUp loop: one step", loop))
        for title, step in steps:
            profiler = cProfile.Profile()
            profiler.enable()
            step()
            sync(settings)
            profiler.disable()
            for sort in ("cumulative", "tottime"):
                report.write(f"===== {title}, sorted by {sort} =====\n")
                stats = pstats.Stats(profiler, stream=report)
                stats.strip_dirs().sort_stats(sort).print_stats(30)
        del nlp, optimizer
        gc.collect()
    header = (
        f"# cProfile of one training step per configuration; {now()}; "
        f"torch threads {torch.get_num_threads()}; load average {load_average()}; "
        f"backbone {settings.backbone}; batch {settings.batch_size}; "
        f"max length {settings.max_length}; git {GIT_AT_START['commit']}\n\n"
    )
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"_threads{settings.threads}" if settings.threads else ""
    path = settings.output_dir / f"profile_{settings.device}{suffix}.txt"
    path.write_text(header + report.getvalue(), encoding="utf-8")
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    settings = parse_args(argv)
    quiet_libraries()
    setup_device(settings)
    if settings.phase:
        measured = memory_phase(settings, settings.phase)
        settings.phase_output.write_text(json.dumps(measured), encoding="utf-8")
        return 0
    started = time.perf_counter()
    print(f"[setup] reading {settings.data_dir / 'pubmed'}", flush=True)
    data = load_pubmed(settings.data_dir, settings.backbone)
    if settings.profile:
        print(f"[profile] wrote {run_profile(settings, data)}")
        return 0
    context = build_context(settings)
    context["load_start"] = load_average()
    context["data"] = {
        "files": data.files,
        "unique_docs": len(data.texts),
        "target_docs": int(data.female.sum()),
        "target_docs_filling_max_length": len(training_indices(data, settings.max_length)),
    }
    results = Results(settings, context)
    if "training" in settings.parts:
        run_training(settings, data, results)
    if "inference" in settings.parts:
        run_inference(settings, data, results)
    if "scaling" in settings.parts:
        run_scaling(settings, data, results)
    if "memory" in settings.parts:
        run_memory(settings, results, argv)
    context["load_end"] = load_average()
    context["total_wall_s"] = round(time.perf_counter() - started, 1)
    results.write()
    print(f"wrote {results.json_path} and {results.md_path} in {context['total_wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

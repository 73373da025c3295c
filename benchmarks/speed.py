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

The script is split by responsibility: ``speed_harness.py`` (settings, device, timed calls),
``speed_data.py`` (PubMed, hidden labels, batches, pipelines), ``speed_baselines.py`` (the
reference MixUp loop, plain transformers), ``speed_parts.py`` (scaling, memory, profile) and
``speed_report.py`` (JSON and Markdown); this file holds the training and inference parts.

All training configurations of a part live in ONE process and take their steps round-robin
(the order rotating from round to round), so a burst of load from other processes hits every
configuration alike; figures are medians over the timed rounds.

Usage::

    python benchmarks/speed.py              # CPU, writes benchmarks/results/speed_cpu.{json,md}
    python benchmarks/speed.py --gpu-id 0   # GPU, writes benchmarks/results/speed_gpu.{json,md}
    python benchmarks/speed.py --quick      # smoke run, writes speed_<device>_quick.{json,md}
"""

import argparse
import functools
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy
from environment import (
    REPO_ROOT,
    load_average,
)
from speed_baselines import (
    TransformersBaseline,
    batch_positives,
    naive_mixup_loop,
)
from speed_data import (
    SEED,
    PubMed,
    component_model,
    cycle_batches,
    hidden_positives,
    inference_pipeline,
    inference_texts,
    load_pubmed,
    spacy_predict,
    training_indices,
    training_pipelines,
    update,
)
from speed_harness import (
    ALL_PARTS,
    MEMORY_PHASES,
    Settings,
    Timing,
    build_context,
    cpu_share,
    gpu_peak_bytes,
    quiet_libraries,
    ratio,
    reset_gpu_peak,
    rotated,
    setup_device,
    summarize,
    timed,
)
from speed_parts import (
    memory_phase,
    run_memory,
    run_profile,
    run_scaling,
)
from speed_report import (
    TARGET_GPU_MIXUP_PART_SPEEDUP,
    TARGET_INFERENCE_RATIO,
    TARGET_MIXUP_OVER_BCE,
    TRAIN_CONFIGS,
    Results,
)

from spacy_dallmi.architecture import tokenize
from spacy_dallmi.experiments.datasets import MESH_ROOTS

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "datasets"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "benchmarks" / "results"


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--gpu-id", type=int, default=-1, help="-1 = CPU")
    parser.add_argument(
        "--backbone", default="all-MiniLM-L6-v2", help="model `name`: packaged or a folder"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds, training part")
    parser.add_argument("--steps", type=int, default=6, help="timed rounds, training part")
    parser.add_argument("--scaling-warmup", type=int, default=2)
    parser.add_argument("--scaling-steps", type=int, default=3)
    parser.add_argument("--scaling-labels", type=int, nargs="+", default=[8, 14, 32, 64])
    parser.add_argument("--scaling-batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--scaling-batch-labels", type=int, default=14)
    parser.add_argument("--inference-texts", type=int, default=512)
    parser.add_argument("--inference-reps", type=int, default=3)
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice); 1 makes timings on a "
        "shared, busy machine much less noisy. Adds _threads<N> to the file names",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 warmup + 2 timed rounds, few texts; writes *_quick.* files",
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=ALL_PARTS,
        default=list(ALL_PARTS),
        help="a subset writes *_partial.* files, so full results are not overwritten",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of the benchmark, cProfile one step of each training configuration "
        "and write results/profile_<device>.txt",
    )
    # Internal: the memory subprocesses re-invoke this script with these.
    parser.add_argument("--phase", choices=MEMORY_PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--phase-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.steps = 1, 2
        args.scaling_warmup, args.scaling_steps = 0, 1
        args.inference_texts, args.inference_reps = 128, 1
        args.memory_steps = 1
    settings = Settings(
        data_dir=args.data_dir.expanduser().resolve(),
        output_dir=args.output_dir.expanduser().resolve(),
        gpu_id=args.gpu_id,
        backbone=args.backbone,
        batch_size=args.batch_size,
        max_length=args.max_length,
        warmup=args.warmup,
        steps=args.steps,
        scaling_warmup=args.scaling_warmup,
        scaling_steps=args.scaling_steps,
        scaling_labels=list(args.scaling_labels),
        scaling_batch_sizes=list(args.scaling_batch_sizes),
        scaling_batch_labels=args.scaling_batch_labels,
        inference_texts=args.inference_texts,
        inference_reps=args.inference_reps,
        memory_steps=args.memory_steps,
        quick=args.quick,
        parts=[part for part in ALL_PARTS if part in args.parts],
        threads=args.threads,
    )
    if settings.steps < 1 or settings.scaling_steps < 1 or settings.inference_reps < 1:
        parser.error("--steps, --scaling-steps and --inference-reps must be at least 1")
    return settings, args


def run_training(settings: Settings, data: PubMed, results: Results) -> None:
    """Parts 1 and 2: bce, dallmi, dallmi+MixUp and the naive MixUp loop, round-robin."""
    reset_gpu_peak(settings)
    print("[training] building pipelines", flush=True)
    order = training_indices(data, settings.max_length)
    full = data.labels[order]
    known = hidden_positives(full)
    batches = cycle_batches(known, settings.batch_size)
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
            wall, cpu = timed(settings, functools.partial(update, nlp, optimizer, batch))
            naive = None
            if name == "dallmi":
                # The naive baseline's extra passes, as if they were part of this step.
                positives = batch_positives(nlp, batch)
                tokens = tokenize(component_model(nlp), [eg.predicted for eg in batch])
                loop = functools.partial(naive_mixup_loop, nlp, tokens, positives, naive_rng)
                naive = timed(settings, loop)
                pairs = int(((positives == 1).any(0) & (positives != 1).any(0)).sum())
                mixed_pairs.append(pairs)
            if rnd >= settings.warmup:
                timings[name].add(wall, cpu)
                if naive is not None:
                    timings["naive-loop"].add(*naive)
            extra = f" + naive loop {naive[0]:.2f}s" if naive else ""
            print(f"[training] round {rnd} {name}: {wall:.2f}s{extra}", flush=True)
    load_end = load_average()

    shapes = {
        "batch": settings.batch_size,
        "max_length": settings.max_length,
        "labels": len(MESH_ROOTS),
        "word_pieces_per_doc": settings.max_length,
    }
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
    head = component_model(nlp).layers[2]
    baseline = TransformersBaseline(settings, head.get_param("W"), head.get_param("b"))
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
            holder: Dict[str, numpy.ndarray] = {}

            def call(name: str = name, holder: Dict[str, numpy.ndarray] = holder) -> None:
                holder["out"] = systems[name]()

            wall, cpu = timed(settings, call)
            timings[name].add(wall, cpu)
            outputs[name] = holder["out"]
            print(f"[inference] rep {rep} {name}: {wall:.2f}s", flush=True)
    load_end = load_average()
    diff = float(numpy.abs(outputs["nlp.pipe"] - outputs["transformers"]).max())

    pieces = data.n_pieces[data.target_indices()[: settings.inference_texts]]
    shapes = {
        "batch": settings.batch_size,
        "max_length": settings.max_length,
        "labels": len(MESH_ROOTS),
        "texts": len(texts),
        "texts_longer_than_max_length": int((pieces > settings.max_length).sum()),
    }
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings, args = parse_args(argv)
    quiet_libraries()
    setup_device(settings)
    if args.phase:
        measured = memory_phase(settings, args.phase)
        args.phase_output.write_text(json.dumps(measured), encoding="utf-8")
        return 0
    started = time.perf_counter()
    print(f"[setup] reading {settings.data_dir / 'pubmed'}", flush=True)
    data = load_pubmed(settings.data_dir, settings.backbone)
    if args.profile:
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
        run_memory(settings, results)
    context["load_end"] = load_average()
    context["total_wall_s"] = round(time.perf_counter() - started, 1)
    results.write()
    print(f"wrote {results.json_path} and {results.md_path} in {context['total_wall_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

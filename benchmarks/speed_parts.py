"""The scaling, memory and profile parts of the speed benchmark (``speed.py`` runs them)."""

import cProfile
import functools
import gc
import io
import json
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy
import torch
from environment import (
    GIT_AT_START,
    REPO_ROOT,
    load_average,
    read_proc_status,
)
from spacy.language import Language
from spacy.training import Example
from speed_baselines import (
    TransformersBaseline,
    batch_positives,
    naive_mixup_loop,
)
from speed_data import (
    SEED,
    SYNTHETIC_DENSITY,
    PubMed,
    build_pipeline,
    component_model,
    cycle_batches,
    hidden_positives,
    inference_pipeline,
    inference_texts,
    load_pubmed,
    make_examples,
    spacy_predict,
    synthetic_labels,
    training_indices,
    training_pipelines,
    update,
)
from speed_harness import (
    MEMORY_PHASES,
    Settings,
    Timing,
    cpu_share,
    gpu_peak_bytes,
    now,
    reset_gpu_peak,
    rotated,
    subprocess_args,
    summarize,
    sync,
    timed,
)
from speed_report import (
    Results,
)
from thinc.api import Optimizer

from spacy_dallmi.architecture import tokenize
from spacy_dallmi.experiments.datasets import MESH_ROOTS


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
            wall, cpu = timed(settings, functools.partial(update, nlp, optimizer, batch))
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
    if phase.startswith("train"):
        order = training_indices(data, settings.max_length)
        full = data.labels[order]
        known = hidden_positives(full)
        batches = cycle_batches(known, settings.batch_size)
        objective = "bce" if phase == "train-bce" else "dallmi"
        matrix = full if objective == "bce" else known
        holder: Dict[str, List[List[Example]]] = {}

        def init(nlp: Language) -> List[Example]:
            holder["batches"] = [
                make_examples(
                    nlp,
                    [data.texts[order[i]] for i in batch],
                    matrix[batch],
                    MESH_ROOTS,
                )
                for batch in batches[: settings.memory_steps]
            ]
            return holder["batches"][0]

        nlp, optimizer = build_pipeline(settings, objective, objective == "dallmi", init)
        setup_rss = read_proc_status("VmRSS")
        for step in range(settings.memory_steps):
            update(nlp, optimizer, holder["batches"][step % len(holder["batches"])])
        shapes = {
            "batch": settings.batch_size,
            "max_length": settings.max_length,
            "labels": len(MESH_ROOTS),
            "steps": settings.memory_steps,
        }
    else:
        texts = inference_texts(data, settings)
        nlp = inference_pipeline(settings, data)
        if phase == "infer-spacy":
            setup_rss = read_proc_status("VmRSS")
            spacy_predict(nlp, texts, settings.batch_size)
        else:
            head = component_model(nlp).layers[2]
            baseline = TransformersBaseline(settings, head.get_param("W"), head.get_param("b"))
            del nlp
            gc.collect()
            setup_rss = read_proc_status("VmRSS")
            baseline.predict(texts)
        shapes = {
            "batch": settings.batch_size,
            "max_length": settings.max_length,
            "labels": len(MESH_ROOTS),
            "texts": len(texts),
        }
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


def run_memory(settings: Settings, results: Results) -> None:
    """Part 4: each phase in its own subprocess, so one peak never hides another."""
    for phase in MEMORY_PHASES:
        print(f"[memory] {phase}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "phase.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve().with_name("speed.py")),
                "--phase",
                phase,
                "--phase-output",
                str(out),
                *subprocess_args(settings),
            ]
            started = time.perf_counter()
            subprocess.run(command, check=True, cwd=REPO_ROOT)
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
    order = training_indices(data, settings.max_length)
    full = data.labels[order]
    known = hidden_positives(full)
    batches = cycle_batches(known, settings.batch_size)
    texts = [data.texts[i] for i in order]
    report = io.StringIO()
    for name, nlp, optimizer, example_batches in training_pipelines(
        settings, texts, full, known, batches[:2]
    ):
        update(nlp, optimizer, example_batches[0])
        profiler = cProfile.Profile()
        profiler.enable()
        update(nlp, optimizer, example_batches[1])
        sync(settings)
        profiler.disable()
        profiles = [(f"{name}: one step", profiler)]
        if name == "dallmi":
            batch = example_batches[1]
            tokens = tokenize(component_model(nlp), [eg.predicted for eg in batch])
            positives = batch_positives(nlp, batch)
            rng = numpy.random.default_rng(SEED)
            naive_profiler = cProfile.Profile()
            naive_profiler.enable()
            naive_mixup_loop(nlp, tokens, positives, rng)
            sync(settings)
            naive_profiler.disable()
            profiles.append(("naive MixUp loop: one step", naive_profiler))
        for title, prof in profiles:
            for sort in ("cumulative", "tottime"):
                report.write(f"===== {title}, sorted by {sort} =====\n")
                stats = pstats.Stats(prof, stream=report)
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

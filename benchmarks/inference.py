"""Inference benchmark: length bucketing, Ray Data scale-out and ``classify``'s memory.

A script, not a test: the numbers depend on the machine and its load. It answers three
questions (``benchmarks/README.md`` explains the figures):

1. ``pipe``: docs/s of ``nlp.pipe`` with length bucketing, without it, and of a plain
   transformers loop in fixed order (tokenise, forward under ``torch.no_grad()``, mean pool,
   linear head), on SemEval tweets (short, variable) and PubMed abstracts (long, mostly
   truncated). The configurations take turns within each repeat, the order rotating, so a
   burst of load from other processes hits all of them alike; figures are means over
   repeats. Tweets also get a sweep of window sizes. The same part times the two costs
   that bucketing adds or could save: the extra tokenisation for the lengths, and
   ``torch.inference_mode()`` against the shim's ``torch.no_grad()``.
2. ``ray``: ``classify_with_ray`` with 2 single-thread CPU actors against ``classify`` in
   one process (one thread) on the same file, both from start to written output (model
   loading included); peak RSS per actor, sampled from ``/proc``.
3. ``classify``: the command on a generated CSV of 200,000 rows in a subprocess; its RSS
   sampled over time (it must stay flat) and every row accounted for.

Both ``ray`` and ``classify`` run ``classify`` end to end in a subprocess, as the CLI runs it,
and sample resident memory from ``/proc`` while it writes.

Usage::

    python benchmarks/inference.py                       # all parts, CPU, one torch thread
    python benchmarks/inference.py --parts pipe --datasets tweets
    python benchmarks/inference.py --quick               # < 1 minute smoke run
    python benchmarks/inference.py --parts pipe --gpu-id 0 --batch-size 256

Writes ``benchmarks/results/inference_<device>[_<parts>[_<datasets>]][_quick].{json,md}``.
"""

import argparse
import csv
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import environment as env
import numpy
import spacy
import torch
from spacy.language import Language

from spacy_dallmi.architecture import get_hf_objects

ALL_PARTS = ("pipe", "ray", "classify")
DATASETS = ("tweets", "abstracts")
LABELS = ("anger", "disgust", "fear", "joy", "love", "optimism", "sadness", "surprise")
PADDING_WINDOWS = (0, 64, 128, 256, 512, 1024, 2048)
WORDS = (
    "the a of and to in is for on with that this patients were was as by be are cells study "
    "results from at or an we not have which their these it been than more two after using "
    "happy sad love hate fear joy great today people really time day night work life world"
).split()
Runner = Callable[[List[str], int], numpy.ndarray]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    options = env.parser(__doc__, threads=1)
    options.add_argument(
        "--parts", nargs="+", choices=ALL_PARTS, help="default: all (--quick: pipe, classify)"
    )
    options.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    options.add_argument("--window", type=int, default=1024, help="bucket_window compared")
    options.add_argument("--sweep", type=int, nargs="*", default=[256], help="more windows, tweets")
    options.add_argument("--texts", type=int, default=2000)
    options.add_argument("--repeats", type=int, default=3)
    options.add_argument("--ray-texts", type=int, default=4000)
    options.add_argument("--ray-workers", type=int, default=2)
    options.add_argument("--classify-rows", type=int, default=200_000)
    args = options.parse_args(argv)
    if args.quick:  # < 1 minute
        args.texts, args.repeats, args.sweep, args.batch_size = 64, 2, [], 16
        args.ray_texts, args.classify_rows, args.window = 256, 2000, 256
        args.datasets = ["tweets"]
        args.parts = args.parts or ["pipe", "classify"]
    args.parts = args.parts or list(ALL_PARTS)
    args.data_dir = args.data_dir.expanduser().resolve()
    return args


# ----------------------------------------------------------------------------- data


def read_tweets(data_dir: Path, n: int) -> List[str]:
    path = data_dir / "semeval2018_ec" / "2018-E-c-En-train.txt"
    with path.open(encoding="utf8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["Tweet"] for row, _ in zip(rows, range(n))]


def read_abstracts(data_dir: Path, n: int) -> List[str]:
    """Unique abstracts (by pmid), in file order: train, dev, test; small before med."""
    texts: Dict[str, str] = {}
    names = ("train-data-small", "dev-data-small", "test-data-small", "dev-data-med")
    for name in (*names, "test-data-med"):
        with (data_dir / "pubmed" / f"{name}.csv").open(encoding="utf8", newline="") as handle:
            for row in csv.DictReader(handle):
                texts.setdefault(row["pmid"], row["abstractText"])
    return list(texts.values())[:n]


def write_corpus(path: Path, rows: int, seed: int = 0) -> Dict[str, int]:
    """A CSV of ``rows`` rows: texts of 1-60 words, ~1% empty, ~0.5% short rows (missing)."""
    rng = random.Random(seed)
    counts = {"ok": 0, "empty": 0, "missing": 0}
    with path.open("w", encoding="utf8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "source"])
        for i in range(rows):
            draw = rng.random()
            if draw < 0.005:
                writer.writerow([i])
                counts["missing"] += 1
            elif draw < 0.015:
                writer.writerow([i, "", "gen"])
                counts["empty"] += 1
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
                writer.writerow([i, text + ", end", "gen"])
                counts["ok"] += 1
    return counts


# ------------------------------------------------------------------------ pipelines


def build_pipeline(backbone: str, max_length: int) -> Language:
    """An untrained ``dallmi_textcat`` pipeline on the backbone (speed only)."""
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe(
        "dallmi_textcat",
        name="textcat",
        config={"model": {"name": backbone, "max_length": max_length}},
    )
    for label in LABELS:
        textcat.add_label(label)
    nlp.initialize()
    return nlp


def plain_transformers(nlp: Language) -> Runner:
    """The baseline: the pipeline's own backbone and head, called directly, fixed order."""
    model = nlp.get_pipe("textcat").model
    hf = get_hf_objects(model)
    head = model.layers[-1]
    device = hf.transformer.device
    weight = torch.as_tensor(model.ops.to_numpy(head.get_param("W")), device=device)
    bias = torch.as_tensor(model.ops.to_numpy(head.get_param("b")), device=device)
    options = {"max_length": model.attrs["max_length"]}

    def run(texts: List[str], batch_size: int) -> numpy.ndarray:
        hf.transformer.eval()  # the shim's predict leaves the model in training mode
        head = (weight, bias)
        return env.plain_classify(hf.tokenizer, hf.transformer, head, texts, batch_size, **options)

    return run


def pipe_runner(nlp: Language, window: int) -> Runner:
    textcat = nlp.get_pipe("textcat")

    def run(texts: List[str], batch_size: int) -> numpy.ndarray:
        textcat.cfg["bucket_window"] = window
        docs = nlp.pipe(texts, batch_size=batch_size)
        return numpy.asarray([[doc.cats[label] for label in LABELS] for doc in docs])

    return run


# ----------------------------------------------------------------------- part 1: pipe


def time_configs(
    runners: Dict[str, Runner], texts: List[str], batch_size: int, repeats: int
) -> Dict[str, Dict[str, Any]]:
    """Round-robin timing; also checks that every configuration gives the same output."""
    for run in runners.values():
        run(texts[: 2 * batch_size], batch_size)  # warm-up
    names = list(runners)
    seconds: Dict[str, List[float]] = {name: [] for name in names}
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    outputs: Dict[str, numpy.ndarray] = {}
    for repeat in range(repeats):
        for name in env.rotated(names, repeat):
            wall, proc, outputs[name] = env.timed(
                functools.partial(runners[name], texts, batch_size)
            )
            seconds[name].append(wall)
            cpu[name].append(proc)
            print(f"  [{repeat}] {name}: {seconds[name][-1]:.1f} s", flush=True)
    reference = outputs[names[0]]
    results = {}
    for name in names:
        docs_per_s = [len(texts) / s for s in seconds[name]]
        results[name] = {
            "seconds": [round(s, 3) for s in seconds[name]],
            "docs_per_s_mean": round(statistics.mean(docs_per_s), 2),
            "docs_per_s_std": round(statistics.stdev(docs_per_s), 2) if repeats > 1 else 0.0,
            "cpu_s_per_wall_s": round(sum(cpu[name]) / sum(seconds[name]), 2),
            # one thread: CPU time is what the configuration cost, whatever else ran
            "docs_per_cpu_s": round(len(texts) * repeats / sum(cpu[name]), 2),
            "max_abs_diff_vs_first": float(numpy.abs(outputs[name] - reference).max()),
        }
    return results


def padding_share(nlp: Language, texts: List[str], batch_size: int, window: int) -> float:
    """Share of padded word-piece positions in the batches a configuration runs."""
    textcat = nlp.get_pipe("textcat")
    docs = [nlp.make_doc(text) for text in texts]
    encoded = get_hf_objects(textcat.model).tokenizer([d.text for d in docs])["input_ids"]
    lengths = numpy.minimum([len(ids) for ids in encoded], textcat.model.attrs["max_length"])
    order: List[int] = []
    step = max(window, batch_size) if window else batch_size
    for start in range(0, len(docs), step):
        chunk = list(range(start, min(start + step, len(docs))))
        if window:
            chunk = [chunk[i] for i in textcat.length_order([docs[i] for i in chunk])]
        order += chunk
    padded = real = 0
    for start in range(0, len(order), batch_size):
        batch = lengths[order[start : start + batch_size]]
        padded += int(batch.max()) * len(batch)
        real += int(batch.sum())
    return round(1 - real / padded, 3)


def overheads(nlp: Language, texts: List[str], batch_size: int, repeats: int) -> Dict[str, Any]:
    """Cost of the extra tokenisation for the sort, and inference_mode vs no_grad."""
    textcat = nlp.get_pipe("textcat")
    docs = [nlp.make_doc(text) for text in texts]
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(docs), 1024):
            textcat.length_order(docs[i : i + 1024])
    length_s = (time.perf_counter() - start) / repeats
    model = textcat.model
    hf = get_hf_objects(model)
    encoded = [
        hf.tokenizer(
            texts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=model.attrs["max_length"],
            return_tensors="pt",
        ).to(hf.transformer.device)
        for i in range(0, len(texts), batch_size)
    ]
    hf.transformer.eval()
    contexts = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
    forward: Dict[str, List[float]] = {name: [] for name in contexts}
    for repeat in range(repeats):
        for name in env.rotated(list(contexts), repeat):
            start = time.perf_counter()
            with contexts[name]():
                for batch in encoded:
                    hf.transformer(**batch)
                if hf.transformer.device.type == "cuda":
                    torch.cuda.synchronize()
            forward[name].append(time.perf_counter() - start)
    no_grad = statistics.mean(forward["no_grad"])
    inference = statistics.mean(forward["inference_mode"])
    return {
        "texts": len(texts),
        "length_tokenisation_s": round(length_s, 4),
        "forward_no_grad_s": round(no_grad, 3),
        "forward_inference_mode_s": round(inference, 3),
        "length_tokenisation_share_of_forward": round(length_s / no_grad, 4),
        "inference_mode_speedup": round(no_grad / inference, 3),
    }


def run_pipe_part(args: argparse.Namespace, results: Dict[str, Any]) -> None:
    nlp = build_pipeline(args.backbone, args.max_length)
    part: Dict[str, Any] = {}
    readers = {"tweets": read_tweets, "abstracts": read_abstracts}
    for dataset in args.datasets:
        texts = readers[dataset](args.data_dir, args.texts)
        print(f"[pipe] {dataset}: {len(texts)} texts", flush=True)
        windows = {"transformers (fixed order)": 0, "nlp.pipe (no bucketing)": 0}
        for window in [args.window] + (args.sweep if dataset == "tweets" else []):
            windows[f"nlp.pipe (bucket_window {window})"] = window
        runners = {name: pipe_runner(nlp, window) for name, window in windows.items()}
        runners["transformers (fixed order)"] = plain_transformers(nlp)
        timed = time_configs(runners, texts, args.batch_size, args.repeats)
        for name, window in windows.items():
            timed[name]["padding_share"] = padding_share(nlp, texts, args.batch_size, window)
        plain, unsorted = timed["transformers (fixed order)"], timed["nlp.pipe (no bucketing)"]
        bucketed = timed[f"nlp.pipe (bucket_window {args.window})"]

        def over(a: Dict[str, Any], b: Dict[str, Any]) -> float:
            return round(a["docs_per_s_mean"] / b["docs_per_s_mean"], 3)

        part[dataset] = {
            "texts": len(texts),
            "configs": timed,
            "bucketed_over_unbucketed": over(bucketed, unsorted),
            "bucketed_over_transformers": over(bucketed, plain),
            "unbucketed_over_transformers": over(unsorted, plain),
            "padding_share_by_window": {
                window: padding_share(nlp, texts, args.batch_size, window)
                for window in PADDING_WINDOWS
            },
            "overheads": overheads(
                nlp, texts[: min(len(texts), 512)], args.batch_size, args.repeats
            ),
        }
    results["pipe"] = part


# --------------------------------------------------------------- parts 2 and 3: memory


def processes_named(fragment: str) -> List[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class Sampler(threading.Thread):
    """Samples the RSS of processes (and optionally progress) every ``interval`` seconds."""

    def __init__(
        self,
        find: Callable[[], List[int]],
        progress: Callable[[], int] = lambda: 0,
        interval: float = 0.5,
    ):
        super().__init__(daemon=True)
        self.find, self.progress, self.interval = find, progress, interval
        self.samples: List[Dict[str, Any]] = []
        self.stopped = threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.stopped.is_set():
            rss = {pid: env.read_proc_status("VmRSS", pid) for pid in self.find()}
            stamp = round(time.perf_counter() - self.start_time, 2)
            rss = {p: r / 2**20 for p, r in rss.items() if r}
            self.samples.append({"t": stamp, "rss_mib": rss, "progress": self.progress()})
            self.stopped.wait(self.interval)

    def stop(self) -> List[Dict[str, Any]]:
        self.stopped.set()
        self.join()
        return self.samples


def run_classify_process(
    model: Path, source: Path, output: Path, extra: Sequence[str], threads: int
) -> Dict[str, Any]:
    """``classify`` in a subprocess (through typer, as the CLI runs it), RSS sampled with
    the bytes written so far as progress."""
    code = (
        "import torch, typer; torch.set_num_threads(%d); "
        "from spacy_dallmi.classify import classify_command; typer.run(classify_command)" % threads
    )
    command = [sys.executable, "-c", code, str(model), str(source), str(output)]
    command += ["--text-column", "text", "--no-progress", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def written() -> int:
        # classify writes to a temporary file of its own, .OUTPUT.<random>.partial
        for path in [*output.parent.glob(f".{output.name}.*.partial"), output]:
            try:
                return path.stat().st_size
            except OSError:
                continue
        return 0

    sampler = Sampler(lambda: [process.pid], written)
    sampler.start()
    out, _ = process.communicate()
    samples = sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"classify failed:\n{out}")
    total = max(written(), 1)
    series = [
        (s["t"], s["progress"] / total, s["rss_mib"][process.pid])
        for s in samples
        if process.pid in s["rss_mib"]
    ]
    return {"seconds": round(time.perf_counter() - start, 2), "rss": series}


def run_ray_part(args: argparse.Namespace, results: Dict[str, Any], workdir: Path) -> None:
    import pyarrow.parquet
    import ray

    from spacy_dallmi.ray import classify_with_ray

    nlp = build_pipeline(args.backbone, args.max_length)
    model = workdir / "minilm_pipeline"
    nlp.to_disk(model)
    texts = read_tweets(args.data_dir, args.ray_texts)
    source = workdir / "tweets.jsonl"
    with source.open("w", encoding="utf8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": i, "text": text}) + "\n")
    window = ["--bucket-window", str(args.window), "--batch-size", str(args.batch_size)]
    print(f"[ray] single process on {len(texts)} tweets", flush=True)
    single = run_classify_process(model, source, workdir / "single.parquet", window, 1)
    ray.init(num_cpus=args.ray_workers, include_dashboard=False, log_to_driver=False)
    try:
        print(f"[ray] {args.ray_workers} actors", flush=True)
        sampler = Sampler(lambda: processes_named("PipelineActor"))
        sampler.start()
        start = time.perf_counter()
        summary = classify_with_ray(
            model,
            [source],
            workdir / "ray_out",
            "text",
            workers=args.ray_workers,
            batch_size=args.batch_size,
            bucket_window=args.window,
        )
        seconds = time.perf_counter() - start
        peaks: Dict[int, float] = {}
        for sample in sampler.stop():
            for pid, rss in sample["rss_mib"].items():
                peaks[pid] = max(peaks.get(pid, 0.0), rss)
    finally:
        ray.shutdown()
    single_rows = pyarrow.parquet.read_table(workdir / "single.parquet").to_pylist()
    ray_rows = pyarrow.parquet.read_table(workdir / "ray_out").to_pylist()
    diff = max(
        abs(a[f"prob_{k}"] - b[f"prob_{k}"]) for a, b in zip(single_rows, ray_rows) for k in LABELS
    )
    single_peak = max(rss for _, _, rss in single["rss"])
    results["ray"] = {
        "texts": len(texts),
        "workers": args.ray_workers,
        "torch_threads_per_worker": 1,
        "single_process_s": single["seconds"],
        "ray_s": round(seconds, 2),
        "speedup": round(single["seconds"] / seconds, 3),
        "rows_written": summary.rows,
        "ids_in_order": [row["id"] for row in ray_rows] == list(range(len(texts))),
        "max_abs_diff_vs_single": diff,
        "single_process_peak_rss_mib": round(single_peak, 1),
        "actor_peak_rss_mib": [round(rss, 1) for rss in sorted(peaks.values())],
        "note": "both timed from start to written Parquet: model loading and Ray's actor "
        "start-up included, ray.init excluded",
    }


def run_classify_part(args: argparse.Namespace, results: Dict[str, Any], workdir: Path) -> None:
    sys.path.insert(0, str(env.REPO_ROOT))
    from tests.conftest import build_tiny_bert

    bert = build_tiny_bert(workdir / "tiny_bert")
    nlp = build_pipeline(str(bert), 64)
    model = workdir / "tiny_pipeline"
    nlp.to_disk(model)
    source = workdir / "corpus.csv"
    expected = write_corpus(source, args.classify_rows)
    output = workdir / "corpus_out.csv"
    print(f"[classify] {args.classify_rows} rows", flush=True)
    run = run_classify_process(
        model, source, output, ["--bucket-window", str(args.window), "--threshold", "0.5"], 1
    )
    with output.open(encoding="utf8", newline="") as handle:
        statuses = {"ok": 0, "empty": 0, "missing": 0}
        ids_in_order = True
        for i, row in enumerate(csv.DictReader(handle)):
            statuses[row["text_status"]] += 1
            ids_in_order &= row["id"] == str(i)
    rss = [value for _, _, value in run["rss"]]
    at_share = {}
    for share in (0.1, 0.25, 0.5, 0.75, 1.0):
        reached = [value for _, done, value in run["rss"] if done >= share - 1e-9]
        at_share[f"{share:.0%}"] = round(reached[0], 1) if reached else None
    after_first = [value for _, done, value in run["rss"] if done >= 0.1]
    results["classify"] = {
        "rows": args.classify_rows,
        "input_mib": round(source.stat().st_size / 2**20, 1),
        "model": "random BERT, 2 layers, hidden 32 (tests/conftest.py), max_length 64",
        "seconds": run["seconds"],
        "docs_per_s": round(args.classify_rows / run["seconds"], 1),
        "rows_written": sum(statuses.values()),
        "statuses_expected": expected,
        "statuses_written": statuses,
        "ids_in_order": ids_in_order,
        "peak_rss_mib": round(max(rss), 1),
        "rss_mib_when_share_of_output_written": at_share,
        "rss_growth_from_10_percent_written_mib": round(max(after_first) - after_first[0], 1),
        "rss_samples": len(rss),
        "rss_over_time_s_share_mib": [
            [t, round(done, 3), round(v, 1)] for t, done, v in run["rss"][:: max(1, len(rss) // 40)]
        ],
    }


# ----------------------------------------------------------------------------- report


def markdown(results: Dict[str, Any]) -> str:
    """The tables ``benchmarks/README.md`` cites, from the results (the JSON holds them all)."""
    ctx = results["context"]
    settings = ctx["settings"]
    lines = [
        *env.report_header(
            "inference",
            ctx,
            f"- backbone: {settings['backbone']}, max length {settings['max_length']}, "
            f"batch {settings['batch_size']}, bucket_window {settings['window']}",
        ),
        f"- load average at start: {ctx['load_start']}, at end: {ctx['load_end']}",
        "",
    ]
    for dataset, part in results.get("pipe", {}).items():
        rows = [
            [
                name,
                f"{row['docs_per_s_mean']} ± {row['docs_per_s_std']}",
                ", ".join(f"{s:.1f}" for s in row["seconds"]),
                row["docs_per_cpu_s"],
                row["cpu_s_per_wall_s"],
                row["padding_share"],
                f"{row['max_abs_diff_vs_first']:.1e}",
            ]
            for name, row in part["configs"].items()
        ]
        header = ["configuration", "docs/s (mean ± std)", "runs (s)", "docs per CPU s"]
        header += ["CPU s per wall s", "padding share", "max abs diff"]
        over = part["overheads"]
        shares = ", ".join(f"{k}: {v}" for k, v in part["padding_share_by_window"].items())
        lines += [
            f"## nlp.pipe on {part['texts']} {dataset}",
            "",
            *env.table(header, rows),
            f"- bucketed / unbucketed: **{part['bucketed_over_unbucketed']}**; bucketed / "
            f"transformers: **{part['bucketed_over_transformers']}**; unbucketed / "
            f"transformers: {part['unbucketed_over_transformers']}",
            f"- extra tokenisation for the sort: {over['length_tokenisation_s']} s per "
            f"{over['texts']} texts = {100 * over['length_tokenisation_share_of_forward']:.2f}% "
            f"of their forward passes; inference_mode / no_grad forward speed-up: "
            f"{over['inference_mode_speedup']}",
            f"- padding share of the batches by bucket_window (0 = off): {shares}",
            "",
        ]
    if "ray" in results:
        ray_part = results["ray"]
        lines += [
            f"## Ray Data: {ray_part['workers']} CPU actors vs one process, "
            f"{ray_part['texts']} tweets",
            "",
            "| | wall (s) | peak RSS (MiB) |",
            "| --- | --- | --- |",
            f"| classify, one process | {ray_part['single_process_s']} | "
            f"{ray_part['single_process_peak_rss_mib']} |",
            f"| classify_with_ray | {ray_part['ray_s']} | per actor: "
            f"{', '.join(map(str, ray_part['actor_peak_rss_mib']))} |",
            "",
            f"- speed-up: **{ray_part['speedup']}**; rows written {ray_part['rows_written']}, "
            f"ids in order: {ray_part['ids_in_order']}, max abs diff vs one process "
            f"{ray_part['max_abs_diff_vs_single']:.1e}",
            f"- {ray_part['note']}",
            "",
        ]
    if "classify" in results:
        part = results["classify"]
        lines += [
            f"## classify on a generated CSV of {part['rows']} rows ({part['input_mib']} MiB)",
            "",
            f"- model: {part['model']}",
            f"- {part['seconds']} s, {part['docs_per_s']} docs/s; rows written "
            f"{part['rows_written']} of {part['rows']}, ids in order: {part['ids_in_order']}",
            f"- statuses written {part['statuses_written']}, expected {part['statuses_expected']}",
            "- RSS (MiB) when this share of the output was written: "
            + ", ".join(
                f"{k}: {v}" for k, v in part["rss_mib_when_share_of_output_written"].items()
            ),
            f"- peak RSS **{part['peak_rss_mib']} MiB**; growth from 10% written to the end "
            f"**{part['rss_growth_from_10_percent_written_mib']} MiB** ({part['rss_samples']} "
            "samples, every 0.5 s)",
            "",
        ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    device = "gpu" if args.gpu_id >= 0 else "cpu"
    start = time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if k not in ("data_dir", "output_dir")}
    context = env.provenance(args.gpu_id, device=device, load_start=env.load_average())
    results: Dict[str, Any] = {"context": {**context, "settings": settings}}
    with tempfile.TemporaryDirectory(prefix="dallmi_inference_") as tmp:
        if "pipe" in args.parts:
            run_pipe_part(args, results)
        if "ray" in args.parts:
            run_ray_part(args, results, Path(tmp))
        if "classify" in args.parts:
            run_classify_part(args, results, Path(tmp))
    results["context"]["load_end"] = env.load_average()
    results["context"]["total_wall_s"] = round(time.perf_counter() - start, 1)
    name = f"inference_{device}"
    if set(args.parts) != set(ALL_PARTS) and not args.quick:
        name += "_" + "_".join(args.parts)
        if "pipe" in args.parts and set(args.datasets) != set(DATASETS):
            name += "_" + "_".join(args.datasets)
    if args.quick:
        name += "_quick"
    path = env.write_report(args.output_dir, name, results, markdown(results) + "\n")
    print(f"wrote {path} and {path.with_suffix('.md')} in {results['context']['total_wall_s']} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

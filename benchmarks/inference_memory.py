"""Parts ``ray`` and ``classify`` of the inference benchmark (``inference.py``): memory runs.

Why a file of its own: both parts run ``classify`` end to end in a subprocess (as the CLI
runs it) and sample resident memory from ``/proc`` while it writes: ``ray`` against
``classify_with_ray`` with single-thread CPU actors on the same tweets, ``classify`` on a
generated CSV whose RSS must stay flat and whose every row must be accounted for.
"""

import argparse
import csv
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from environment import REPO_ROOT
from inference_pipe import LABELS, build_pipeline, read_tweets

WORDS = (
    "the a of and to in is for on with that this patients were was as by be are cells study "
    "results from at or an we not have which their these it been than more two after using "
    "happy sad love hate fear joy great today people really time day night work life world"
).split()


# ------------------------------------------------------------------------ RSS sampling


def rss_mib(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


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
            rss = {pid: rss_mib(pid) for pid in self.find()}
            stamp = round(time.perf_counter() - self.start_time, 2)
            rss = {p: r for p, r in rss.items() if r}
            self.samples.append({"t": stamp, "rss_mib": rss, "progress": self.progress()})
            self.stopped.wait(self.interval)

    def stop(self) -> List[Dict[str, Any]]:
        self.stopped.set()
        self.join()
        return self.samples


def peak_per_process(samples: List[Dict[str, Any]]) -> Dict[int, float]:
    peaks: Dict[int, float] = {}
    for sample in samples:
        for pid, rss in sample["rss_mib"].items():
            peaks[pid] = max(peaks.get(pid, 0.0), rss)
    return peaks


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


# ------------------------------------------------------------------------ part 2: ray


def write_jsonl(path: Path, texts: List[str]) -> None:
    with path.open("w", encoding="utf8") as handle:
        for i, text in enumerate(texts):
            handle.write(json.dumps({"id": i, "text": text}) + "\n")


def run_ray_part(args: argparse.Namespace, results: Dict[str, Any], workdir: Path) -> None:
    import pyarrow.parquet
    import ray

    from spacy_dallmi.ray import classify_with_ray

    nlp = build_pipeline(args.backbone, args.max_length)
    model = workdir / "minilm_pipeline"
    nlp.to_disk(model)
    texts = read_tweets(args.data_dir, args.ray_texts)
    source = workdir / "tweets.jsonl"
    write_jsonl(source, texts)
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
        peaks = peak_per_process(sampler.stop())
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


# ------------------------------------------------------------------- part 3: classify


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


def run_classify_part(args: argparse.Namespace, results: Dict[str, Any], workdir: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
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
        reader = csv.DictReader(handle)
        statuses = {"ok": 0, "empty": 0, "missing": 0}
        ids_in_order = True
        for i, row in enumerate(reader):
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

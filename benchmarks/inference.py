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

Usage::

    python benchmarks/inference.py                       # all parts, CPU, one torch thread
    python benchmarks/inference.py --parts pipe --datasets tweets
    python benchmarks/inference.py --quick               # < 1 minute smoke run
    python benchmarks/inference.py --parts pipe --gpu-id 0 --batch-size 256

Writes ``benchmarks/results/inference_<device>[_<parts>[_<datasets>]][_quick].{json,md}``.

This file holds the options and the run; the parts are in ``inference_pipe.py`` (``pipe``)
and ``inference_memory.py`` (``ray``, ``classify``), the Markdown in ``inference_report.py``.
"""

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import spacy
import torch
from environment import REPO_ROOT, git_provenance, load_average, machine_info, package_versions
from inference_memory import run_classify_part, run_ray_part
from inference_pipe import run_pipe_part
from inference_report import markdown

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "datasets"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "benchmarks" / "results"
ALL_PARTS = ("pipe", "ray", "classify")
DATASETS = ("tweets", "abstracts")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument(
        "--parts", nargs="+", choices=ALL_PARTS, help="default: all (--quick: pipe, classify)"
    )
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--window", type=int, default=1024, help="bucket_window compared")
    parser.add_argument("--sweep", type=int, nargs="*", default=[256], help="more windows, tweets")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray-texts", type=int, default=4000)
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--classify-rows", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (this process)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--quick", action="store_true", help="smoke run, < 1 minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.texts, args.repeats, args.sweep, args.batch_size = 64, 2, [], 16
        args.ray_texts, args.classify_rows, args.window = 256, 2000, 256
        args.datasets = ["tweets"]
        args.parts = args.parts or ["pipe", "classify"]
    args.parts = args.parts or list(ALL_PARTS)
    args.data_dir = args.data_dir.expanduser().resolve()
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    device = "gpu" if args.gpu_id >= 0 else "cpu"
    start = time.perf_counter()
    results: Dict[str, Any] = {
        "context": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device,
            "machine": machine_info(args.gpu_id),
            "versions": package_versions(),
            "git": git_provenance(),
            "load_start": load_average(),
            "settings": {
                key: value
                for key, value in vars(args).items()
                if key not in ("data_dir", "output_dir")
            },
        }
    }
    with tempfile.TemporaryDirectory(prefix="dallmi_inference_") as tmp:
        if "pipe" in args.parts:
            run_pipe_part(args, results)
        if "ray" in args.parts:
            run_ray_part(args, results, Path(tmp))
        if "classify" in args.parts:
            run_classify_part(args, results, Path(tmp))
    results["context"]["load_end"] = load_average()
    results["context"]["total_wall_s"] = round(time.perf_counter() - start, 1)
    name = f"inference_{device}"
    if set(args.parts) != set(ALL_PARTS) and not args.quick:
        name += "_" + "_".join(args.parts)
        if "pipe" in args.parts and set(args.datasets) != set(DATASETS):
            name += "_" + "_".join(args.datasets)
    if args.quick:
        name += "_quick"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.output_dir / f"{name}.json", args.output_dir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    md_path.write_text(markdown(results) + "\n", encoding="utf8")
    print(f"wrote {json_path} and {md_path} in {results['context']['total_wall_s']} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

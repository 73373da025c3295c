"""Timing harness of the speed benchmark: settings, device handling and timed calls.

Every figure of ``speed.py`` is a wall-clock and CPU interval taken here, with the GPU
synchronised before and after, so a number always covers the work it started.
"""

import datetime
import gc
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import spacy
import torch
from environment import (
    git_provenance,
    machine_info,
    package_versions,
)
from thinc.api import set_gpu_allocator

ALL_PARTS = ("training", "inference", "scaling", "memory")
MEMORY_PHASES = ("train-bce", "train-dallmi-mixup", "infer-spacy", "infer-transformers")
# spaCy's default [training.optimizer], with the paper's learning rate.
LEARN_RATE = 5e-5
DROPOUT = 0.1


@dataclass
class Settings:
    """Everything a run (or one of its memory subprocesses) needs to know."""

    data_dir: Path
    output_dir: Path
    gpu_id: int
    backbone: str
    batch_size: int
    max_length: int
    warmup: int
    steps: int
    scaling_warmup: int
    scaling_steps: int
    scaling_labels: List[int]
    scaling_batch_sizes: List[int]
    scaling_batch_labels: int
    inference_texts: int
    inference_reps: int
    memory_steps: int
    quick: bool
    parts: List[str]
    threads: Optional[int] = None

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_id >= 0 else "cpu"

    @property
    def use_gpu(self) -> bool:
        return self.gpu_id >= 0


def subprocess_args(settings: Settings) -> List[str]:
    """The command-line options a memory subprocess needs to rebuild the same setup."""
    return [
        "--data-dir",
        str(settings.data_dir),
        "--gpu-id",
        str(settings.gpu_id),
        "--backbone",
        settings.backbone,
        "--batch-size",
        str(settings.batch_size),
        "--max-length",
        str(settings.max_length),
        "--inference-texts",
        str(settings.inference_texts),
        "--memory-steps",
        str(settings.memory_steps),
        *(["--threads", str(settings.threads)] if settings.threads else []),
    ]


def build_context(settings: Settings) -> Dict[str, Any]:
    return {
        "date": now(),
        "device": settings.device,
        "machine": machine_info(settings.gpu_id if settings.use_gpu else None),
        "versions": package_versions(),
        # the name only: the package's folder is a machine path, and versions records it
        "backbone": {"name": settings.backbone},
        "git": git_provenance(),
        "settings": {
            "warmup": settings.warmup,
            "steps": settings.steps,
            "scaling_warmup": settings.scaling_warmup,
            "scaling_steps": settings.scaling_steps,
            "inference_texts": settings.inference_texts,
            "inference_reps": settings.inference_reps,
            "memory_steps": settings.memory_steps,
            "quick": settings.quick,
            "optimizer": f"thinc Adam(learn_rate={LEARN_RATE}, L2=0.01, grad_clip=1.0)",
            "dropout": DROPOUT,
        },
    }


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


def torch_device(settings: Settings) -> torch.device:
    return torch.device(f"cuda:{settings.gpu_id}" if settings.use_gpu else "cpu")


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


def timed(settings: Settings, fn: Callable[[], Any]) -> Tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()``; CPU/wall near the thread count
    means the step had the cores to itself, much lower means it was competing."""
    sync(settings)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fn()
    sync(settings)
    return time.perf_counter() - wall0, time.process_time() - cpu0


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


def rotated(items: Sequence[Any], shift: int) -> List[Any]:
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


def ratio(numerator: float, denominator: float) -> Optional[float]:
    return round(numerator / denominator, 3) if denominator > 0 else None

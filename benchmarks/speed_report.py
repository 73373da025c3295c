"""Results of the speed benchmark: the JSON file and its Markdown rendering.

Both are rewritten after every part, so a run that is stopped half-way still leaves what it
measured.
"""

import json
import statistics
from typing import Any, Dict, List, Optional

from environment import report_header
from speed_harness import (
    ALL_PARTS,
    Settings,
    now,
)

TRAIN_CONFIGS = ("bce", "dallmi", "dallmi+mixup")
# The targets the package promises (see the brief in benchmarks/README.md).
TARGET_MIXUP_OVER_BCE = 1.3
TARGET_GPU_MIXUP_PART_SPEEDUP = 5.0
TARGET_INFERENCE_RATIO = 0.9


class Results:
    """Collects measurements and rewrites the JSON and Markdown files after every part,
    so a run that is stopped half-way still leaves what it measured."""

    def __init__(self, settings: Settings, context: Dict[str, Any]) -> None:
        self.settings = settings
        self.context = context
        self.measurements: List[Dict[str, Any]] = []
        self.summary: Dict[str, Any] = {}
        stem = f"speed_{settings.device}"
        if settings.threads:
            stem += f"_threads{settings.threads}"
        if settings.quick:
            stem += "_quick"
        if settings.parts != list(ALL_PARTS):
            stem += "_partial"
        self.json_path = settings.output_dir / f"{stem}.json"
        self.md_path = settings.output_dir / f"{stem}.md"

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
                "machine": self.context["machine"],
                "versions": self.context["versions"],
                "backbone": self.context["backbone"],
                "git": self.context["git"],
            }
        )

    def write(self) -> None:
        self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "context": self.context,
            "summary": self.summary,
            "measurements": self.measurements,
        }
        self.json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        self.md_path.write_text(render_markdown(payload), encoding="utf-8")


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
    machine, git = ctx["machine"], ctx["git"]
    lines = [
        *report_header("speed", ctx),
        f"- git: {git['commit']} (dirty: {git['dirty']}, outside benchmarks/: "
        f"{git['dirty_outside_benchmarks']})",
        f"- backbone: {ctx['backbone']['name']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in ctx["versions"].items()),
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
        lines += [
            "## 1. Training throughput",
            "",
            f"Batch {train['batch']}, max length {train['max_length']}, "
            f"{train['labels']} labels, {train['timed_rounds']} timed round-robin rounds "
            f"after {train['warmup_rounds']} warm-up rounds.",
            "",
            "| configuration | median step (s) | min | max | docs/s | CPU s per wall s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for m in by_part.get("training", []):
            lines.append(
                f"| {m['name']} | {fmt(m['step']['median_s'])} | {fmt(m['step']['min_s'])} | "
                f"{fmt(m['step']['max_s'])} | {fmt(m.get('docs_per_s'), 1)} | "
                f"{fmt(m.get('cpu_per_wall'), 2)} |"
            )
        lines += [
            "",
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
        lines += [
            "## 3. Inference throughput",
            "",
            f"{inf['texts']} target texts, batch {inf['batch']}, truncation to "
            f"{inf['max_length']} word pieces, {inf['reps']} interleaved repetitions.",
            "",
            "| system | median time (s) | docs/s |",
            "| --- | --- | --- |",
        ]
        for m in by_part.get("inference", []):
            lines.append(
                f"| {m['name']} | {fmt(m['run']['median_s'])} | {fmt(m['docs_per_s'], 1)} |"
            )
        lines += [
            "",
            f"- nlp.pipe / transformers throughput: **{fmt(inf['ratio'])}**; target >= "
            f"{TARGET_INFERENCE_RATIO}: {fmt(inf['target_met'])}",
            f"- max |probability difference| between the two: {inf['max_abs_prob_diff']:.2e}",
            "",
        ]
    mem = by_part.get("memory")
    if mem:
        lines += [
            "## 4. Peak memory (each in its own process)",
            "",
            "| phase | RSS after setup (MiB) | peak RSS (MiB) | peak - setup (MiB) | "
            "GPU max allocated (MiB) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for m in mem:
            lines.append(
                f"| {m['name']} | {mib(m['rss_after_setup_bytes'])} | "
                f"{mib(m['peak_rss_bytes'])} | "
                f"{mib(m['peak_rss_bytes'] - m['rss_after_setup_bytes'])} | "
                f"{mib(m.get('gpu_max_allocated_bytes'))} |"
            )
        lines.append("")
    scale = by_part.get("scaling")
    if scale:
        lines += [
            "## 5. How the dallmi+MixUp step grows",
            "",
            "Synthetic label matrices (~5% positives, >= 1 per label per batch) on the same "
            "texts; rows = documents + mixed pairs in the one backbone pass.",
            "",
            "| labels | batch | rows | median step (s) | docs/s | s per row |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for m in scale:
            shapes = m["shapes"]
            lines.append(
                f"| {shapes['labels']} | {shapes['batch']} | {m['backbone_rows']} | "
                f"{fmt(m['step']['median_s'])} | {fmt(m['docs_per_s'], 1)} | "
                f"{fmt(m['s_per_row'], 4)} |"
            )
        lines.append("")
    return "\n".join(lines)

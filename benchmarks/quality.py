"""Quality benchmark: the paper's Table 2 protocol on one dataset, with caps and wall time.

Runs the project's ``table`` workflow (every seed x ratio: the source model without adaptation,
BCE fine-tuning on the partial labels, BCE fine-tuning on all labels, DALLMi) in a work folder
outside the repository, times it, and writes
``benchmarks/results/quality_<dataset>.{json,md}`` plus the project's full report and
figures under ``benchmarks/results/quality_<dataset>/``.

The JSON holds, per ratio and method, ``cats_macro_ap`` and ``cats_macro_ap_rounded`` (mean,
sample std and the per-seed values), the recovery
``(DALLMi - partial FT) / (full FT - partial FT)`` on both, the caps (docs, epochs, length,
batch), the wall time and what it was measured on. CPU time is short, so the caps are far
below the paper's; they are part of every result.

    python benchmarks/quality.py --dataset emotions --max-docs 400 --seeds 0,1
    python benchmarks/quality.py --dataset pubmed --max-docs 200 --max-length 128

``--no-run`` summarises a work folder whose table was run before (e.g. by
``python -m spacy_dallmi table``); the wall time is then whatever ``--wall-seconds`` says,
and the results say it was measured outside this script.
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
from environment import REPO_ROOT, git_info, load_average, machine_info, package_versions

from spacy_dallmi.experiments.evaluate import METHODS
from spacy_dallmi.experiments.report import build_report
from spacy_dallmi.experiments.runs import load_runs, metric_values, recovery

RESULTS = REPO_ROOT / "benchmarks" / "results"
METRICS = ("cats_macro_ap", "cats_macro_ap_rounded")


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="emotions", choices=("emotions", "pubmed"))
    parser.add_argument("--work", type=Path, help="project copy; default /tmp/dallmi_quality/X")
    parser.add_argument("--ratios", default="0.5,0.7,0.9")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--max-docs", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--source-epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--learn-rate", type=float, default=5e-5, help="adaptation and FT")
    parser.add_argument("--mixup-lambda", type=float, default=1.0)
    parser.add_argument("--tag", default="", help="suffix of the results files and work folder")
    parser.add_argument("--data-dir", default=str(REPO_ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--no-run", action="store_true", help="only summarise --work")
    parser.add_argument("--wall-seconds", type=float, help="with --no-run: the measured time")
    parser.add_argument("--note", default="", help="a free-text note stored with the results")
    return parser.parse_args(argv)


def prepare_work_folder(work: Path) -> None:
    """Copy the project file and configs; weasel re-runs only steps whose inputs changed."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "project.yml", work / "project.yml")
    shutil.copytree(REPO_ROOT / "configs", work / "configs", dirs_exist_ok=True)


def run_table(args: argparse.Namespace, work: Path) -> float:
    command = [
        sys.executable, "-m", "spacy_dallmi", "table", str(work),
        "--dataset", args.dataset, "--ratios", args.ratios, "--seeds", args.seeds,
        "--max-docs", str(args.max_docs), "--epochs", str(args.epochs),
        "--source-epochs", str(args.source_epochs), "--batch-size", str(args.batch_size),
        "--max-length", str(args.max_length), "--data-dir", args.data_dir,
        "--var", f"learn_rate={args.learn_rate}", "--var", f"mixup_lambda={args.mixup_lambda}",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def summarise_cell(values: List[float]) -> Dict[str, Any]:
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "values": values,
    }


def metrics_paths(work: Path, dataset: str, seeds: List[str], max_docs: int) -> List[Path]:
    """This configuration's metrics files (folders ``s<seed>_n<max_docs>_*``): a work folder
    may also hold runs with other caps."""
    folder = work / "metrics" / dataset
    paths = [path for seed in seeds for path in folder.glob(f"s{seed}_n{max_docs}_*/*.json")]
    return sorted(paths)


def summarise(paths: List[Path], ratios: List[float]) -> Dict[str, Any]:
    """Per ratio: every method's metrics over seeds and DALLMi's recovery on each metric."""
    runs = load_runs(paths)
    table: Dict[str, Any] = {}
    for ratio in ratios:
        cells: Dict[str, Any] = {"methods": {}, "recovery": {}}
        for method in METHODS:
            cells["methods"][method] = {
                metric: summarise_cell(metric_values(runs, method, ratio, metric))
                for metric in METRICS
            }
        for metric in METRICS:
            means = [
                cells["methods"][m][metric]["mean"] for m in ("dallmi", "ft_partial", "ft_full")
            ]
            cells["recovery"][metric] = None if None in means else recovery(*means)
        table[f"{ratio:g}"] = cells
    return table


def percent(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def cell_text(cell: Dict[str, Any]) -> str:
    if cell["mean"] is None:
        return "–"
    spread = "" if cell["std"] is None else f" ± {100 * cell['std']:.1f}"
    return f"{100 * cell['mean']:.1f}{spread} (n={cell['n']})"


def render_markdown(payload: Dict[str, Any]) -> str:
    caps = payload["caps"]
    wall = payload["wall_seconds"]
    lines = [
        f"# Quality: the paper's Table 2 protocol on `{payload['dataset']}`",
        "",
        f"- date: {payload['date']}; git {payload['git']['commit']}",
        f"- machine: {payload['machine']['cpu_model']}, {payload['machine']['usable_cpus']} "
        f"usable CPUs, GPU: {payload['machine']['gpu'] or 'none'}",
        f"- caps: {caps['max_docs']} docs per split, {caps['epochs']} epochs "
        f"(source {caps['source_epochs']}), batch {caps['batch_size']}, max length "
        f"{caps['max_length']} word pieces, backbone all-MiniLM-L6-v2, model = last epoch",
        f"- learning rate (DALLMi and fine-tuning): {payload['learn_rate']:g}; MixUp weight "
        f"lambda: {payload['mixup_lambda']:g} (the paper's: 5e-05 and 1)",
        f"- seeds: {payload['seeds']}; wall time: "
        + ("not measured" if wall is None else f"{wall / 60:.1f} min")
        + ("" if payload["wall_measured_here"] else " (measured outside this script)"),
    ]
    if payload["note"]:
        lines.append(f"- note: {payload['note']}")
    lines += [
        "",
        "Scores in percent on the fully labelled target test split, mean ± sample std over "
        "seeds. Recovery = (DALLMi − partial FT) / (full FT − partial FT) on the means; "
        "negative means DALLMi is below partial fine-tuning.",
        "",
    ]
    ratios = list(payload["table"])
    for metric in METRICS:
        lines += [f"## `{metric}`", ""]
        lines.append("| method | " + " | ".join(f"{float(r) * 100:g}% removed" for r in ratios))
        lines[-1] += " |"
        lines.append("|" + " --- |" * (len(ratios) + 1))
        for method in METHODS:
            row = [cell_text(payload["table"][r]["methods"][method][metric]) for r in ratios]
            lines.append(f"| `{method}` | " + " | ".join(row) + " |")
        row = [percent(payload["table"][r]["recovery"][metric]) for r in ratios]
        lines += ["| recovery (%) | " + " | ".join(row) + " |", ""]
    lines.append(f"Full report with figures: `quality_{payload['name']}/report.md`.")
    return "\n".join(lines) + "\n"


def write_report(paths: List[Path], dataset: str, name: str) -> None:
    """The project's full report (all metrics, settings, figures) from this configuration's
    files only, so a work folder holding runs with other caps cannot leak into it."""
    target = RESULTS / f"quality_{name}"
    if target.exists():
        shutil.rmtree(target)
    build_report(paths, target / "report.md", target / f"{dataset}_figures", title=name)


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    name = f"{args.dataset}{args.tag}"
    work = args.work or Path("/tmp/dallmi_quality") / name
    load_start = load_average()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if args.no_run:
        wall = args.wall_seconds
    else:
        prepare_work_folder(work)
        wall = run_table(args, work)
    ratios = [float(value) for value in args.ratios.split(",")]
    paths = metrics_paths(work, args.dataset, args.seeds.split(","), args.max_docs)
    payload = {
        "dataset": args.dataset,
        "name": name,
        "date": started,
        "seeds": args.seeds,
        "caps": {
            "max_docs": args.max_docs,
            "epochs": args.epochs,
            "source_epochs": args.source_epochs,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
        },
        "learn_rate": args.learn_rate,
        "mixup_lambda": args.mixup_lambda,
        "wall_seconds": wall,
        "wall_measured_here": not args.no_run,
        "note": args.note,
        "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "machine": machine_info(),
        "versions": package_versions(),
        "git": git_info(),
        "table": summarise(paths, ratios),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    srsly.write_json(RESULTS / f"quality_{name}.json", payload)
    (RESULTS / f"quality_{name}.md").write_text(render_markdown(payload), encoding="utf8")
    write_report(paths, args.dataset, name)
    print(render_markdown(payload))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Wall time of a newcomer's ``spacy project run adapt``, and where its source model stopped.

Since issue 26 the source model trains until its dev macro AP stops improving, which may cost
time: this runs ``adapt`` in a clean checkout of the commit to time (``--project``), its code
first on the path, and records the wall time, the load and the source model's dev curve.

    git worktree add --detach ../before fdef240   # beside ../shared, for the studies' data
    python -m venv before-venv && before-venv/bin/pip install torch==2.13.0 -e ../before
    python benchmarks/adapt_time.py --project ../before --python before-venv/bin/python \\
        --label toy_before --var dataset=custom --var source_file=assets/support_source.csv ...
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import srsly
from environment import REPO_ROOT, load_average, machine_info, now, package_versions


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--project", type=Path, required=True, help="a checkout to run in")
    add("--label", required=True)
    add("--var", action="append", default=[], help="KEY=VALUE, as --vars.KEY")
    add("--output", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "adapt_time.json")
    # the checkout's entry points differ between commits: run it in its own environment
    add("--python", default=sys.executable, help="an interpreter with the checkout installed")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    if (project / "training").exists():
        raise SystemExit(f"{project} has a training/ folder: time a clean checkout.")
    variables = dict(item.split("=", 1) for item in args.var)
    command = [args.python, "-m", "spacy", "project", "run", "adapt", str(project)]
    command += [f"--vars.{key}={value}" for key, value in variables.items()]
    env = {**os.environ, "PYTHONPATH": str(project)}
    load_before, start = load_average(), time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"adapt failed:\n{(done.stdout + done.stderr)[-3000:]}")
    sources = sorted(project.glob("training/**/source/training.json"))
    git = ["git", "-C", str(project), "rev-parse", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True)
    record = {
        "label": args.label,
        "vars": variables,
        "project_commit": commit.stdout.strip(),
        "command": " ".join(["spacy project run adapt .", *command[7:]]),
        "wall_seconds": round(wall, 1),
        "source_training": srsly.read_json(sources[0]) if sources else None,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "date": now(),
        "machine": machine_info(),
        "versions": package_versions(),
    }
    records = srsly.read_json(args.output) if args.output.exists() else {}
    records[args.label] = record
    srsly.write_json(args.output, records)
    stop = record["source_training"]
    where = "no dev curve" if stop is None else f"source stopped at epoch {stop['stop_epoch']}"
    print(f"[adapt_time] {args.label}: {wall:.0f} s; {where}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

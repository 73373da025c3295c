"""Smoke tests of the benchmarks. ``paired.py --quick`` with a tiny random BERT, every
method, then a re-run that must skip every finished run, then the summary; and the quick
modes of ``speed.py`` and ``inference.py``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spacy_dallmi.experiments.methods import BENCHMARK_METHODS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(not (DATA / "semeval2018_ec").exists(), reason="needs the shared datasets")
def test_paired_quick_runs_resumes_and_summarises(tiny_bert, tmp_path):
    results = tmp_path / "paired_emotions"
    args = ("--quick", "--backbone", tiny_bert, "--results", str(results))
    args += ("--work", str(tmp_path / "work"), "--seeds", "0", "--data-dir", str(DATA))
    first = _run("paired.py", *args)
    assert "training" in first
    runs = {path.stem: json.loads(path.read_text()) for path in results.glob("*.json")}
    assert {run["method"] for run in runs.values()} == set(BENCHMARK_METHODS)
    for run in runs.values():
        assert {"protocol", "epochs", "last", "selected", "wall_seconds", "git"} <= set(run)
        assert str(tmp_path) not in json.dumps(run), "a machine path leaked into a result"
        source = run["source_training"]  # the seed's source model, trained to its dev curve
        assert {k: source["settings"][k] for k in ("source_epochs", "source_patience")} == {
            "source_epochs": 2,
            "source_patience": 2,
        }
        assert {"max_length", "batch_size", "backbone"} < set(source["settings"])
        assert [row["epoch"] for row in source["curve"]] == [0, 1, 2]
        assert source["stop_epoch"] == 2 and source["reason"] in ("converged", "upper_bound")
    trained = runs["s0_r70_dallmi"]
    assert [r["epoch"] for r in trained["epochs"]] == [0, 1, 2]
    assert trained["selected"]["r70"]["pu_score"]["epoch"] in (0, 1, 2)
    assert set(runs["s0_ft_full"]["selected"]) == {"r50", "r70", "r90"}
    # partial-label runs also score blends of the source and the last epoch (WiSE-FT), and
    # the shipped candidate is the best validation score among epochs and blends
    assert [blend["alpha"] for blend in trained["blends"]] == [0.25, 0.5, 0.75]
    assert "blends" not in runs["s0_ft_full"] or not runs["s0_ft_full"]["blends"]
    for criterion in ("pu_score", "partial_ap"):
        shipped = trained["shipped"]["r70"][criterion]
        candidates = [r["val"]["r70"][criterion] for r in trained["epochs"] + trained["blends"]]
        assert shipped["val"] == max(candidates)
        assert shipped["val"] >= trained["selected"]["r70"][criterion]["val"]
    # the confident selection ships, as the product does, the best PU score among the source,
    # the blends and the best epoch (spaCy's model-best) of those that beat the source on 90%
    # of the resamples; the guarded one the best partial AP among those whose PU score is not
    # below the source's
    source, *epochs = trained["epochs"]
    assert all(0.0 <= c["val"]["r70"]["pu_win"] <= 1.0 for c in epochs + trained["blends"])
    for name, criterion, passes in (
        ("pu_score_c90", "pu_score", lambda c: c["val"]["r70"]["pu_win"] >= 0.9),
        (
            "partial_ap_guarded",
            "partial_ap",
            lambda c: c["val"]["r70"]["pu_score"] >= source["val"]["r70"]["pu_score"],
        ),
    ):
        best = max(epochs, key=lambda r: (r["val"]["r70"][criterion], r["epoch"]))
        allowed = [source] + [c for c in [best, *trained["blends"]] if passes(c)]
        shipped = trained["shipped"]["r70"][name]
        assert shipped["val"] == max(c["val"]["r70"][criterion] for c in allowed)
    # the weight averages (SWA) of epochs 1..E: with 2 epochs only the one from epoch 1
    assert [a["from_epoch"] for a in runs["s0_r70_dallmi_swa"]["averages"]] == [1]
    assert "averages" not in trained
    for record in trained["epochs"]:
        assert set(record["test"]["macro_f_thresholds"]) == {"r50", "r70", "r90"}
        assert 0.0 <= record["test"]["macro_f_full_thresholds"] <= 1.0

    second = _run("paired.py", *args)
    assert "training" not in second and second.count("skipped") == len(BENCHMARK_METHODS) - 1

    _run("summarize.py", "--results", str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {record["method"] for record in summary} == set(BENCHMARK_METHODS)
    report = (tmp_path / "paired_emotions.md").read_text()
    assert "source models: dev macro AP" in report and "stopped at epoch s0: 2" in report
    assert all(record["source_dev_macro_ap"] is not None for record in summary)
    settings = report.split("## Settings of each method")[1]
    for method in BENCHMARK_METHODS:
        assert f"| `{method}` |" in settings
    assert "temperature 20" in settings  # AAD's row states its settings
    assert "mixup_lambda 0," in settings and "label_smoothing 0.1" in settings


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "pubmed").exists(), reason="needs the shared datasets")
def test_speed_and_inference_quick_runs_write_their_reports(tiny_bert, tmp_path):
    """``speed.py --quick`` and ``inference.py --quick`` (as benchmarks/README.md shows them)
    run every part, the memory subprocesses too, and write JSON and Markdown."""
    common = ("--quick", "--backbone", tiny_bert, "--data-dir", str(DATA))
    _run("speed.py", *common, "--output-dir", str(tmp_path), "--threads", "1")
    speed = json.loads((tmp_path / "speed_cpu_threads1_quick.json").read_text())
    parts = [m["part"] for m in speed["measurements"]]
    assert parts == ["training"] * 3 + ["memory"] * 3 and set(speed["summary"]) == {"training"}
    assert speed["context"]["git"]["commit"] and str(tmp_path) not in json.dumps(speed)
    report = (tmp_path / "speed_cpu_threads1_quick.md").read_text()
    assert report.startswith("# spacy_dallmi speed benchmark (cpu)") and "## 2." in report
    _run("inference.py", *common, "--output-dir", str(tmp_path))
    inference = json.loads((tmp_path / "inference_cpu_quick.json").read_text())
    assert set(inference) == {"context", "pipe", "classify"}
    configs = inference["pipe"]["tweets"]["configs"].values()
    assert all(config["max_abs_diff_vs_first"] < 1e-5 for config in configs)
    assert inference["classify"]["statuses_written"] == inference["classify"]["statuses_expected"]
    assert (
        (tmp_path / "inference_cpu_quick.md")
        .read_text()
        .startswith("# spacy_dallmi inference benchmark (cpu)")
    )

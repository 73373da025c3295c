"""The spaCy project workflows, run for real with `weasel run` on a few dozen docs."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import srsly
from weasel.util import load_project_config

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "datasets"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA_DIR.exists(), reason=f"the shared datasets are not at {DATA_DIR}"),
]


def declared_outputs(project_dir: Path, workflow: str, overrides: dict) -> list:
    config = load_project_config(project_dir, overrides=overrides)
    commands = {command["name"]: command for command in config["commands"]}
    paths = []
    for name in config["workflows"][workflow]:
        paths.extend(commands[name].get("outputs", []))
    return [project_dir / path for path in paths]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "project.yml", folder / "project.yml")
    shutil.copytree(REPO / "configs", folder / "configs")
    return folder


@pytest.mark.parametrize("dataset,batch_size", [("emotions", 12), ("pubmed", 16)])
def test_adapt_and_baselines_workflows(project, tiny_bert, dataset, batch_size):
    overrides = {
        "dataset": dataset,
        "data_dir": str(DATA_DIR),
        "backbone": tiny_bert,
        "max_docs": 30,
        "epochs": 1,
        "source_epochs": 1,
        "batch_size": batch_size,
        "max_length": 32,
        # a string: weasel reads a bare 0.7 through srsly's JSON parser as 0.7000000000000001
        "ratio": "0.7",
    }
    flags = [f"--vars.{name}={srsly.json_dumps(value)}" for name, value in overrides.items()]
    for workflow in ("adapt", "baselines"):
        subprocess.run(
            [sys.executable, "-m", "weasel", "run", workflow, str(project), *flags],
            check=True,
        )
        vars_ = {f"vars.{name}": value for name, value in overrides.items()}
        missing = [p for p in declared_outputs(project, workflow, vars_) if not p.exists()]
        assert not missing, missing

    run = "s0_n30_per_sample_0.7"
    metrics_dir = project / "metrics" / dataset / run
    methods = {path.stem: srsly.read_json(path) for path in metrics_dir.glob("*.json")}
    assert set(methods) == {"none", "dallmi", "ft_partial", "ft_full"}
    for method, result in methods.items():
        assert result["method"] == method
        assert result["settings"]["dataset"] == dataset
        assert result["settings"]["ratio"] == pytest.approx(0.7)
        metrics = result["metrics"]
        for key in ("cats_macro_ap", "cats_micro_ap", "cats_macro_auc", "cats_macro_ap_rounded"):
            assert 0.0 <= metrics[key] <= 1.0, (method, key, metrics[key])
        assert all(0.0 <= ap <= 1.0 for ap in metrics["cats_ap_per_type"].values())
    for method in ("dallmi", "ft_partial", "ft_full"):
        epochs = [record["epoch"] for record in methods[method]["epochs"]]
        assert epochs[0] == 0
    report = (project / "reports" / f"{dataset}.md").read_text(encoding="utf8")
    assert "dallmi" in report.lower() and ".png" in report

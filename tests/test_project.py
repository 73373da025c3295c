"""The spaCy project's workflows, run for real with `spacy project run` on a few dozen docs and
a tiny random BERT: your own CSV files (with and without a target test file) and the built-in
studies."""

import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
import srsly
from spacy.tokens import DocBin

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "datasets"
LABELS = ("joy", "anger", "fear")
CUES = {"joy": ["happy", "smile", "glad"], "anger": ["rage", "mad", "hate"], "fear": ["scared"]}
FILLER = ["the", "day", "people", "thing", "time", "today", "really", "very", "just", "like"]
TINY = {"epochs": 1}
TINY_OPTIONS = "source_epochs=1 batch_size=8 max_length=32 backbone_key=tiny"

pytestmark = pytest.mark.slow


def write_domain(path: Path, n: int, seed: int, keep: float = 1.0) -> Path:
    """A CSV with a `labels` column; ``keep`` < 1 leaves each positive out with that chance,
    as a partially labelled target comes."""
    rng = random.Random(seed)
    lines = ["text,labels"]
    for i in range(n):
        present = [label for label in LABELS if rng.random() < 0.4] or [LABELS[i % 3]]
        words = [rng.choice(FILLER) for _ in range(4)] + [rng.choice(CUES[x]) for x in present]
        known = [label for label in present if rng.random() < keep] if i >= 3 else present
        lines.append(f"{' '.join(words)},{'|'.join(known) or '[]'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "project.yml", folder / "project.yml")
    shutil.copytree(REPO / "configs", folder / "configs")
    write_domain(folder / "source.csv", 40, 0)
    write_domain(folder / "target.csv", 30, 1, keep=0.6)
    write_domain(folder / "target_test.csv", 16, 2)
    return folder


def project_run(project: Path, name: str, variables: Dict[str, object], *flags: str):
    args = [f"--vars.{key}={srsly.json_dumps(value)}" for key, value in variables.items()]
    command = [sys.executable, "-m", "spacy", "project", "run", name, str(project), *flags, *args]
    done = subprocess.run(command, capture_output=True, text=True)
    done.text = " ".join((done.stdout + done.stderr).split())
    return done


def custom_vars(tiny_bert: str, **extra: object) -> Dict[str, object]:
    base = {"dataset": "custom", "source_file": "source.csv", "target_file": "target.csv"}
    base.update(text_column="text", labels_column="labels", backbone=tiny_bert, **TINY)
    base["options"] = TINY_OPTIONS
    return {**base, **extra}


def only(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.glob(pattern))
    return found


def predictions(model: Path, texts: List[str]) -> List[float]:
    """Every label's probability for every text, in label order."""
    return [doc.cats[label] for doc in spacy.load(model).pipe(texts) for label in LABELS]


def test_custom_data_with_a_test_file(project: Path, tiny_bert: str) -> None:
    variables = custom_vars(tiny_bert, target_test_file="target_test.csv")
    done = project_run(project, "adapt", variables)
    assert done.returncode == 0, done.text[-3000:]
    model_dir = only(project / "training" / "custom", "src*_vf0.15/s0/tiny_len32_b8_se1p2")
    # the source stops at its bound of 1 epoch: the run prints its dev curve and why it stopped
    source = srsly.read_json(model_dir / "source" / "training.json")
    assert [row["epoch"] for row in source["curve"]] == [0, 1] and source["patience"] == 2
    assert "Dev score by epoch (0 = after the first batch): 0: " in done.text
    run = model_dir / "per_sample_0" / "dallmi_lr5e-05_lam0.1_wu0_norm_e1"
    metrics_dir = project / "metrics" / model_dir.relative_to(project / "training")
    result = srsly.read_json(metrics_dir / "per_sample_0" / f"{run.name}.json")
    none = srsly.read_json(metrics_dir / "none.json")
    for scored in (result, none):
        for key in ("metrics", "metrics_last"):
            assert 0.0 <= scored[key]["cats_macro_ap"] <= 1.0
            assert 0.0 <= scored[key]["cats_ece"] <= 1.0
    assert result["settings"]["ratio"] == 0 and result["settings"]["mixup_lambda"] == 0.1
    assert result["epochs"] and result["epochs"][0]["epoch"] == 0
    texts = ["happy day", "scared and mad today"]
    cats = predictions(run / "model-best", texts)
    assert all(0.0 <= value <= 1.0 for value in cats)
    thresholds = only(project / "thresholds", "**/dallmi_lr*_e1.json")
    assert set(srsly.read_json(thresholds)) == set(LABELS)
    report = (project / "reports" / "custom.md").read_text(encoding="utf8")
    assert "`dallmi`" in report and "Δ none" in report and str(project) not in report
    assert "seed 0: source dev score" in " ".join(report.split())

    # Poison the test split's labels: training and selection read none of them, so the
    # adapted model and its selection come out exactly the same.
    selection = srsly.read_json(run / "model-best" / "meta.json")["selection"]
    test_path = project / "corpus" / model_dir.parent.relative_to(project / "training")
    test_path = test_path / "target_test.spacy"
    nlp = spacy.blank("en")
    poisoned = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    for doc in poisoned:
        doc.cats = {label: 1.0 - value for label, value in doc.cats.items()}
    DocBin(docs=poisoned).to_disk(test_path)
    forced = {**variables, "options": f"{TINY_OPTIONS} force=dallmi"}
    again = project_run(project, "adapt", forced)
    assert again.returncode == 0, again.text[-3000:]
    assert srsly.read_json(run / "model-best" / "meta.json")["selection"] == selection
    assert predictions(run / "model-best", texts) == pytest.approx(cats, abs=1e-6)


def test_custom_data_without_a_test_file(project: Path, tiny_bert: str) -> None:
    variables = custom_vars(tiny_bert)
    done = project_run(project, "adapt", {**variables, "data_name": "notest"})
    assert done.returncode == 0, done.text[-3000:]
    assert "no test metrics are computed" in done.text
    for path in (project / "metrics" / "notest").rglob("*.json"):
        assert "no labelled target test set" in srsly.read_json(path)["skipped"]
    run = only(project / "training" / "notest", "**/dallmi_lr5e-05_*")
    assert len(predictions(run / "model-best", ["happy"])) == len(LABELS)
    report = (project / "reports" / "notest.md").read_text(encoding="utf8")
    assert "Runs without test metrics" in report and "Macro mAP" not in report


def test_bad_input_is_one_line_before_any_training(project: Path) -> None:
    done = project_run(project, "adapt", {"dataset": "custom", "source_file": "missing.csv"})
    assert done.returncode == 1
    assert "The source-domain file not found: missing.csv (set --vars.source_file)" in done.text
    assert "Traceback" not in done.text and "Running command" in done.text
    assert "train source" not in done.text  # nothing after the check


def test_a_bad_option_is_one_line(project: Path) -> None:
    done = project_run(project, "adapt", {"options": "batch_size=big"})
    assert done.returncode == 1
    assert "Option batch_size must be int, got 'big' (--vars.options)" in done.text
    done = project_run(project, "check", {"options": "batchsize=8"})
    assert done.returncode == 1 and "Unknown option 'batchsize=8'" in done.text


@pytest.mark.skipif(not DATA_DIR.exists(), reason=f"the shared datasets are not at {DATA_DIR}")
@pytest.mark.parametrize(
    "dataset,workflow,batch_size", [("emotions", "baselines", 12), ("pubmed", "adapt", 16)]
)
def test_study_workflows(
    project: Path, tiny_bert: str, dataset: str, workflow: str, batch_size: int
) -> None:
    """`baselines` on emotions and `adapt` on pubmed (the custom tests run `adapt` too): both
    workflows on both layouts would double this file's run time."""
    variables = {
        "dataset": dataset,
        "data_dir": str(DATA_DIR),
        "backbone": tiny_bert,
        "ratio": 0.7,
        **TINY,
        "options": f"{TINY_OPTIONS} max_source_docs=30 max_target_docs=40 "
        f"max_target_test_docs=20 curve={str(dataset == 'emotions').lower()} "
        f"batch_size={batch_size}",
    }
    done = project_run(project, workflow, variables)
    assert done.returncode == 0, done.text[-3000:]
    methods = {}
    for path in (project / "metrics" / dataset).rglob("*.json"):
        result = srsly.read_json(path)
        methods[result["method"]] = result
        assert result["settings"]["dataset"] == dataset
        assert 0.0 <= result["metrics"]["cats_macro_ap"] <= 1.0, path
    if workflow == "baselines":
        expected = {"none", "ft_partial", "an_ls", "wan", "ft_full", "dallmi_lambda0"}
        assert set(methods) == expected | {"dallmi_paper"}
        assert methods["ft_full"]["settings"].get("ratio") is None  # one run for every ratio
        assert methods["ft_partial"]["epochs"][0]["epoch"] == 0  # the per-epoch curve
        assert methods["ft_partial"]["settings"]["ratio"] == pytest.approx(0.7)
    else:
        assert set(methods) == {"none", "dallmi"}
        assert methods["dallmi"]["settings"]["ratio"] == pytest.approx(0.7)
        assert methods["dallmi"]["epochs"] == []  # curve false
    report = (project / "reports" / f"{dataset}.md").read_text(encoding="utf8")
    assert "70% removed, selected" in report and "recovery" in report

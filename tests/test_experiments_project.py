"""The spaCy project without training: its keyed run folders, the `check` step, the
validation slice, and the rule that no training or selection step is given the test split."""

import re
from pathlib import Path
from typing import Dict, List

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from typer.testing import CliRunner
from weasel.util import load_project_config

from spacy_dallmi.experiments import study as study_module
from spacy_dallmi.experiments.cli import app
from spacy_dallmi.experiments.corpus import prepare_files
from spacy_dallmi.experiments.study import OPTIONS, CheckError, Study, parse_options

REPO = Path(__file__).resolve().parents[1]
LEARN_RATE_KEY = "training.optimizer.learn_rate.initial_rate"
SETTINGS_KEY = "initialize.before_init.settings"
TRAINED = ("ft_partial", "an_ls", "wan", "ft_full", "dallmi", "dallmi_lambda0", "dallmi_paper")


def study(**changes: object) -> Study:
    """The emotions study at ratio 0.7, with vars or options changed."""
    values = dict(dataset="emotions", data_name="emotions", data_dir=Path("data"))
    values.update(source_file="", target_file="", target_test_file="", text_column="text")
    values.update(labels_column="", label_columns="", ratio=0.7000000000000001, seed=0)
    values.update(backbone="all-MiniLM-L6-v2", epochs=3, gpu_id=-1)
    options = parse_options("")
    for name, value in changes.items():
        if name in OPTIONS:
            options[name] = value
        else:
            values[name] = value
    return Study(**values, options=options)


def run_folders(found: Study) -> Dict[str, str]:
    """Training and metrics paths by step, as the study names them."""
    folders = {"source": str(found.folder("training", "source"))}
    folders["none"] = str(found.folder("metrics", "none"))
    for method in TRAINED:
        folders[f"train-{method}"] = str(found.folder("training", method))
        folders[f"evaluate-{method}"] = str(found.folder("metrics", method))
    return folders


def test_project_has_few_vars_and_no_nested_weasel_call() -> None:
    config = load_project_config(REPO)
    assert len(config["vars"]) <= 15
    for command in config["commands"]:
        assert command["script"][0].startswith("python -m spacy_dallmi study ")
    assert "weasel" not in (REPO / "spacy_dallmi" / "experiments" / "study.py").read_text("utf8")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("batch_size=big", "Option batch_size must be int, got 'big' (--vars.options)"),
        ("curve=maybe", "Option curve must be true or false, got 'maybe'"),
        ("loss_form=square", "Option loss_form must be norm or log, got 'square'"),
        ("batchsize=8", "Unknown option 'batchsize=8' in --vars.options"),
        ("batch_size", "Unknown option 'batch_size' in --vars.options"),
    ],
)
def test_a_bad_option_is_one_clear_error(text: str, expected: str) -> None:
    with pytest.raises(CheckError, match=re.escape(expected)):
        parse_options(text)


def test_options_are_read_as_their_defaults_types() -> None:
    options = parse_options("batch_size=64 learn_rate=0.0001 curve=false ratios=0.5,0.9")
    assert options["batch_size"] == 64 and options["learn_rate"] == 0.0001
    assert options["curve"] is False and options["ratios"] == "0.5,0.9"
    assert options["max_length"] == OPTIONS["max_length"]


def test_run_folders_keep_their_names() -> None:
    found = run_folders(study(ratio=0.0, dataset="custom", data_name="custom"))
    model = "custom/src1000_tgt1000_test1000_tf0.2_vf0.15/s0/all-MiniLM-L6-v2_len64_b32_se20p2"
    dallmi = "per_sample_0/dallmi_lr5e-05_lam0.1_wu0_norm_e3"
    assert found["source"] == f"training/{model}/source"
    assert found["train-dallmi"] == f"training/{model}/{dallmi}"
    assert found["train-ft_full"] == f"training/{model}/ft_full_lr5e-05_e3"
    wan = "per_sample_0/wan_lr5e-05_e3.json"
    assert found["evaluate-wan"] == f"metrics/{model}/{wan}"
    assert found["none"] == f"metrics/{model}/none.json"


@pytest.mark.parametrize(
    "var,value",
    [
        ("dataset", "pubmed"),
        ("max_source_docs", 500),
        ("max_target_docs", 500),
        ("max_target_test_docs", 500),
        ("valid_fraction", 0.2),
        ("seed", 1),
        ("ratio", 0.9),
        ("removal", "per_label"),
        ("learn_rate", 0.0003),
        ("mixup_lambda", 0.3),
        ("mixup_warmup_steps", 10),
        ("loss_form", "log"),
        ("epochs", 6),
        ("backbone_key", "bert"),
        ("max_length", 128),
        ("batch_size", 64),
    ],
)
def test_every_setting_that_changes_a_result_changes_the_dallmi_run_folder(var, value) -> None:
    changes = {var: value, "data_name": value} if var == "dataset" else {var: value}
    base, changed = run_folders(study()), run_folders(study(**changes))
    assert changed["train-dallmi"] != base["train-dallmi"]
    assert changed["evaluate-dallmi"] != base["evaluate-dallmi"]


@pytest.mark.parametrize(
    "var,value", [("learn_rate", 0.0003), ("mixup_lambda", 0.3), ("ratio", 0.9)]
)
def test_runs_a_setting_does_not_affect_are_shared(var, value) -> None:
    """A new DALLMi setting reuses the source model and the ratio-free baselines."""
    base, changed = run_folders(study()), run_folders(study(**{var: value}))
    for name in ("source", "none"):
        assert changed[name] == base[name]
    if var != "learn_rate":
        assert changed["train-ft_full"] == base["train-ft_full"]
    if var == "mixup_lambda":
        assert changed["train-ft_partial"] == base["train-ft_partial"]


def test_training_and_selection_never_receive_the_test_split() -> None:
    """No training run is given the test split as its train or dev corpus: it reaches
    training only as the per-epoch curve's docs (`curve=false` turns them off), which spaCy's
    selection never reads (the slow test shows that poisoning it changes nothing)."""
    found = study()
    for method in TRAINED:
        config, overrides = found.training(method)
        assert (REPO / "configs" / config).is_file()
        assert not [value for value in overrides.values() if "target_test" in str(value)]
        assert "target_valid" in overrides["paths.dev"], method
        assert "target_train" in overrides["paths.train"], method


def run(args: List[str]):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    result.text = " ".join(result.output.split())
    return result


def write_csv(path: Path, rows: List[List[object]], header=("text", "labels")) -> Path:
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "s.csv", [["a b", "x|y"], ["c d", "y"], ["e", "[]"]])
    write_csv(tmp_path / "t.csv", [["f g", "x"], ["h", "[]"]])
    return tmp_path


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--dataset", "emotion"], "Unknown dataset 'emotion': set --vars.dataset"),
        (["--source-file", "nope.csv"], "not found: nope.csv (set --vars.source_file)"),
        (["--source-file", "s.csv"], "set --vars.target_file"),
        (["--source-file", "s.csv", "--target-file", "t.csv"], "set --vars.labels_col"),
        (
            ["--source-file", "s.csv", "--target-file", "t.csv", "--labels-column", "y"],
            "Column(s) 'y' not found in s.csv. Columns found: 'text', 'labels'. Set "
            "--vars.labels_column.",
        ),
        (
            ["--source-file", "s.csv", "--target-file", "t.csv", "--text-column", "tx"]
            + ["--labels-column", "labels"],
            "Set --vars.text_column.",
        ),
        (["--dataset", "pubmed", "--data-dir", "nowhere", "--ratio", "0.5"], "Set --vars.data_dir"),
        (["--dataset", "pubmed"], "set --vars.ratio to the share"),
        (["--backbone", "/models/bert"], 'or --vars.options "backbone_key=NAME"'),
        (["--options", "curve=maybe"], "Option curve must be true or false"),
    ],
)
def test_check_names_the_var_to_set_in_one_line(in_tmp: Path, args, expected) -> None:
    defaults = ["--source-file", "s.csv", "--target-file", "t.csv", "--labels-column", "labels"]
    if args[0] in ("--backbone", "--options"):
        args = [*args, *defaults]
    if "pubmed" in args and "--data-dir" not in args:
        args = [*args, "--data-dir", str(REPO.parent / "shared" / "datasets")]
    result = run(["study", "check", *args])
    assert result.exit_code == 1, result.output
    assert expected in result.text
    assert result.output.count("✘") == 1 and "Traceback" not in result.output


def test_check_writes_the_input_fingerprint_and_guards_the_data_name(in_tmp: Path) -> None:
    args = ["study", "check", "--source-file", "s.csv", "--target-file", "t.csv"]
    args += ["--labels-column", "labels"]
    first = run(args)
    assert first.exit_code == 0, first.output
    assert "no test metrics are computed" in first.text
    inputs = srsly.read_json(in_tmp / "corpus" / "custom" / "inputs.json")
    assert sorted(inputs["files"]) == ["s.csv", "t.csv"]
    write_csv(in_tmp / "t2.csv", [["k", "x"]])
    other = run([*args[:5], "t2.csv", *args[6:]])
    assert other.exit_code == 1 and "set --vars.data_name to a new name" in other.text
    renamed = run([*args[:5], "t2.csv", *args[6:], "--data-name", "mine"])
    assert renamed.exit_code == 0, renamed.output
    bert = run([*args, "--backbone", "bert", "--options", "backbone_key=all-MiniLM-L6-v2"])
    assert bert.exit_code == 1 and "already names the backbone" in bert.text


def test_baselines_train_with_their_settings_and_the_study_learning_rate() -> None:
    found = study(dataset="custom", data_name="custom", learn_rate=0.0003)
    settings = {"an_ls": ("label_smoothing", 0.1), "wan": ("negative_weighting", "wan")}
    for method, (name, value) in settings.items():
        config, overrides = found.training(method)
        assert config == "finetune.cfg" and overrides[f"{SETTINGS_KEY}.{name}"] == value
        assert overrides[LEARN_RATE_KEY] == pytest.approx(0.0003)
    _, plain = found.training("ft_partial")
    assert not any(name.startswith(SETTINGS_KEY) for name in plain)


def docs(path: Path) -> List[spacy.tokens.Doc]:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def full_target(path: Path, n: int) -> Path:
    rng = numpy.random.default_rng(3)
    rows = []
    for i in range(n):
        labels = [label for label in ("x", "y", "z") if rng.random() < 0.5] or ["x"]
        rows.append([f"doc {i}", "|".join(labels)])
    return write_csv(path, rows)


def test_validation_slice_is_carved_from_target_train_and_leaves_the_test_split(
    tmp_path: Path,
) -> None:
    source, target = full_target(tmp_path / "s.csv", 30), full_target(tmp_path / "t.csv", 60)
    common = {"text_column": "text", "labels_column": "labels", "quiet": True}
    splits = {}
    for ratio in (0.5, 0.9):
        out = tmp_path / f"r{ratio}"
        stats = prepare_files(source, target, out, ratio=ratio, valid_fraction=0.2, **common)
        splits[ratio] = {
            name: docs(out / filename)
            for name, filename in stats["files"].items()
            if filename.endswith(".spacy")
        }
        assert stats["splits"]["target_valid"]["hidden"], "the slice hides labels too"
    plain = prepare_files(source, target, tmp_path / "plain", ratio=0.5, **common)
    assert "target_valid" not in plain["splits"]
    first, second = splits[0.5], splits[0.9]
    texts = {name: [doc.text for doc in split] for name, split in first.items()}
    assert texts["target_test"] == [
        doc.text for doc in docs(tmp_path / "plain" / "target_test.spacy")
    ]
    assert texts["target_valid"] == [doc.text for doc in second["target_valid"]]
    assert not set(texts["target_valid"]) & set(texts["target_train"])
    assert len(texts["target_valid"]) == 10  # 0.2 of the 48 target train docs, rounded
    partial_positives = sum(sum(doc.cats.values()) for doc in first["target_valid"])
    full_positives = sum(sum(doc.cats.values()) for doc in first["target_valid_full"])
    assert partial_positives < full_positives


def test_a_run_without_its_data_is_skipped_with_a_marker(tmp_path: Path) -> None:
    from spacy_dallmi.experiments.commands import train_run

    config = REPO / "configs" / "finetune.cfg"
    output = tmp_path / "ft_full"
    train_run(config, output, 1, {}, skip_if_missing=tmp_path / "none.spacy")
    reason = srsly.read_json(output / "skipped.json")["reason"]
    assert "none.spacy does not exist" in reason


def test_the_study_prepares_custom_data_as_the_project_calls_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty target test file and caps of 0 are "not given"; label_columns wins over
    labels_column; the ratio-free corpora are copied to the study's corpus folder."""
    header = ("text", "x", "y", "labels")
    rows = [[f"doc {i}", i % 2, 1 - i % 2, "x"] for i in range(30)]
    write_csv(tmp_path / "s.csv", rows, header)
    write_csv(tmp_path / "t.csv", [[f"t {i}", int(i % 3 == 0), 0, "x"] for i in range(20)], header)
    monkeypatch.chdir(tmp_path)
    files = dict(source_file="s.csv", target_file="t.csv", target_test_file="")
    columns = dict(label_columns="x,y", labels_column="labels")
    found = study(dataset="custom", data_name="custom", ratio=0.0, **files, **columns,
                  max_source_docs=0, valid_fraction=0.25)  # fmt: skip
    study_module.record_inputs("custom", "custom", [Path("s.csv"), Path("t.csv")])
    study_module.prepare(found)
    stats = srsly.read_json(found.partial / "stats.json")
    assert stats["labels"] == ["x", "y"]
    assert stats["splits"]["target_valid"]["docs"] == 5
    assert stats["splits"]["target_train"]["docs"] == 15
    assert stats["splits"]["source_train"]["cap"] is None
    assert "target_test" not in stats["splits"] and "target_train_full" not in stats["splits"]
    assert sorted(p.name for p in found.corpus.iterdir() if p.suffix == ".spacy") == [
        "source_test.spacy",
        "source_train.spacy",
    ]

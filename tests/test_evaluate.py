"""Evaluation, the per-epoch learning-curve callback and the Markdown report.

Scores are checked against scikit-learn computed independently of the package, on predictions
made here from the texts alone.
"""

import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import spacy
import srsly
from sklearn.metrics import average_precision_score
from spacy.cli.train import train
from spacy.util import registry

from spacy_dallmi.callbacks import make_epoch_eval_callback
from spacy_dallmi.experiments.evaluate import (
    evaluate_pipeline,
    evaluate_run,
    expected_calibration_error,
    write_metrics,
)
from spacy_dallmi.experiments.report import build_report, curve_points, load_runs
from spacy_dallmi.training import TRAINING_FILE, summarise_dev_curve

from .util import LABELS, make_examples, make_nlp, toy_texts, write_docbin

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scoring_rows():
    """Fully labelled test rows in which `sadness` has no positive (so it must be skipped)."""
    rows = toy_texts(30, seed=5)
    return [(text, {**cats, "sadness": 0.0}) for text, cats in rows]


def sklearn_scores(nlp, rows):
    """Macro/micro/rounded AP with scikit-learn on predictions from the texts only."""
    probs = np.array([[nlp(text).cats[label] for label in LABELS] for text, _ in rows])
    gold = np.array([[cats[label] for label in LABELS] for _, cats in rows])
    scored = [j for j in range(len(LABELS)) if gold[:, j].any()]
    return {
        "cats_macro_ap": np.mean(
            [average_precision_score(gold[:, j], probs[:, j]) for j in scored]
        ),
        "cats_macro_ap_rounded": np.mean(
            [average_precision_score(gold[:, j], (probs[:, j] >= 0.5) * 1.0) for j in scored]
        ),
        "cats_micro_ap": average_precision_score(gold.ravel(), probs.ravel()),
    }


@pytest.fixture(scope="module")
def saved_pipeline(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    nlp = make_nlp(tiny_bert)
    examples = make_examples(nlp, toy_texts(20, seed=1))
    nlp.initialize(lambda: examples)
    nlp.to_disk(folder / "model")
    return {
        "model": folder / "model",
        "test": write_docbin(folder / "test.spacy", scoring_rows()),
        "folder": folder,
    }


def test_evaluate_pipeline_matches_sklearn(saved_pipeline, tmp_path):
    settings = {"dataset": "toy", "ratio": 0.5, "seed": 0, "backbone": "tiny"}
    result = evaluate_pipeline(
        saved_pipeline["model"], saved_pipeline["test"], method="dallmi", settings=settings
    )
    expected = sklearn_scores(spacy.load(saved_pipeline["model"]), scoring_rows())
    metrics = result["metrics"]
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    for key in ("cats_macro_ap", "cats_micro_ap", "cats_macro_auc", "cats_macro_f"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["cats_ap_skipped_labels"] == ["sadness"]
    assert set(metrics["cats_ap_per_type"]) == {"anger", "fear", "joy"}
    assert result["method"] == "dallmi"
    assert result["settings"] == settings
    assert result["n_docs"] == 30
    assert result["labels"] == list(LABELS)
    assert result["epochs"] == []
    assert result["wall_seconds"] > 0
    write_metrics(result, tmp_path / "out" / "dallmi.json")
    written = srsly.read_json(tmp_path / "out" / "dallmi.json")
    assert written.keys() == result.keys()
    assert written["settings"] == settings
    # srsly writes floats with 10 significant digits: plenty for a results table.
    assert written["metrics"]["cats_macro_ap"] == pytest.approx(metrics["cats_macro_ap"], rel=1e-9)


def test_evaluate_pipeline_reads_the_epoch_log(saved_pipeline, tmp_path):
    records = [{"epoch": 0, "step": 0, "cats_macro_ap": 0.25}, {"epoch": 1, "step": 5}]
    srsly.write_jsonl(tmp_path / "curve.jsonl", records)
    result = evaluate_pipeline(
        saved_pipeline["model"],
        saved_pipeline["test"],
        method="ft_partial",
        settings={},
        epoch_log=tmp_path / "curve.jsonl",
    )
    assert result["epochs"] == records


def test_evaluate_pipeline_errors(saved_pipeline, tmp_path):
    model, test = saved_pipeline["model"], saved_pipeline["test"]
    with pytest.raises(FileNotFoundError, match=r"nowhere.*spacy_dallmi train.*partial"):
        evaluate_pipeline(tmp_path / "nowhere", test, method="none", settings={})
    with pytest.raises(FileNotFoundError, match=r"model-best"):
        evaluate_pipeline(saved_pipeline["folder"], test, method="none", settings={})
    with pytest.raises(FileNotFoundError, match=r"missing\.spacy.*prepare"):
        evaluate_pipeline(model, tmp_path / "missing.spacy", method="none", settings={})
    with pytest.raises(FileNotFoundError, match=r"curve\.jsonl.*epoch_eval"):
        evaluate_pipeline(
            model, test, method="none", settings={}, epoch_log=tmp_path / "curve.jsonl"
        )
    with pytest.raises(ValueError, match="Unknown method 'dalmi'"):
        evaluate_pipeline(model, test, method="dalmi", settings={})
    with pytest.raises(ValueError, match="JSON"):
        evaluate_pipeline(model, test, method="none", settings={"path": Path("x")})
    partial = [(text, {"joy": cats["joy"]}) for text, cats in scoring_rows()]
    write_docbin(tmp_path / "partial.spacy", partial)
    with pytest.raises(ValueError, match=r"partial\.spacy.*lacks a gold value.*anger"):
        evaluate_pipeline(model, tmp_path / "partial.spacy", method="none", settings={})


def test_epoch_callback_records_one_line_per_epoch(tiny_bert, saved_pipeline, tmp_path):
    assert registry.callbacks.get("spacy_dallmi.epoch_eval.v1") is make_epoch_eval_callback
    output = tmp_path / "curve" / "epochs.jsonl"
    output.parent.mkdir()
    output.write_text('{"stale": "line from an earlier run"}\n', encoding="utf8")
    callback = make_epoch_eval_callback(path=str(saved_pipeline["test"]), output=str(output))
    assert output.read_text(encoding="utf8") == ""

    nlp = make_nlp(tiny_bert)
    train_examples = make_examples(nlp, toy_texts(16, seed=2))
    optimizer = nlp.initialize(lambda: train_examples)
    before = sklearn_scores(nlp, scoring_rows())
    schedule = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 1), (5, 2)]
    for step, epoch in schedule:
        callback(nlp, {"step": step, "epoch": epoch})
        nlp.update(train_examples[:8], sgd=optimizer)

    records = list(srsly.read_jsonl(output))
    assert [(r["epoch"], r["step"]) for r in records] == [(0, 0), (1, 2), (2, 5)]
    assert set(records[0]) == {
        "epoch",
        "step",
        "cats_macro_ap",
        "cats_macro_ap_rounded",
        "cats_micro_ap",
    }
    for key, value in before.items():
        assert records[0][key] == pytest.approx(value, abs=1e-6), key
    assert records[1]["cats_macro_ap"] != records[0]["cats_macro_ap"]


def test_epoch_callback_is_a_no_op_without_docs_and_checks_its_settings(tmp_path):
    for path in (None, ""):
        callback = make_epoch_eval_callback(path=path, output=str(tmp_path / "never.jsonl"))
        callback(spacy.blank("en"), {"step": 0, "epoch": 0})
    assert not (tmp_path / "never.jsonl").exists()
    with pytest.raises(ValueError, match="output"):
        make_epoch_eval_callback(path=str(tmp_path / "docs.spacy"), output=None)
    with pytest.raises(FileNotFoundError, match=r"docs\.spacy"):
        make_epoch_eval_callback(path=str(tmp_path / "docs.spacy"), output="x.jsonl")


def test_epoch_callback_in_spacy_train_and_report(tiny_bert, saved_pipeline, tmp_path):
    """A real in-process `spacy train`: records for epochs 0 and 1, training unchanged by them,
    and the trained pipeline loads without the curve docs; then evaluate + report on the run."""
    train_path = write_docbin(tmp_path / "train.spacy", toy_texts(40, seed=1))
    curve_docs = write_docbin(tmp_path / "curve.spacy", scoring_rows())
    curve = tmp_path / "curve.jsonl"
    overrides = {
        "paths.train": str(train_path),
        "paths.dev": str(train_path),
        "paths.backbone": tiny_bert,
        "components.textcat.model.max_length": 32,
        "training.max_epochs": 2,
        "training.batcher.size": 8,
    }
    epoch_eval = {
        "@callbacks": "spacy_dallmi.epoch_eval.v1",
        "path": str(curve_docs),
        "output": str(curve),
    }
    train(
        CONFIGS / "source.cfg",
        tmp_path / "with",
        overrides={**overrides, "training.before_update": epoch_eval},
    )
    train(CONFIGS / "source.cfg", tmp_path / "without", overrides=overrides)

    records = list(srsly.read_jsonl(curve))
    assert [r["epoch"] for r in records] == [0, 1]
    assert records[0]["step"] == 0 and records[1]["step"] == 5  # 40 docs in batches of 8
    assert all(0.0 <= r["cats_macro_ap"] <= 1.0 for r in records)
    curve_docs.unlink()
    with_curve = spacy.load(tmp_path / "with" / "model-last")
    without_curve = spacy.load(tmp_path / "without" / "model-last")
    assert len(list(srsly.read_jsonl(curve))) == 2
    text = "happy day but i worry"
    assert with_curve(text).cats == pytest.approx(without_curve(text).cats, abs=1e-6)

    result = evaluate_pipeline(
        tmp_path / "with" / "model-last",
        saved_pipeline["test"],
        method="ft_full",
        settings={"ratio": 0.5, "seed": 0},
        epoch_log=curve,
    )
    assert result["epochs"] == records
    write_metrics(result, tmp_path / "metrics" / "ft_full.json")
    build_report(
        [tmp_path / "metrics" / "ft_full.json"],
        tmp_path / "report.md",
        tmp_path / "figures",
        title="toy",
    )
    assert (tmp_path / "figures" / "macro_map_per_epoch.png").read_bytes()[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------------------
# Report on synthetic metrics files

MACRO = {
    # (method, ratio): macro AP per seed 0, 1, 2 (None = no run for that seed)
    ("none", 0.5): [0.55, 0.55, 0.55],
    ("none", 0.9): [0.57, None, None],
    ("ft_partial", 0.5): [0.50, 0.52, 0.54],
    ("ft_partial", 0.9): [0.40, 0.41, 0.45],
    ("ft_full", 0.5): [0.70, 0.70, 0.73],
    ("dallmi", 0.5): [0.60, 0.62, 0.64],
    ("dallmi", 0.9): [0.58, 0.56, None],
}


def fake_result(method, ratio, seed, macro_ap):
    epochs = []
    if method != "none":
        epochs = [
            {"epoch": e, "step": 10 * e, "cats_macro_ap": macro_ap - 0.1 / (e + 1)}
            for e in range(3)
        ]
    return {
        "method": method,
        "settings": {"dataset": "toy", "ratio": ratio, "seed": seed, "backbone": "tiny"},
        "n_docs": 30,
        "metrics": metrics(macro_ap),
        "metrics_last": metrics(macro_ap - 0.05),
        "epochs": epochs,
        "wall_seconds": 1.5,
    }


def metrics(macro_ap):
    return {
        "cats_macro_ap": macro_ap,
        "cats_macro_ap_rounded": macro_ap / 2,
        "cats_micro_ap": macro_ap,
        "cats_macro_auc": 0.8,
        "cats_macro_f": 0.4,
        "cats_ece": 0.1,
        "cats_ap_per_type": {"anger": macro_ap, "fear": macro_ap - 0.1, "joy": macro_ap},
        "cats_ap_skipped_labels": ["sadness"],
    }


def write_fake_metrics(folder: Path, table=MACRO):
    paths = []
    for (method, ratio), values in table.items():
        for seed, value in enumerate(values):
            if value is not None:
                path = folder / f"{method}_{ratio}_{seed}.json"
                srsly.write_json(path, fake_result(method, ratio, seed, value))
                paths.append(path)
    return paths


def table_rows(markdown: str, heading: str):
    """The rows of the first table after `heading`, as {first cell: [other cells]}."""
    section = markdown.split(heading, 1)[1]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith(("| method", "| ---")):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        elif rows and not line.startswith("|"):
            break
    return rows


def test_report_tables_recovery_and_figures(tmp_path):
    paths = write_fake_metrics(tmp_path)
    output = tmp_path / "reports" / "toy.md"
    figures = tmp_path / "reports" / "toy_figures"
    build_report(paths, output, figures, title="Toy results")
    markdown = output.read_text(encoding="utf8")
    assert markdown.startswith("# Toy results")

    macro = table_rows(markdown, "(`cats_macro_ap`)")
    # Hand-computed: mean and sample standard deviation (ddof = 1), in percent; per ratio the
    # selected model and the last epoch (here 5 points lower) side by side.
    assert macro["`dallmi`"] == ["62.0 ± 2.0 (n=3)", "57.0 ± 2.0 (n=3)", "57.0 ± 1.4 (n=2)"] + [
        "52.0 ± 1.4 (n=2)"
    ]
    assert macro["`ft_partial`"][0::2] == ["52.0 ± 2.0 (n=3)", "42.0 ± 2.6 (n=3)"]
    assert macro["`ft_full`"][0::2] == ["71.0 ± 1.7 (n=3)", "–"]
    assert macro["`none`"][0::2] == ["55.0 ± 0.0 (n=3)", "57.0 (n=1)"]
    gains = table_rows(markdown, "Against no adaptation")
    # Δ none: 62 - 55 and 57 - 57; recovery (62 - 52) / (71 - 52) = 10 / 19; no ft_full at 0.9.
    assert gains["`dallmi`"] == ["+7.0", "52.6%", "+0.0", "–"]
    assert gains["`ft_partial`"] == ["-3.0", "–", "-15.0", "–"]

    rounded = table_rows(markdown, "(`cats_macro_ap_rounded`)")
    assert rounded["`dallmi`"][0] == "31.0 ± 1.0 (n=3)"
    assert rounded["`ft_full`"][2] == "–"
    ece = table_rows(markdown, "(`cats_ece`)")
    assert ece["`dallmi`"][0] == "10.0 ± 0.0 (n=3)"

    values = [0.70, 0.70, 0.73]
    expected = f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f} (n=3)"
    assert macro["`ft_full`"][0] == expected
    assert "50% removed" in markdown and "90% removed" in markdown
    assert "1 label(s) left out in 18 run(s): `sadness`" in markdown

    for name in ("macro_map_per_epoch.png", "ap_per_label.png"):
        assert (figures / name).read_bytes()[:8] == PNG_MAGIC
        assert f"(toy_figures/{name})" in markdown


def test_report_recovery_with_no_gap(tmp_path):
    table = {
        ("ft_partial", 0.7): [0.50],
        ("ft_full", 0.7): [0.45],
        ("dallmi", 0.7): [0.55],
    }
    paths = write_fake_metrics(tmp_path, table)
    build_report(paths, tmp_path / "r.md", tmp_path / "figures", title="gap")
    markdown = (tmp_path / "r.md").read_text(encoding="utf8")
    # full - partial = -5 points: below the 3-point minimum, so no recovery is printed
    assert table_rows(markdown, "Against no adaptation")["`dallmi`"] == ["–", "n/a (gap -5.0)"]
    assert "`none`" not in table_rows(markdown, "(`cats_macro_ap`)")


def test_report_without_epoch_records_skips_the_curve(tmp_path):
    path = tmp_path / "none.json"
    srsly.write_json(path, fake_result("none", 0.5, 0, 0.5))
    build_report([path], tmp_path / "r.md", tmp_path / "figures", title="t")
    markdown = (tmp_path / "r.md").read_text(encoding="utf8")
    assert "No per-epoch records" in markdown
    assert not (tmp_path / "figures" / "macro_map_per_epoch.png").exists()
    assert (tmp_path / "figures" / "ap_per_label.png").read_bytes()[:8] == PNG_MAGIC


def test_report_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="No metrics files"):
        build_report([], tmp_path / "r.md", tmp_path / "figures", title="t")
    broken = fake_result("dallmi", 0.5, 0, 0.6)
    del broken["metrics"]["cats_macro_ap"]
    srsly.write_json(tmp_path / "broken.json", broken)
    with pytest.raises(ValueError, match=r"broken\.json.*metrics\.cats_macro_ap"):
        build_report([tmp_path / "broken.json"], tmp_path / "r.md", tmp_path / "f", title="t")
    no_ratio = fake_result("dallmi", 0.5, 0, 0.6)
    no_ratio["settings"]["ratio"] = None
    srsly.write_json(tmp_path / "no_ratio.json", no_ratio)
    with pytest.raises(ValueError, match=r"no_ratio\.json.*settings\.ratio"):
        build_report([tmp_path / "no_ratio.json"], tmp_path / "r.md", tmp_path / "f", title="t")
    no_method = fake_result("dallmi", 0.5, 0, 0.6)
    no_method["method"] = "DALLMi"
    srsly.write_json(tmp_path / "bad_method.json", no_method)
    with pytest.raises(ValueError, match=r"bad_method\.json.*'DALLMi'"):
        build_report([tmp_path / "bad_method.json"], tmp_path / "r.md", tmp_path / "f", title="t")
    srsly.write_json(tmp_path / "a.json", fake_result("dallmi", 0.5, 0, 0.6))
    srsly.write_json(tmp_path / "b.json", fake_result("dallmi", 0.5, 0, 0.7))
    with pytest.raises(ValueError, match=r"a\.json and .*b\.json"):
        build_report(
            [tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "r.md", tmp_path / "f", title="t"
        )
    with pytest.raises(FileNotFoundError, match=r"gone\.json"):
        build_report([tmp_path / "gone.json"], tmp_path / "r.md", tmp_path / "f", title="t")


def test_curve_points_end_with_the_scored_model(tmp_path):
    """The epoch callback records before each epoch; the final model's point is the run's score,
    placed at settings.epochs, and never duplicates an epoch that was recorded."""
    results = [fake_result("dallmi", 0.5, seed, 0.6 + seed / 10) for seed in (0, 1)]
    results[0]["settings"]["epochs"] = 3
    results[1]["settings"]["epochs"] = 2  # epoch 2 was recorded: the score is not added again
    for seed, result in enumerate(results):
        srsly.write_json(tmp_path / f"dallmi_{seed}.json", result)
    runs = load_runs(sorted(tmp_path.glob("*.json")))
    points, seeds = curve_points(runs, "dallmi", 0.5)
    assert seeds == 2
    assert sorted(points) == [0, 1, 2, 3]
    assert points[3] == [pytest.approx(0.6)]
    assert len(points[2]) == 2
    assert curve_points(runs, "ft_full", 0.5) == ({}, 0)


def test_report_groups_settings_and_reuses_ratio_free_runs(tmp_path):
    """Two MixUp weights make two settings; the ratio-free `none` and `ft_full` runs and the
    lambda-free `ft_partial` run fit both and appear in each; no absolute path is printed."""
    common = {"dataset": "toy", "seed": 0, "backbone": str(tmp_path / "bert")}
    files = {
        "none": ("none", {**common}, 0.50),
        "ft_full": ("ft_full", {**common, "learn_rate": 1e-4}, 0.70),
        "ft_partial": ("ft_partial", {**common, "learn_rate": 1e-4, "ratio": 0.5}, 0.55),
        "dallmi_a": ("dallmi", {**common, "learn_rate": 1e-4, "ratio": 0.5, "lam": 0.1}, 0.65),
        "dallmi_b": ("dallmi", {**common, "learn_rate": 1e-4, "ratio": 0.5, "lam": 0.3}, 0.60),
    }
    paths = []
    for name, (method, settings, value) in files.items():
        result = fake_result(method, 0.5, 0, value)
        result["settings"] = settings
        paths.append(tmp_path / "metrics" / f"{name}.json")
        paths[-1].parent.mkdir(exist_ok=True)
        srsly.write_json(paths[-1], result)
    srsly.write_json(
        tmp_path / "metrics" / "wan.json",
        {"method": "wan", "settings": common, "skipped": "no labelled target test set"},
    )
    paths.append(tmp_path / "metrics" / "wan.json")
    output = tmp_path / "reports" / "toy.md"
    build_report(paths, output, tmp_path / "figs", title="t", group_settings=True, root=tmp_path)
    markdown = output.read_text(encoding="utf8")
    assert str(tmp_path) not in markdown
    assert "`metrics/none.json`" in markdown and "`bert`" in markdown
    first, second = markdown.split("## Setting 2")
    assert "lam=0.1" in first and "lam=0.3" in second
    for section, dallmi in ((first, "65.0"), (second, "60.0")):
        macro = table_rows(section, "(`cats_macro_ap`)")
        assert set(macro) == {"`none`", "`ft_partial`", "`ft_full`", "`dallmi`"}
        assert macro["`dallmi`"][0] == f"{dallmi} (n=1)"
        assert macro["`none`"][0] == "50.0 (n=1)"
    # recovery (65 - 55) / (70 - 55) = 66.7%; delta against none +15.0
    assert table_rows(first, "Against no adaptation")["`dallmi`"] == ["+15.0", "66.7%"]
    assert "Runs without test metrics" in markdown and "no labelled target test set" in markdown
    assert (tmp_path / "figs" / "setting1" / "ap_per_label.png").is_file()


def test_report_of_runs_without_test_metrics_says_so(tmp_path):
    path = tmp_path / "dallmi.json"
    reason = "no labelled target test set: no test metrics are computed"
    srsly.write_json(path, {"method": "dallmi", "settings": {"seed": 0}, "skipped": reason})
    build_report([path], tmp_path / "r.md", tmp_path / "f", title="t", group_settings=True)
    markdown = (tmp_path / "r.md").read_text(encoding="utf8")
    assert reason in markdown and "Macro mAP" not in markdown


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.05, 0.95], [0.15, 0.55], [0.95, 0.05]])
    gold = np.array([[0, 1], [1, 1], [0, 0]])
    # bins of width 1/15: {0.05, 0.05} -> |0.05 - 0| ; {0.15} -> |0.15 - 1| ; {0.55} -> |0.55 - 1|;
    # {0.95, 0.95} -> |0.95 - 0.5|; weighted by 2, 1, 1, 2 of 6 pairs
    expected = (2 * 0.05 + 0.85 + 0.45 + 2 * 0.45) / 6
    assert expected_calibration_error(probs, gold) == pytest.approx(expected)
    assert expected_calibration_error(np.ones((2, 2)), np.ones((2, 2))) == pytest.approx(0.0)
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros((0, 3))) is None
    # 0.1 twice (one positive): |0.1 - 0.5| * 2/4; 0.9 twice (both positive): |0.9 - 1| * 2/4
    probs = np.array([[0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error(probs, np.array([[0, 1], [1, 1]])) == pytest.approx(0.25)
    # The edges 0 and 1 fall in the first and last bins; a calibrated set scores 0.
    assert expected_calibration_error([0.0, 1.0, 0.5, 0.5], [0, 1, 0, 1]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="must match"):
        expected_calibration_error(np.ones((2, 2)), np.ones(3))


def test_evaluate_run_scores_selected_and_last_models(saved_pipeline, tmp_path):
    run = tmp_path / "run"
    for name in ("model-best", "model-last"):
        shutil.copytree(saved_pipeline["model"], run / name)
    result = evaluate_run(run, saved_pipeline["test"], method="dallmi", settings={"seed": 0})
    assert result["metrics"]["cats_macro_ap"] == pytest.approx(
        result["metrics_last"]["cats_macro_ap"]
    )
    assert 0.0 <= result["metrics"]["cats_ece"] <= 1.0
    assert result["model_path"].endswith("model-best")
    plain = evaluate_run(
        saved_pipeline["model"], saved_pipeline["test"], method="none", settings={}
    )
    assert plain["metrics_last"] == plain["metrics"] and plain["selection"] is None


def test_the_source_models_training_reaches_its_metrics_and_the_report(saved_pipeline, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(saved_pipeline["model"], source / "model-best")
    curve = [{"epoch": i, "step": 4 * i, "score": s} for i, s in enumerate([0.5, 0.7, 0.9])]
    summary = summarise_dev_curve(curve, epochs=2, patience=2)  # still improving at the bound
    srsly.write_json(source / TRAINING_FILE, summary)
    settings = {"dataset": "toy", "seed": 0, "backbone": "tiny"}
    result = evaluate_run(source / "model-best", saved_pipeline["test"], method="none",
                          settings=settings)  # fmt: skip
    assert result["training"] == srsly.read_json(source / TRAINING_FILE)
    assert result["training"]["reason"] == "upper_bound"
    bare = evaluate_run(saved_pipeline["model"], saved_pipeline["test"], method="none",
                        settings=settings)  # fmt: skip
    assert bare["training"] is None  # no training record beside a plain pipeline
    paths = write_fake_metrics(tmp_path, {("dallmi", 0.5): [0.7]})
    write_metrics(result, tmp_path / "none.json")
    build_report([*paths, tmp_path / "none.json"], tmp_path / "r.md", tmp_path / "f", title="t")
    markdown = " ".join((tmp_path / "r.md").read_text(encoding="utf8").split())
    assert (
        "seed 0: source dev score 90.0 at epoch 2, stopped at epoch 2 of at most 2: **stopped by "
        "the upper bound while still improving by 20.0 points**; raise `source_epochs`"
    ) in markdown

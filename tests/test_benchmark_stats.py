"""The paired benchmark's statistics, checked against hand computations and scipy."""

import json
import math
import sys
from pathlib import Path

import numpy
import pytest
import srsly
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from paired import (  # noqa: E402
    METHODS,
    Method,
    as_registered,
    select,
    summarise_records,
)
from stats import paired_difference  # noqa: E402
from summarize import load_dataset_runs, scores, summary_records  # noqa: E402

from spacy_dallmi.experiments.methods import registered  # noqa: E402
from spacy_dallmi.experiments.report import recovery  # noqa: E402
from spacy_dallmi.settings import DallmiSettings  # noqa: E402


def test_paired_t_interval_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653; half width 4.302653 / sqrt(3)
    result = paired_difference([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert result.n == 3
    assert result.mean_diff == pytest.approx(2.0)
    assert result.ci_low == pytest.approx(2.0 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert result.ci_high == pytest.approx(2.0 + 4.302653 / math.sqrt(3), abs=1e-5)


def test_paired_t_interval_matches_scipy_ttest_rel():
    rng = numpy.random.default_rng(0)
    baseline = rng.normal(50, 5, size=7)
    method = baseline + rng.normal(1.5, 2.0, size=7)
    result = paired_difference(list(method), list(baseline))
    interval = scipy_stats.ttest_rel(method, baseline).confidence_interval(0.95)
    assert result.ci_low == pytest.approx(interval.low)
    assert result.ci_high == pytest.approx(interval.high)


def test_wilcoxon_exact_p_values_by_hand():
    # n = 5, all differences positive: W- = 0, exact two-sided p = 2 * 1/32.
    assert paired_difference([2, 3, 4, 5, 6], [1, 1, 1, 1, 1]).p_wilcoxon == pytest.approx(0.0625)
    # The smallest |difference| negative: W- = 1, P(W <= 1) = 2/32, two-sided p = 0.125.
    diffs = [-0.5, 1.0, 2.0, 3.0, 4.0]
    result = paired_difference(diffs, [0.0] * 5)
    assert result.p_wilcoxon == pytest.approx(0.125)


def test_undefined_statistics_are_none():
    single = paired_difference([3.0], [1.0])
    assert (single.mean_diff, single.ci_low, single.ci_high, single.p_wilcoxon) == (
        2.0,
        None,
        None,
        None,
    )
    assert paired_difference([1.0, 2.0], [1.0, 2.0]).p_wilcoxon is None
    with pytest.raises(ValueError, match="length"):
        paired_difference([1.0], [1.0, 2.0])


def test_recovery_needs_a_gap_of_three_points():
    # in points, as the summaries print it; the report passes fractions (points=100)
    assert recovery(55.0, 50.0, 60.0, points=1, decimals=0) == "50%"
    assert recovery(40.0, 50.0, 60.0, points=1, decimals=0) == "-100%"
    assert recovery(33.4, 50.5, 52.2, points=1, decimals=0) == "n/a (gap 1.7)"
    assert recovery(0.55, 0.50, 0.60) == "50.0%"
    assert recovery(0.334, 0.505, 0.522) == "n/a (gap 1.7)"


def test_method_lists_must_match_the_registry():
    assert registered(("none", "dallmi")) == ("none", "dallmi")
    with pytest.raises(ValueError, match="Unknown method"):
        registered(("none", "dalmi"))
    with pytest.raises(ValueError, match="in that order"):
        registered({"dallmi": 1, "none": 2}, exactly=("none", "dallmi"))
    assert as_registered(dict(METHODS)) == METHODS
    with pytest.raises(ValueError, match="in that order"):
        as_registered({name: METHODS[name] for name in reversed(METHODS)})
    with pytest.raises(ValueError, match="ft_full.*disagrees"):
        as_registered({**METHODS, "ft_full": Method("finetune.cfg", "partial")})
    with pytest.raises(ValueError, match="dallmi_lambda0.*disagrees"):
        as_registered({**METHODS, "dallmi_lambda0": Method("adapt.cfg", "partial", tuned=True)})


def test_selection_keeps_the_source_model_and_prefers_earlier_ties():
    def record(epoch, pu, ap):
        return {"epoch": epoch, "val": {"r70": {"pu_score": pu, "partial_ap": ap}}, "test": {}}

    records = [record(0, 0.30, 0.5), record(1, 0.20, 0.6), record(2, 0.30, 0.6)]
    assert select(records, "r70", "pu_score")["epoch"] == 0
    assert select(records, "r70", "partial_ap")["epoch"] == 1


def test_guarded_selection_ships_only_candidates_the_guard_score_does_not_rank_below_the_source():
    def record(epoch, pu, ap, test):
        return {"epoch": epoch, "val": {"r70": {"pu_score": pu, "partial_ap": ap}}, "test": test}

    source, worse, better = (
        record(0, 0.3, 0.5, "s"),
        record(1, 0.2, 0.9, "w"),
        record(2, 0.3, 0.7, "b"),
    )
    blends = [{"alpha": 0.5, "val": {"r70": {"pu_score": 0.4, "partial_ap": 0.8}}, "test": "x"}]
    records = [source, worse, better]
    # unguarded, partial AP takes epoch 1, whose PU score is below the source's
    assert select(records, "r70", "partial_ap")["test"] == "w"
    assert select(records, "r70", "partial_ap", guard="pu_score")["test"] == "b"
    shipped = select(records, "r70", "partial_ap", guard="pu_score", blends=blends)
    assert (shipped["test"], shipped["alpha"]) == ("x", 0.5)
    # when no candidate holds the guard score, the source ships
    low = [source, record(1, 0.1, 0.9, "w")]
    assert select(low, "r70", "partial_ap", guard="pu_score", blends=[])["test"] == "s"


def test_a_weight_average_is_a_shipped_candidate_between_the_blends_and_the_checkpoint():
    def record(epoch, ap, test):
        return {"epoch": epoch, "val": {"r70": {"pu_score": 0.5, "partial_ap": ap}}, "test": test}

    records = [record(0, 0.5, "s"), record(1, 0.7, "e1"), record(2, 0.6, "e2")]
    blends = [{"alpha": 0.5, **record(2, 0.6, "x")}]
    average = {"from_epoch": 1, **record(2, 0.8, "avg")}
    shipped = select(records, "r70", "partial_ap", blends=blends, averages=[average])
    assert (shipped["test"], shipped["average_from"], shipped["epoch"]) == ("avg", 1, 2)
    # a tie with the checkpoint goes to the average, one with a blend to the blend
    tied = {**average, "val": {"r70": {"pu_score": 0.5, "partial_ap": 0.7}}}
    assert select(records, "r70", "partial_ap", blends=blends, averages=[tied])["test"] == "avg"
    tied["val"]["r70"]["partial_ap"] = 0.6
    low = [record(0, 0.5, "s"), record(1, 0.6, "e1")]
    assert select(low, "r70", "partial_ap", blends=blends, averages=[tied])["test"] == "x"
    # without averages, the run ships what it shipped before
    assert select(records, "r70", "partial_ap", blends=blends)["test"] == "e1"


def _write_run(
    folder: Path, method: str, seed: int, ratio, macro_ap: float, shipped_ap=None
) -> None:
    """A run file as paired.py writes it: the source (epoch 0), one trained epoch that scores
    ``macro_ap`` and, with ``shipped_ap``, a blend that scores best on validation and ships."""
    test = {"macro_ap": macro_ap, "macro_f": 0.5, "ece": 0.1, "macro_ap_rounded": 0.4}

    def val(score):
        return {"r70": {"pu_score": score, "partial_ap": score}}

    source_test = test if method == "none" else {**test, "macro_ap": 0.3}
    source = {"epoch": 0, "val": val(0.0), "test": source_test}
    epochs = [source] if method == "none" else [source, {"epoch": 1, "val": val(0.1), "test": test}]
    run = {"key": f"s{seed}_{method}", "method": method, "seed": seed, "ratio": ratio}
    blends = []
    if shipped_ap is not None:  # a partial-label run with blends of the source
        blends = [{"alpha": 0.5, "val": val(0.2), "test": {**test, "macro_ap": shipped_ap}}]
        run["blends"] = blends
    run.update(summarise_records(epochs, ["r70"], blends), epochs=epochs)
    (folder / f"s{seed}_{method}.json").write_text(json.dumps(run), encoding="utf8")


def test_summary_records_are_paired_by_seed(tmp_path):
    folder = tmp_path / "paired_emotions"
    folder.mkdir()
    partial = [0.40, 0.45, 0.50]
    dallmi = [0.44, 0.46, 0.58]
    for seed in range(3):
        _write_run(folder, "ft_partial", seed, 0.7, partial[seed], shipped_ap=0.5)
        _write_run(folder, "dallmi", seed, 0.7, dallmi[seed], shipped_ap=dallmi[seed] + 0.1)
        _write_run(folder, "none", seed, None, 0.30)
    records = summary_records("emotions", load_dataset_runs(folder))
    by_method = {r["method"]: r for r in records if r["selection"] == "last"}
    assert set(by_method) == {"none", "ft_partial", "dallmi"}
    row = by_method["dallmi"]
    keys = {"dataset", "ratio", "method", "baseline", "n_seeds", "mean", "mean_diff", "model"}
    assert set(row) == keys | {"ci_low", "ci_high", "p_wilcoxon", "selection"} | {
        "source_dev_macro_ap"
    }
    # the shipped records read the shipped candidates; `none` ships itself
    shipped = {r["method"]: r for r in records if r["selection"] == "shipped"}
    assert shipped["dallmi"]["mean"] == pytest.approx(100 * numpy.mean(dallmi) + 10, abs=0.01)
    assert shipped["dallmi"]["mean_diff"] == pytest.approx(
        100 * (numpy.mean(dallmi) + 0.1 - 0.5), abs=0.01
    )
    assert shipped["none"]["mean"] == pytest.approx(30.0)
    assert (row["dataset"], row["ratio"], row["baseline"], row["n_seeds"]) == (
        "emotions",
        0.7,
        "ft_partial",
        3,
    )
    diffs = 100 * (numpy.array(dallmi) - numpy.array(partial))
    assert row["mean"] == pytest.approx(100 * numpy.mean(dallmi), abs=0.01)
    assert row["mean_diff"] == pytest.approx(diffs.mean(), abs=0.01)
    interval = scipy_stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert row["ci_low"] == pytest.approx(interval.low, abs=0.01)
    assert row["ci_high"] == pytest.approx(interval.high, abs=0.01)
    assert by_method["none"]["mean"] == pytest.approx(30.0)


def test_the_ceiling_is_the_candidate_best_on_test_whatever_validation_says(tmp_path):
    folder = tmp_path / "paired_emotions"
    folder.mkdir()
    # seed 0: the blend is best on test, but not on validation, so it is not what ships
    _write_run(folder, "dallmi", 0, 0.7, 0.60, shipped_ap=0.70)
    run = json.loads((folder / "s0_dallmi.json").read_text(encoding="utf8"))
    run["blends"][0]["val"]["r70"] = {"pu_score": -1.0, "partial_ap": -1.0}
    run.update(summarise_records(run["epochs"], ["r70"], run["blends"]))
    (folder / "s0_dallmi.json").write_text(json.dumps(run), encoding="utf8")
    # seed 1: the trained epoch is best on test (0.65 against the blend's 0.55)
    _write_run(folder, "dallmi", 1, 0.7, 0.65, shipped_ap=0.55)
    runs = load_dataset_runs(folder)["r70"]
    assert scores(runs, "r70", "dallmi", "ceiling") == pytest.approx({0: 70.0, 1: 65.0})
    assert scores(runs, "r70", "dallmi", "shipped_partial_ap_guarded") == pytest.approx(
        {0: 60.0, 1: 55.0}
    )


def test_a_setting_recorded_later_counts_at_its_default(tmp_path):
    from summarize import mixed_settings

    folder = tmp_path / "paired_pubmed"
    folder.mkdir()
    older = {"objective": "bce", "label_smoothing": 0.0}
    for seed, settings in enumerate([older, {**older, "teacher_weight": 0.0}, older]):
        _write_run(folder, "ft_partial", seed, 0.7, 0.5)
        path = folder / f"s{seed}_ft_partial.json"
        run = json.loads(path.read_text(encoding="utf8"))
        run["protocol"] = {"settings": settings}
        path.write_text(json.dumps(run), encoding="utf8")
    runs = load_dataset_runs(folder)["r70"]
    assert runs[("ft_partial", 0)]["protocol"]["settings"]["teacher_weight"] == 0.0
    assert not mixed_settings(runs, "ft_partial")
    # a setting changed away from its default is a different configuration
    run = json.loads((folder / "s2_ft_partial.json").read_text(encoding="utf8"))
    run["protocol"]["settings"]["teacher_weight"] = 1.0
    (folder / "s2_ft_partial.json").write_text(json.dumps(run), encoding="utf8")
    assert mixed_settings(load_dataset_runs(folder)["r70"], "ft_partial")


def test_teacher_calibration_stored_before_it_existed_matters_with_teacher_split_only(tmp_path):
    from paired import existing
    from summarize import mixed_settings

    folder = tmp_path / "paired_pubmed"
    folder.mkdir()
    for method, split in (("ft_partial", False), ("dallmi", True)):
        for seed in (0, 1):
            _write_run(folder, method, seed, 0.7, 0.5)
            path = folder / f"s{seed}_{method}.json"
            run = json.loads(path.read_text(encoding="utf8"))
            settings = {**DallmiSettings().to_dict(), "objective": "dallmi", "teacher_split": split}
            settings["teacher_weight"] = 1.0
            if seed == 0:  # made before the setting existed
                del settings["teacher_calibration"]
            run["protocol"] = {"settings": settings}
            path.write_text(srsly.json_dumps(run), encoding="utf8")  # as paired.py writes
    runs = load_dataset_runs(folder)["r70"]
    assert not mixed_settings(runs, "ft_partial")  # no split: the cut-off changes nothing
    assert mixed_settings(runs, "dallmi")  # the older run had no calibration test
    assert runs[("dallmi", 0)]["protocol"]["settings"]["teacher_calibration"] == 0.0
    defaults = {**DallmiSettings().to_dict(), "teacher_weight": 1.0}  # teacher_calibration 0.5
    split = {"settings": {**defaults, "objective": "dallmi", "teacher_split": True}}
    with pytest.raises(SystemExit, match="made with other settings"):
        existing(folder / "s0_dallmi.json", split)
    assert existing(folder / "s1_dallmi.json", split)
    no_split = {"settings": {**defaults, "objective": "dallmi", "teacher_split": False}}
    assert existing(folder / "s0_ft_partial.json", no_split)


def test_aad_distillation_is_a_bernoulli_kl():
    import torch
    from aad import bernoulli_distillation

    # 2 documents x 3 labels: not square, so summing over the wrong axis gives another value.
    teacher = torch.tensor([[2.0, -1.0, 4.0], [0.5, 3.0, -2.0]])
    assert bernoulli_distillation(teacher, teacher, 20.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(2, 3)
    p, q = torch.sigmoid(teacher / 2.0), torch.tensor(0.5)
    kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    # "sum": the KL of the label sets (sum over labels), averaged over documents.
    expected = 4.0 * kl.sum(dim=1).mean().item()
    assert bernoulli_distillation(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-5)
    expected_mean = 4.0 * kl.mean().item()
    got_mean = bernoulli_distillation(student, teacher, 2.0, "mean").item()
    assert got_mean == pytest.approx(expected_mean, rel=1e-5)
    with pytest.raises(ValueError, match="distillation_reduction"):
        bernoulli_distillation(student, teacher, 2.0, "max")


def test_macro_f1_at_one_half_is_spacys_macro_f():
    from spacy.scorer import Scorer
    from spacy.tokens import Doc
    from spacy.training import Example
    from spacy.vocab import Vocab
    from stats import macro_f1

    rng = numpy.random.default_rng(3)
    labels = ["a", "b", "c", "d"]
    probs = rng.random((40, 4))
    probs[:5, 1] = 0.5  # on the threshold: counts as predicted positive in both
    truth = (rng.random((40, 4)) < 0.3).astype(float)
    truth[:, 3] = 0.0  # a label without a true positive scores 0 in both
    examples = []
    for row_p, row_t in zip(probs, truth):
        predicted, reference = Doc(Vocab(), words=["x"]), Doc(Vocab(), words=["x"])
        predicted.cats = dict(zip(labels, map(float, row_p)))
        reference.cats = dict(zip(labels, map(float, row_t)))
        examples.append(Example(predicted, reference))
    spacy_f = Scorer.score_cats(examples, "cats", labels=labels, multi_label=True)["cats_macro_f"]
    assert macro_f1(probs, truth, [0.5] * 4) == pytest.approx(spacy_f)
    # a per-label cut: label a's threshold above every score gives it F1 0
    by_hand = [0.0]
    for column in (1, 2, 3):
        predicted = probs[:, column] >= 0.5
        tp = (predicted & (truth[:, column] == 1)).sum()
        denominator = predicted.sum() + truth[:, column].sum()
        by_hand.append(2 * tp / denominator if tp else 0.0)
    assert macro_f1(probs, truth, [1.1, 0.5, 0.5, 0.5]) == pytest.approx(numpy.mean(by_hand))
    with pytest.raises(ValueError, match="thresholds"):
        macro_f1(probs, truth, [0.5] * 3)


def test_overview_rewrites_only_the_marked_section(tmp_path):
    from summarize import OVERVIEW_END, OVERVIEW_START, overview, replace_marked

    record = {"dataset": "emotions", "ratio": 0.7, "baseline": "ft_partial", "n_seeds": 5,
              "selection": "last", "model": "last", "source_dev_macro_ap": 81.23}  # fmt: skip
    records = [
        {**record, "method": "ft_partial", "mean": 60.8, "mean_diff": None},
        {**record, "method": "dallmi", "mean": 61.7, "mean_diff": 0.9, "ci_low": -0.04,
         "ci_high": 1.9},
    ]  # fmt: skip
    table = overview(records)
    assert "| `dallmi` | 61.7 (5)<br>+0.9 [-0.0, +1.9] |" in table
    assert "| `ft_partial` | 60.8 (5) |" in table
    assert "last epoch" in table and "dev macro AP at their best epoch: 81.2" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{OVERVIEW_START}\nold\n{OVERVIEW_END}\nafter\n", encoding="utf8")
    assert replace_marked(readme, table)
    text = readme.read_text(encoding="utf8")
    assert text.startswith("before\n") and text.endswith(f"{OVERVIEW_END}\nafter\n")
    assert "old" not in text and table in text
    readme.write_text("no markers\n", encoding="utf8")
    assert not replace_marked(readme, table)


def test_committed_results_hold_no_machine_paths():
    """Reports name files relative to the project or run folder, never this machine's."""
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    machine = str(results.parents[2])  # the folder that holds the checkout and shared/
    leaks = []
    for path in sorted(results.rglob("*")):
        if path.suffix in (".json", ".md", ".txt"):
            text = path.read_text(encoding="utf8")
            if machine in text or "/tmp/" in text:
                leaks.append(path.relative_to(results))
    assert not leaks, leaks

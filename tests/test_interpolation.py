"""WiSE-FT interpolation, checked weight by weight against a blend computed here."""

import numpy as np
import pytest
import torch
from thinc.api import fix_random_seed

from spacy_dallmi.architecture import get_hf_objects
from spacy_dallmi.interpolation import check_alpha, interpolate_into

from .util import LABELS, make_examples, make_nlp, toy_texts

TEXTS = ["happy day", "scared and mad today", "a sad and long story about nothing"]


def pipeline(tiny_bert, seed, noise=0.0, labels=LABELS):
    fix_random_seed(seed)
    nlp = make_nlp(tiny_bert)
    rows = [(text, {label: cats.get(label, 0.0) for label in labels})
            for text, cats in toy_texts(12, seed=seed)]  # fmt: skip
    nlp.initialize(lambda: make_examples(nlp, rows))
    if noise:
        with torch.no_grad():
            for param in get_hf_objects(nlp.get_pipe("textcat").model).transformer.parameters():
                param.add_(noise * torch.randn_like(param))
    return nlp


def probabilities(nlp):
    return np.array([[doc.cats[label] for label in LABELS] for doc in nlp.pipe(TEXTS)])


def weights(nlp):
    model = nlp.get_pipe("textcat").model
    state = {k: v.clone() for k, v in get_hf_objects(model).transformer.state_dict().items()}
    head = model.layers[2]
    return state, {name: head.get_param(name).copy() for name in ("W", "b")}


@pytest.fixture(scope="module")
def pair(tiny_bert):
    return pipeline(tiny_bert, 0), pipeline(tiny_bert, 1, noise=0.05)


def test_every_weight_is_the_blend(tiny_bert, pair):
    source, adapted = pair
    (src_state, src_head), (adp_state, adp_head) = weights(source), weights(adapted)
    target = pipeline(tiny_bert, 2)
    interpolate_into(target, source, adapted, 0.3)
    state, head = weights(target)
    assert set(state) == set(src_state)
    for key, value in state.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.7 * src_state[key] + 0.3 * adp_state[key], atol=1e-6)
        else:  # integer buffers (position ids) are equal in both and kept
            assert torch.equal(value, adp_state[key])
    for name in ("W", "b"):
        assert np.allclose(head[name], 0.7 * src_head[name] + 0.3 * adp_head[name], atol=1e-6)
    assert any(not torch.equal(src_state[k], adp_state[k]) for k in src_state)  # a real blend


def test_the_ends_are_the_two_models_and_the_middle_is_neither(tiny_bert, pair):
    source, adapted = pair
    target = pipeline(tiny_bert, 3)
    interpolate_into(target, source, adapted, 0)
    assert np.allclose(probabilities(target), probabilities(source), atol=1e-6)
    interpolate_into(target, source, adapted, 1)
    assert np.allclose(probabilities(target), probabilities(adapted), atol=1e-6)
    interpolate_into(target, source, adapted, 0.5)
    middle = probabilities(target)
    assert not np.allclose(middle, probabilities(source), atol=1e-4)
    assert not np.allclose(middle, probabilities(adapted), atol=1e-4)
    # blending into the adapted pipeline itself gives the same model
    copy = pipeline(tiny_bert, 1, noise=0.0)
    interpolate_into(copy, source, adapted, 1)
    interpolate_into(copy, source, copy, 0.5)
    assert np.allclose(probabilities(copy), middle, atol=1e-6)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, True, "0.5", None, float("nan")])
def test_an_alpha_outside_0_1_is_one_line_naming_it(alpha):
    with pytest.raises(ValueError, match=r"^alpha must be a number in \[0, 1\]"):
        check_alpha(alpha)


def test_pipelines_with_other_labels_are_refused(tiny_bert, pair):
    source, _ = pair
    other = pipeline(tiny_bert, 4, labels=LABELS[:-1])
    with pytest.raises(ValueError, match="same labels"):
        interpolate_into(pipeline(tiny_bert, 5), source, other, 0.5)

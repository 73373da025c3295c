"""MixUp: pair sampling, the batched interpolation, gradient flow and pass counting."""

import numpy
import pytest
import torch
from thinc.api import fix_random_seed

from spacy_dallmi.architecture import forward_embeddings, get_hf_objects, tokenize
from spacy_dallmi.mixup import plan_mixup

from .util import make_examples, make_nlp, toy_texts


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory):
    """A tiny BERT without internal dropout, so two updates differ only by design."""
    from transformers import BertConfig

    from .conftest import build_tiny_bert

    folder = build_tiny_bert(tmp_path_factory.mktemp("bert_no_dropout"))
    config = BertConfig.from_pretrained(str(folder))
    config.hidden_dropout_prob = 0.0
    config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(str(folder))
    return str(folder)


def test_plan_draws_one_pair_per_label_with_both_kinds():
    positives = numpy.array(
        [[1, 0, 1, 0], [0, 0, 1, 0], [1, 0, 1, 0], [0, 0, 1, 1]], dtype="float32"
    )
    plan = plan_mixup(positives, numpy.random.default_rng(0), 0.3, 0.3)
    # label 1 has no positive, label 2 has no unlabeled document
    assert plan.labels.tolist() == [0, 3]
    for label, first, second in zip(plan.labels, plan.positive, plan.unlabeled):
        assert positives[first, label] == 1.0 and positives[second, label] == 0.0
    assert ((plan.weight > 0) & (plan.weight < 1)).all()
    again = plan_mixup(positives, numpy.random.default_rng(0), 0.3, 0.3)
    assert again.positive.tolist() == plan.positive.tolist()
    assert again.weight.tolist() == plan.weight.tolist()


def test_interpolated_rows_match_their_sources(tiny_bert):
    nlp = make_nlp(tiny_bert)
    nlp.initialize(lambda: make_examples(nlp, toy_texts(8)))
    model = nlp.get_pipe("textcat").model
    docs = [nlp.make_doc(t) for t in ["happy glad day", "sad cry time", "rage"]]
    tokens = tokenize(model, docs)
    plain = model.predict(docs)
    first, second = numpy.array([0, 1, 2]), numpy.array([1, 0, 2])
    logits, _ = forward_embeddings(
        model, tokens, first, second, numpy.array([1.0, 0.0, 0.3]), is_train=False
    )
    # the batch's own rows through inputs_embeds equal the input_ids path
    numpy.testing.assert_allclose(logits[:3], plain, atol=1e-5)
    # weight 1 gives the first doc, weight 0 the second, a doc mixed with itself is itself
    numpy.testing.assert_allclose(logits[3], plain[0], atol=1e-5)
    numpy.testing.assert_allclose(logits[4], plain[0], atol=1e-5)
    numpy.testing.assert_allclose(logits[5], plain[2], atol=1e-5)


def embedding_gradient(nlp, examples, mixup_lambda, location="word_embeddings"):
    textcat = nlp.get_pipe("textcat")
    textcat.configure(mixup_lambda=mixup_lambda, mixup_location=location, seed=3)
    transformer = get_hf_objects(textcat.model).transformer
    for param in transformer.parameters():
        param.grad = None
    fix_random_seed(0)
    textcat.update(examples, drop=0.0)
    grad = transformer.get_input_embeddings().weight.grad.detach().clone()
    for param in transformer.parameters():
        param.grad = None
    return grad


def test_mixup_sends_gradient_into_word_embeddings(no_dropout_bert):
    nlp = make_nlp(no_dropout_bert, objective="dallmi")
    examples = make_examples(nlp, toy_texts(12, seed=1))
    nlp.initialize(lambda: examples)
    without = embedding_gradient(nlp, examples, 0.0)
    with_mixup = embedding_gradient(nlp, examples, 1.0)
    repeat = embedding_gradient(nlp, examples, 1.0)
    assert torch.equal(with_mixup, repeat), "same seed, same gradient"
    assert not torch.allclose(with_mixup, without), "MixUp must add gradient"
    assert torch.isfinite(with_mixup).all()


@pytest.mark.parametrize("location", ["encoder", "sentence"])
def test_other_locations_add_gradient_too(no_dropout_bert, location):
    nlp = make_nlp(no_dropout_bert, objective="dallmi")
    examples = make_examples(nlp, toy_texts(12, seed=2))
    nlp.initialize(lambda: examples)
    without = embedding_gradient(nlp, examples, 0.0, location)
    with_mixup = embedding_gradient(nlp, examples, 1.0, location)
    assert not torch.allclose(with_mixup, without)


@pytest.mark.parametrize(
    "objective,location",
    [("bce", "word_embeddings"), ("dallmi", "word_embeddings"), ("dallmi", "encoder")],
)
def test_an_update_runs_at_most_two_backbone_passes(tiny_bert, objective, location):
    nlp = make_nlp(tiny_bert, objective=objective, mixup_location=location)
    examples = make_examples(nlp, toy_texts(16, seed=3))
    nlp.initialize(lambda: examples)
    transformer = get_hf_objects(nlp.get_pipe("textcat").model).transformer
    calls = []
    handle = transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        nlp.update(examples, sgd=None)
    finally:
        handle.remove()
    assert 1 <= len(calls) <= 2


def reference_step_loss(transformer, tokens, weights, bias, positives, plan, mixup_lambda):
    """DESIGN section 1 written directly in torch: the step loss of one DALLMi update."""
    ids = torch.as_tensor(tokens.input_ids, dtype=torch.long)
    mask = torch.as_tensor(tokens.attention_mask, dtype=torch.long)

    def classify(embeds, attention):
        hidden = transformer(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        keep = attention.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * keep).sum(dim=1) / keep.sum(dim=1)
        return pooled @ weights.T + bias

    vectors = transformer.get_input_embeddings()(ids)
    probs = torch.sigmoid(classify(vectors, mask))
    known = torch.as_tensor(positives) == 1.0
    loss = torch.zeros(())
    for label in range(positives.shape[1]):
        pos, unl = known[:, label], ~known[:, label]
        if pos.any():
            unl_term = probs[unl, label].mean() if unl.any() else torch.zeros(())
            loss = loss + unl_term - probs[pos, label].mean()
    mu = torch.as_tensor(plan.weight).view(-1, 1, 1)
    first, second = torch.as_tensor(plan.positive), torch.as_tensor(plan.unlabeled)
    mixed = mu * vectors[first] + (1 - mu) * vectors[second]
    q = torch.sigmoid(classify(mixed, torch.maximum(mask[first], mask[second])))
    labels = torch.as_tensor(plan.labels)
    target = mu.view(-1) + (1 - mu.view(-1)) * probs[second, labels].detach()
    return loss + mixup_lambda * ((target - q[torch.arange(len(plan)), labels]) ** 2).sum()


def test_dallmi_step_gradient_matches_a_torch_reference(no_dropout_bert):
    """The whole update (VPU + MixUp, one backbone pass) against a direct torch
    implementation: same loss value, same gradient on the embedding matrix and head."""
    nlp = make_nlp(no_dropout_bert, objective="dallmi")
    examples = make_examples(nlp, toy_texts(12, seed=4))
    nlp.initialize(lambda: examples)
    textcat = nlp.get_pipe("textcat")
    textcat.configure(mixup_lambda=0.7, seed=5)
    model = textcat.model
    transformer = get_hf_objects(model).transformer
    docs = [eg.predicted for eg in examples]
    positives = textcat._positives(examples)
    plan = plan_mixup(positives, numpy.random.default_rng(5), 0.3, 0.3)
    assert len(plan) == positives.shape[1]
    head = model.layers[2]
    weights = torch.tensor(head.get_param("W"), requires_grad=True)
    bias = torch.tensor(head.get_param("b"), requires_grad=True)
    for param in transformer.parameters():
        param.grad = None
    expected = reference_step_loss(
        transformer, tokenize(model, docs), weights, bias, positives, plan, 0.7
    )
    expected.backward()
    expected_embedding = transformer.get_input_embeddings().weight.grad.clone()
    for param in transformer.parameters():
        param.grad = None
    losses = {}
    textcat.update(examples, drop=0.0, losses=losses)
    numpy.testing.assert_allclose(losses["textcat"], expected.item(), rtol=1e-4)
    actual_embedding = transformer.get_input_embeddings().weight.grad
    torch.testing.assert_close(actual_embedding, expected_embedding, rtol=1e-3, atol=1e-6)
    numpy.testing.assert_allclose(head.get_grad("W"), weights.grad.numpy(), rtol=1e-3, atol=1e-6)
    numpy.testing.assert_allclose(head.get_grad("b"), bias.grad.numpy(), rtol=1e-3, atol=1e-6)

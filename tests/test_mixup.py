"""MixUp: pair sampling, the batched interpolation, gradient flow and pass counting."""

import numpy
import pytest
import torch
from thinc.api import NumpyOps, fix_random_seed

from spacy_dallmi import architecture, mixup
from spacy_dallmi.architecture import forward_embeddings, get_hf_objects, tokenize
from spacy_dallmi.mixup import MixPlan, mixup_consistency, plan_mixup
from spacy_dallmi.settings import DallmiSettings

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


def test_consistency_checks_each_pair_on_its_label_and_averages_the_pairs():
    """``mixup_consistency`` by hand (norm form): pair k's target is its mu plus (1 - mu)
    times the unlabeled doc's probability; only entry (k, label_k) gets gradient."""
    rng = numpy.random.default_rng(0)
    logits = rng.normal(0, 2, (5, 3)).astype("float32")
    mixed = rng.normal(0, 2, (4, 3)).astype("float32")
    labels, positive, unlabeled = numpy.array([[0, 0, 2, 2], [1, 2, 0, 3], [4, 3, 1, 1]])
    mu = numpy.array([0.2, 0.5, 0.9, 0.1], dtype="float32")
    plan = MixPlan(labels=labels, positive=positive, unlabeled=unlabeled, weight=mu)
    d_mixed, value = mixup_consistency(NumpyOps(), logits, mixed, plan, "norm", 0.6, 2)
    p, q = (1.0 / (1.0 + numpy.exp(-x.astype("float64"))) for x in (logits, mixed))
    rows = numpy.arange(4)
    target, q_k = mu + (1 - mu) * p[unlabeled, labels], q[rows, labels]
    assert value == pytest.approx(0.3 * ((target - q_k) ** 2).sum(), rel=1e-5)
    expected = numpy.zeros_like(d_mixed)
    expected[rows, labels] = 0.3 * -2 * (target - q_k) * q_k * (1 - q_k)
    numpy.testing.assert_allclose(d_mixed, expected, rtol=1e-5, atol=1e-7)
    empty = plan_mixup(numpy.zeros((5, 0)), rng, 1.0, 1.0)
    d_empty, nothing = mixup_consistency(NumpyOps(), logits, mixed[:0], empty, "norm", 0.6, 2)
    assert nothing == 0.0 and d_empty.shape == (0, 3)


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


@pytest.fixture(scope="module")
def counted_nlp(tiny_bert):
    """One initialised pipeline for the pass counts (no update here applies gradients)."""
    nlp = make_nlp(tiny_bert, objective="dallmi")
    examples = make_examples(nlp, toy_texts(16, seed=3))
    nlp.initialize(lambda: examples)
    return nlp, examples


@pytest.mark.parametrize(
    "settings",
    [
        {"objective": "bce"},
        {"objective": "dallmi", "mixup": False},
        {"objective": "dallmi", "mixup_location": "word_embeddings"},
        {"objective": "dallmi", "mixup_location": "encoder"},
        {"objective": "dallmi", "mixup_location": "sentence"},
        {"objective": "dallmi", "mixup_location": "word_embeddings", "mixup_pairs": 3},
        {"objective": "dallmi", "mixup_location": "encoder", "mixup_pairs": 3},
    ],
    ids=lambda settings: "-".join(str(value) for value in settings.values()),
)
def test_an_update_runs_exactly_one_backbone_pass(counted_nlp, settings, monkeypatch):
    """One encoder pass per update, whatever the objective and MixUp location, and the
    mixed rows enter where the location says: word-embedding rows go through the encoder
    and the head, pooled rows (``encoder``) through the head only, and ``sentence`` mixes
    logits after the head. (Without dropout the head is affine, so ``encoder`` and
    ``sentence`` give the same values; the row counts are what tells them apart.)"""
    nlp, examples = counted_nlp
    head_rows = []

    def counting(forward_head):
        def forward_head_counted(model, features, is_train=True):
            head_rows.append(features.shape[0])
            return forward_head(model, features, is_train)

        return forward_head_counted

    for module in (architecture, mixup):
        monkeypatch.setattr(module, "forward_head", counting(module.forward_head))
    textcat = nlp.get_pipe("textcat")
    textcat.configure(DallmiSettings(**settings))
    transformer = get_hf_objects(textcat.model).transformer
    rows = []
    handle = transformer.register_forward_hook(
        lambda module, args, output: rows.append(output.last_hidden_state.shape[0])
    )
    try:
        nlp.update(examples, sgd=None)
    finally:
        handle.remove()
    assert len(rows) == 1, f"{len(rows)} backbone passes"
    positives = textcat._positives(examples)
    mixed_labels = int(((positives == 1).any(axis=0) & (positives == 0).any(axis=0)).sum())
    assert mixed_labels == len(textcat.labels)
    settings = textcat.settings
    mixes = settings.objective == "dallmi" and settings.mixup
    n_mixed = mixed_labels * settings.mixup_pairs if mixes else 0
    location = settings.mixup_location if mixes else None
    # word-embedding MixUp appends its mixed rows to the same encoder pass
    assert rows == [len(examples) + (n_mixed if location == "word_embeddings" else 0)]
    in_head = location in ("word_embeddings", "encoder")
    assert head_rows == [len(examples) + (n_mixed if in_head else 0)]


def reference_step_loss(
    transformer,
    tokens,
    weights,
    bias,
    positives,
    plan,
    mixup_scale,
    location="word_embeddings",
    positive_term="mean",
):
    """DESIGN section 1 written directly in torch: the step loss of one DALLMi update.

    ``mixup_scale`` multiplies the summed MixUp terms (lambda, over the pairs per label
    when there are several). ``location`` says what is mixed: the word embeddings, the
    pooled encoder output or the logits.
    """
    ids = torch.as_tensor(tokens.input_ids, dtype=torch.long)
    mask = torch.as_tensor(tokens.attention_mask, dtype=torch.long)

    def pool(embeds, attention):
        hidden = transformer(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        keep = attention.unsqueeze(-1).to(hidden.dtype)
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1)

    def head(pooled):
        return pooled @ weights.T + bias

    vectors = transformer.get_input_embeddings()(ids)
    pooled = pool(vectors, mask)
    logits = head(pooled)
    probs = torch.sigmoid(logits)
    known = torch.as_tensor(positives) == 1.0
    loss = torch.zeros(())
    for label in range(positives.shape[1]):
        pos, unl = known[:, label], ~known[:, label]
        if pos.any():
            unl_term = probs[unl, label].mean() if unl.any() else torch.zeros(())
            if positive_term == "mean":
                pos_term = probs[pos, label].mean()
            else:
                pos_term = torch.sqrt((probs[pos, label] ** 2).sum())
            loss = loss + unl_term - pos_term
    mu = torch.as_tensor(plan.weight)
    first, second = torch.as_tensor(plan.positive), torch.as_tensor(plan.unlabeled)

    def mix(rows):
        shape = (-1,) + (1,) * (rows.dim() - 1)
        return mu.view(shape) * rows[first] + (1 - mu.view(shape)) * rows[second]

    if location == "word_embeddings":
        mixed_logits = head(pool(mix(vectors), torch.maximum(mask[first], mask[second])))
    elif location == "encoder":
        mixed_logits = head(mix(pooled))
    else:
        mixed_logits = mix(logits)
    q = torch.sigmoid(mixed_logits)
    labels = torch.as_tensor(plan.labels)
    target = mu + (1 - mu) * probs[second, labels].detach()
    return loss + mixup_scale * ((target - q[torch.arange(len(plan)), labels]) ** 2).sum()


@pytest.mark.parametrize(
    "settings,pairs,scale",
    [
        ({"mixup_location": "word_embeddings"}, 1, 0.7),
        ({"mixup_location": "encoder"}, 1, 0.7),
        ({"mixup_location": "sentence"}, 1, 0.7),
        ({"positive_term": "l2"}, 1, 0.7),
        # k pairs per label, their terms averaged: lambda / k on the sum
        ({"mixup_pairs": 3}, 3, 0.7 / 3),
        ({"mixup_location": "sentence", "mixup_pairs": 2}, 2, 0.7 / 2),
        # warm-up over N updates: the first update uses lambda / N
        ({"mixup_warmup_steps": 4}, 1, 0.7 / 4),
    ],
    ids=["word_embeddings", "encoder", "sentence", "l2", "pairs3", "sentence-pairs2", "warmup4"],
)
def test_dallmi_step_value_and_gradient_match_a_torch_reference(
    no_dropout_bert, settings, pairs, scale
):
    """The whole update (VPU + MixUp, one backbone pass) against a direct torch
    implementation: same loss value, same gradient on the embedding matrix and head.

    With dropout off the head is affine, so the ``encoder`` and ``sentence`` references
    agree with each other too; where the rows are mixed is checked by
    ``test_an_update_runs_exactly_one_backbone_pass``."""
    nlp = make_nlp(no_dropout_bert, objective="dallmi")
    examples = make_examples(nlp, toy_texts(12, seed=4))
    nlp.initialize(lambda: examples)
    textcat = nlp.get_pipe("textcat")
    textcat.configure(mixup_lambda=0.7, seed=5, **settings)
    model = textcat.model
    transformer = get_hf_objects(model).transformer
    docs = [eg.predicted for eg in examples]
    positives = textcat._positives(examples)
    plan = plan_mixup(positives, numpy.random.default_rng(5), 0.3, 0.3, pairs=pairs)
    assert len(plan) == pairs * positives.shape[1]
    head = model.layers[2]
    weights = torch.tensor(head.get_param("W"), requires_grad=True)
    bias = torch.tensor(head.get_param("b"), requires_grad=True)
    for param in transformer.parameters():
        param.grad = None
    expected = reference_step_loss(
        transformer,
        tokenize(model, docs),
        weights,
        bias,
        positives,
        plan,
        scale,
        location=textcat.settings.mixup_location,
        positive_term=textcat.settings.positive_term,
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

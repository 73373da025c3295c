"""Teacher targets: the source model's predictions as targets for unlabeled entries.

Losses are recomputed here with numpy from the step's own logits and the recorded teacher;
the posterior is Elkan & Noto's formula applied by hand.
"""

from pathlib import Path

import numpy
import pytest
import spacy

from spacy_dallmi import component
from spacy_dallmi.training import train_epochs

from .test_component import make_pipeline, pu_loss_by_hand
from .util import hide_positives, make_examples, toy_texts, write_docbin

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def bce_by_hand(logits, targets, mask):
    p = 1 / (1 + numpy.exp(-logits.astype("float64")))
    entries = -(targets * numpy.log(p) + (1 - targets) * numpy.log(1 - p))
    return float((entries * mask).sum() / max(mask.sum(), 1.0))


def pipeline_with_teacher(tiny_bert, **settings):
    nlp = make_pipeline(tiny_bert, **settings)
    examples = make_examples(nlp, hide_positives(toy_texts(12, seed=7), 0.5))
    optimizer = nlp.initialize(lambda: examples)
    textcat = nlp.get_pipe("textcat")
    textcat.set_teacher(examples)
    return nlp, textcat, examples, optimizer


def test_the_teacher_is_the_models_own_probabilities_or_their_posterior(tiny_bert):
    nlp, textcat, examples, _ = pipeline_with_teacher(tiny_bert, teacher_weight=0.5)
    texts = [eg.reference.text for eg in examples]
    probabilities = numpy.array([[doc.cats[label] for label in textcat.labels]
                                 for doc in nlp.pipe(texts)])  # fmt: skip
    assert textcat._teacher_targets(texts) == pytest.approx(probabilities, abs=1e-5)
    textcat.configure(teacher_target="posterior")
    textcat.set_teacher(examples)
    known = textcat._positives(examples).sum(axis=0)
    c = numpy.minimum(known / probabilities.sum(axis=0), 0.99)
    posterior = (1 - c) * probabilities / (1 - c * probabilities)
    assert textcat._teacher_targets(texts) == pytest.approx(posterior, abs=1e-5)
    assert (posterior <= probabilities + 1e-9).all() and c.max() > 0


def test_bce_targets_unlabeled_entries_with_the_teacher(tiny_bert):
    _, textcat, examples, _ = pipeline_with_teacher(tiny_bert, teacher_weight=0.4)
    texts = [eg.reference.text for eg in examples]
    logits = numpy.random.default_rng(0).normal(size=(len(examples), len(textcat.labels)))
    logits = logits.astype("float32")
    loss, d_logits = textcat.get_loss(examples, logits)
    truths, observed = textcat._truths(examples)
    targets = numpy.where(truths == 1.0, 1.0, 0.4 * textcat._teacher_targets(texts))
    assert loss == pytest.approx(bce_by_hand(logits, targets, observed), rel=1e-5)
    p = 1 / (1 + numpy.exp(-logits))
    assert d_logits == pytest.approx((p - targets) * observed / observed.sum(), abs=1e-6)


def test_dallmi_adds_the_weighted_teacher_bce_of_unlabeled_entries(tiny_bert, monkeypatch):
    nlp, textcat, examples, optimizer = pipeline_with_teacher(
        tiny_bert, objective="dallmi", mixup=False, teacher_weight=0.3
    )
    seen = []
    forward = component.forward_with_mixup

    def recording(model, tokens, plan, location):
        logits, mixed, backprop = forward(model, tokens, plan, location)
        seen.append(logits.copy())
        return logits, mixed, backprop

    monkeypatch.setattr(component, "forward_with_mixup", recording)
    teacher = textcat._teacher_targets([eg.reference.text for eg in examples])
    losses = nlp.update(examples, sgd=optimizer)
    (logits,) = seen
    positives = textcat._positives(examples)
    expected = pu_loss_by_hand(logits, positives, "norm")
    expected += 0.3 * bce_by_hand(logits, teacher, (positives == 0).astype(float))
    assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_without_a_teacher_the_update_is_one_line_naming_the_setting(tiny_bert):
    nlp = make_pipeline(tiny_bert, teacher_weight=0.5)
    examples = make_examples(nlp, toy_texts(8, seed=2))
    optimizer = nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="^teacher_weight = 0.5 of component 'textcat' needs"):
        nlp.update(examples, sgd=optimizer)


@pytest.mark.parametrize(
    "values,named",
    [({"teacher_weight": 1.5}, "teacher_weight"), ({"teacher_target": "oracle"}, "teacher_target")],
)
def test_bad_teacher_settings_name_the_setting(tiny_bert, values, named):
    with pytest.raises(ValueError, match=named):
        make_pipeline(tiny_bert, **values)


def test_a_sourced_run_trains_with_the_teacher(tiny_bert, tmp_path):
    """The adapt_sourced callback records the starting model's predictions as the teacher."""
    rows = toy_texts(24, seed=1)
    source_docs = write_docbin(tmp_path / "source.spacy", rows)
    target = hide_positives(toy_texts(24, seed=3), 0.5)
    overrides = {"paths.train": str(source_docs), "paths.dev": str(source_docs),
                 "paths.backbone": tiny_bert, "components.textcat.model.max_length": 32,
                 "training.batcher.size": 8}  # fmt: skip
    source = train_epochs(CONFIGS / "source.cfg", tmp_path / "source", 1, overrides=overrides)
    adapted = train_epochs(
        CONFIGS / "finetune.cfg", tmp_path / "ft", 1,
        overrides={"paths.source": str(source / "model-best"),
                   "paths.train": str(write_docbin(tmp_path / "t.spacy", target[:18])),
                   "paths.dev": str(write_docbin(tmp_path / "v.spacy", target[18:])),
                   "training.batcher.size": 8,
                   "initialize.before_init.settings.teacher_weight": 0.5,
                   "initialize.before_init.settings.teacher_target": "posterior"},
    )  # fmt: skip
    # the run would stop with "teacher_weight ... needs the source model's predictions" had
    # the adapt_sourced callback not recorded the teacher
    textcat = spacy.load(adapted / "model-last").get_pipe("textcat")
    assert (textcat.settings.teacher_weight, textcat.settings.teacher_target) == (0.5, "posterior")

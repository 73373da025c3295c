"""Teacher targets: the source model's predictions as targets for unlabeled entries.

Losses are recomputed here with numpy from the step's own logits and the recorded teacher;
the posterior is Elkan & Noto's formula applied by hand; the mixture posterior is checked
against a brute-force best-bin ratio, the logistic score equations and simulated SCAR data
with a known posterior.
"""

from pathlib import Path

import numpy
import pytest
import spacy

from spacy_dallmi import component, teacher
from spacy_dallmi.training import train_epochs

from .test_component import make_pipeline, pu_loss_by_hand
from .util import hide_positives, make_examples, toy_texts, write_docbin

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def bce_by_hand(logits, targets, mask):
    p = 1 / (1 + numpy.exp(-logits.astype("float64")))
    entries = -(targets * numpy.log(p) + (1 - targets) * numpy.log(1 - p))
    return float((entries * mask).sum() / max(mask.sum(), 1.0))


def record_logits(monkeypatch):
    """The list that collects the logits of every DALLMi forward pass from now on."""
    seen = []
    forward = component.forward_with_mixup

    def recording(model, tokens, plan, location):
        logits, mixed, backprop = forward(model, tokens, plan, location)
        seen.append(logits.copy())
        return logits, mixed, backprop

    monkeypatch.setattr(component, "forward_with_mixup", recording)
    return seen


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
    textcat.configure(teacher_target="mixture")
    textcat.set_teacher(examples)
    known = textcat._positives(examples).astype(bool)
    mixture = teacher.mixture_posterior(probabilities, known)
    assert textcat._teacher_targets(texts) == pytest.approx(mixture, abs=1e-4)


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
    seen = record_logits(monkeypatch)
    teacher = textcat._teacher_targets([eg.reference.text for eg in examples])
    losses = nlp.update(examples, sgd=optimizer)
    (logits,) = seen
    positives = textcat._positives(examples)
    expected = pu_loss_by_hand(logits, positives, "norm")
    expected += 0.3 * bce_by_hand(logits, teacher, (positives == 0).astype(float))
    assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("consistent", [0, 1, 2])
def test_teacher_split_trains_consistent_labels_by_the_teacher_and_the_rest_by_pu(
    tiny_bert, monkeypatch, consistent
):
    nlp, textcat, examples, optimizer = pipeline_with_teacher(
        tiny_bert, objective="dallmi", mixup=False, teacher_weight=0.7, teacher_split=True,
        teacher_target="posterior",
    )  # fmt: skip
    texts = [eg.reference.text for eg in examples]
    positives = textcat._positives(examples)
    probabilities = numpy.array([[doc.cats[label] for label in textcat.labels]
                                 for doc in nlp.pipe(texts)])  # fmt: skip
    calibrated = teacher.calibration(probabilities, positives) >= 0.5  # the default cut-off
    split = (probabilities.sum(axis=0) >= positives.sum(axis=0)) & calibrated
    assert textcat._split.tolist() == split.tolist()
    # force which labels count as consistent, to check both sides of the split
    split = numpy.arange(len(textcat.labels)) < consistent
    textcat._split = split
    seen = record_logits(monkeypatch)
    q = textcat._teacher_targets(texts)
    losses = nlp.update(examples, sgd=optimizer)
    (logits,) = seen
    expected = pu_loss_by_hand(logits, positives * ~split, "norm")
    targets = numpy.where(positives == 1.0, 1.0, q)
    # BCE over the teacher's labels, normalised by every entry as the bce objective is
    on_split = numpy.broadcast_to(split, positives.shape).astype(float)
    expected += 0.7 * bce_by_hand(logits, targets, on_split) * on_split.sum() / on_split.size
    assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "found,cut,trusted",
    [
        (0.3, 0.5, False),
        (0.7, 0.5, True),
        (0.3, 0.2, True),
        (0.5, 0.5, True),
        (float("nan"), 0.5, True),
    ],  # fmt: skip
)
def test_teacher_split_trusts_the_source_only_when_it_is_calibrated(
    tiny_bert, monkeypatch, found, cut, trusted
):
    nlp, textcat, examples, _ = pipeline_with_teacher(
        tiny_bert, objective="dallmi", teacher_weight=1.0, teacher_split=True,
        teacher_calibration=0.0,
    )  # fmt: skip
    texts = [eg.reference.text for eg in examples]
    probabilities = numpy.array([[doc.cats[label] for label in textcat.labels]
                                 for doc in nlp.pipe(texts)])  # fmt: skip
    positives = textcat._positives(examples)
    assert textcat.calibration == pytest.approx(teacher.calibration(probabilities, positives))
    per_label = probabilities.sum(axis=0) >= positives.sum(axis=0)
    assert per_label.any()  # the untrained model's p ~ 0.5 expects more than the known
    assert textcat._split.tolist() == per_label.tolist()  # 0: the per-label test alone
    monkeypatch.setattr(component, "calibration", lambda p, k: found)
    textcat.configure(teacher_calibration=cut)
    textcat.set_teacher(examples)
    assert textcat.calibration is found
    assert textcat._split.tolist() == (per_label & trusted).tolist()


def test_teacher_split_needs_the_pu_objective_and_is_off_without_a_teacher(tiny_bert, monkeypatch):
    with pytest.raises(ValueError, match="teacher_split .* objective = 'bce'"):
        make_pipeline(tiny_bert, teacher_split=True, teacher_weight=1.0)
    # teacher_weight = 0: the PU loss on every label, and no teacher is needed
    nlp = make_pipeline(tiny_bert, objective="dallmi", mixup=False, teacher_split=True)
    examples = make_examples(nlp, hide_positives(toy_texts(12, seed=7), 0.5))
    optimizer = nlp.initialize(lambda: examples)
    seen = record_logits(monkeypatch)
    losses = nlp.update(examples, sgd=optimizer)
    positives = nlp.get_pipe("textcat")._positives(examples)
    expected = pu_loss_by_hand(seen[0], positives, "norm")
    assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_without_a_teacher_the_update_is_one_line_naming_the_setting(tiny_bert):
    nlp = make_pipeline(tiny_bert, teacher_weight=0.5)
    examples = make_examples(nlp, toy_texts(8, seed=2))
    optimizer = nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match="^teacher_weight = 0.5 of component 'textcat' needs"):
        nlp.update(examples, sgd=optimizer)


@pytest.mark.parametrize(
    "values,named",
    [
        ({"teacher_weight": 1.5}, "teacher_weight"),
        ({"teacher_target": "oracle"}, "teacher_target"),
        ({"teacher_calibration": -0.1}, "teacher_calibration"),
    ],  # fmt: skip
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
    # nnpu without a teacher: the callback estimates its priors from the source all the same
    # (without them the first update stops with "needs each label's share of positives")
    nnpu = train_epochs(
        CONFIGS / "adapt.cfg", tmp_path / "nnpu", 1,
        overrides={"paths.source": str(source / "model-best"),
                   "paths.train": str(tmp_path / "t.spacy"),
                   "paths.dev": str(tmp_path / "v.spacy"),
                   "training.batcher.size": 8,
                   "initialize.before_init.settings.loss_form": "nnpu",
                   "initialize.before_init.settings.teacher_weight": 0.0},
    )  # fmt: skip
    assert spacy.load(nnpu / "model-last").get_pipe("textcat").settings.loss_form == "nnpu"


def scar_sample(rng, n=2000, separation=2.0, share=0.3, known_share=0.3):
    """Scores of a label's docs (positives ~ N(separation, 1), negatives ~ N(0, 1)), which
    are positive, which of those are known (a random share), and the true posterior that an
    unlabeled doc is positive."""
    positive = rng.random(n) < share
    scores = numpy.where(positive, rng.normal(separation, 1, n), rng.normal(0, 1, n))
    known = positive & (rng.random(n) < known_share)
    unlabeled_share = (positive & ~known).sum() / (~known).sum()
    density = numpy.exp(-0.5 * (scores - separation) ** 2)
    other = numpy.exp(-0.5 * scores**2)
    truth = unlabeled_share * density / (unlabeled_share * density + (1 - unlabeled_share) * other)
    return scores, positive, known, unlabeled_share, truth


def share_by_hand(scores, known, least):
    """Scott's best-bin ratio by brute force: every threshold at a known positive's score
    that keeps at least ``least`` known positives at or above it."""
    ratios = []
    for t in scores[known]:
        above_known = (scores[known] >= t).sum()
        if above_known >= least:
            ratios.append(((scores[~known] >= t).mean()) / (above_known / known.sum()))
    return min(1.0, min(ratios))


@pytest.mark.parametrize("seed", range(8))
def test_mixture_share_is_the_best_bin_ratio(seed):
    rng = numpy.random.default_rng(seed)
    scores, _, known, _, _ = scar_sample(rng, n=int(rng.integers(50, 600)))
    scores = numpy.round(scores, 1)  # ties between known and unlabeled scores
    least = max(teacher.MIN_KNOWN, int(numpy.ceil(teacher.MIN_KNOWN_SHARE * known.sum())))
    least = min(least, known.sum())
    assert teacher.mixture_share(scores, known) == pytest.approx(
        share_by_hand(scores, known, least)
    )


def test_mixture_share_is_exact_when_positives_outscore_negatives():
    rng = numpy.random.default_rng(0)
    known_scores = rng.normal(5, 1, 40)
    hidden = numpy.repeat(known_scores, 2)  # two hidden twins per known positive
    negatives = rng.normal(-5, 1, 520)
    scores = numpy.concatenate([known_scores, hidden, negatives])
    known = numpy.arange(len(scores)) < 40
    assert teacher.mixture_share(scores, known) == pytest.approx(80 / 600)


def test_density_ratio_solves_the_logistic_score_equations():
    rng = numpy.random.default_rng(1)
    scores, _, known, _, _ = scar_sample(rng, n=500)
    ratio = teacher.density_ratio(scores, known)
    odds = known.mean() / (1 - known.mean())
    g = ratio * odds / (1 + ratio * odds)  # back to P(known | score)
    z = (scores - scores.mean()) / scores.std()
    slope = numpy.polyfit(z, numpy.log(ratio), 1)[0]
    assert (known - g).sum() == pytest.approx(0, abs=1e-6)
    assert ((known - g) * z).sum() == pytest.approx(1e-3 * slope, abs=1e-6)
    assert slope > 0  # known positives score higher than the unlabeled mass


@pytest.mark.parametrize("separation", [1.5, 2.0, 3.0])
def test_mixture_posterior_recovers_the_scar_posterior_whatever_the_calibration(separation):
    rng = numpy.random.default_rng(2)
    scores, positive, known, unlabeled_share, truth = scar_sample(rng, separation=separation)
    unlabeled = ~known
    found = []
    for scale, shift in [(1.0, 0.0), (0.5, -4.0), (1.5, 2.0)]:  # calibrated, under-, over-
        probabilities = 1 / (1 + numpy.exp(-(scale * scores + shift)))
        found.append(teacher.mixture_posterior(probabilities[:, None], known[:, None])[:, 0])
    assert found[1] == pytest.approx(found[0], abs=1e-4)
    assert found[2] == pytest.approx(found[0], abs=1e-4)
    q = found[0][unlabeled]
    assert numpy.abs(q - truth[unlabeled]).mean() < 0.1
    hidden = (positive & unlabeled).sum()
    assert 0.7 * hidden < q.sum() < 1.3 * hidden
    # the Elkan & Noto posterior of an underconfident source sends every target to ~0
    under = 1 / (1 + numpy.exp(-(0.5 * scores - 4.0)))
    assert teacher.posterior(under[:, None], known[:, None])[unlabeled].sum() < 0.2 * hidden


def test_a_label_without_known_positives_or_unlabeled_entries_keeps_the_source():
    probabilities = numpy.array([[0.2, 0.7], [0.6, 0.1], [0.9, 0.4]])
    known = numpy.array([[False, True], [False, True], [False, True]])
    assert teacher.mixture_posterior(probabilities, known) == pytest.approx(probabilities)


def test_calibration_is_expected_over_implied_positives_pooled_over_labels():
    rng = numpy.random.default_rng(3)
    columns = [scar_sample(rng, n=400, separation=s) for s in (1.0, 2.0, 3.0)]
    scores = numpy.stack([c[0] for c in columns], axis=1)
    known = numpy.stack([c[2] for c in columns], axis=1)
    known[:, 2] = False  # a label without known positives counts in neither sum
    probabilities = 1 / (1 + numpy.exp(-scores))
    expected = implied = 0.0
    for j in range(2):
        least = min(max(teacher.MIN_KNOWN, int(numpy.ceil(0.25 * known[:, j].sum()))),
                    known[:, j].sum())  # fmt: skip
        share = share_by_hand(scores[:, j], known[:, j], least)
        expected += probabilities[:, j].sum()
        implied += known[:, j].sum() + share * (~known[:, j]).sum()
    assert teacher.calibration(probabilities, known) == pytest.approx(expected / implied)
    assert numpy.isnan(teacher.calibration(probabilities, numpy.zeros_like(known)))


def test_calibration_tells_a_calibrated_source_from_an_underconfident_one():
    rng = numpy.random.default_rng(4)
    shares = numpy.array([0.1, 0.2, 0.3])
    columns = [scar_sample(rng, separation=2.0, share=share) for share in shares]
    scores = numpy.stack([c[0] for c in columns], axis=1)
    known = numpy.stack([c[2] for c in columns], axis=1)
    # P(positive | score) of the simulation: a source calibrated on these docs
    logits = numpy.log(shares / (1 - shares)) + 2.0 * scores - 2.0
    calibrated = 1 / (1 + numpy.exp(-logits))
    assert 0.8 < teacher.calibration(calibrated, known) < 1.25
    under = 1 / (1 + numpy.exp(-(logits - 2.0)))  # the same ranking, odds 7.4 times lower
    assert teacher.calibration(under, known) < 0.5
    # the per-label test alone would trust it: it expects at least the known positives
    assert (under.sum(axis=0) >= known.sum(axis=0)).all()


def test_density_ratio_stays_finite_when_known_positives_outscore_everything():
    """Separable scores made the Hessian singular and the full Newton step diverge
    (emotions seed 0: ``LinAlgError: Singular matrix``)."""
    rng = numpy.random.default_rng(0)
    scores = numpy.concatenate([rng.normal(3, 0.5, 6), rng.normal(-3, 1, 1794)])
    known = numpy.arange(len(scores)) < 6
    ratio = teacher.density_ratio(scores, known)
    assert numpy.isfinite(ratio).all()
    order = numpy.argsort(scores)
    assert (numpy.diff(ratio[order]) >= 0).all()  # increasing in the score
    q = teacher.mixture_posterior(1 / (1 + numpy.exp(-scores[:, None])), known[:, None])
    assert numpy.isfinite(q).all() and q[~known].sum() < 1.0  # π = 0: no unlabeled above


def test_teacher_refresh_steps_makes_the_trained_model_the_teacher(tiny_bert, monkeypatch):
    nlp, textcat, examples, optimizer = pipeline_with_teacher(
        tiny_bert, objective="dallmi", mixup=False, teacher_weight=1.0, teacher_refresh_steps=2
    )
    texts = [eg.reference.text for eg in examples]
    source = textcat._teacher_targets(texts)
    seen = record_logits(monkeypatch)
    nlp.update(examples, sgd=optimizer)
    nlp.update(examples, sgd=optimizer)
    assert textcat._teacher_targets(texts) == pytest.approx(source)  # 2 updates: no refresh
    after_two = numpy.array([[doc.cats[label] for label in textcat.labels]
                             for doc in nlp.pipe(texts)])  # fmt: skip
    assert not after_two == pytest.approx(source, abs=1e-4)  # the model has moved
    losses = nlp.update(examples, sgd=optimizer)  # the third update learns from the new teacher
    assert textcat._teacher_targets(texts) == pytest.approx(after_two, abs=1e-5)
    positives = textcat._positives(examples)
    expected = pu_loss_by_hand(seen[-1], positives, "norm")
    expected += bce_by_hand(seen[-1], after_two, (positives == 0).astype(float))
    assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    refreshed_at = []
    set_teacher = textcat.set_teacher
    monkeypatch.setattr(
        textcat, "set_teacher", lambda egs: (refreshed_at.append(textcat._step), set_teacher(egs))
    )
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    assert len(seen) == 7 and refreshed_at == [4, 6]  # before updates 5 and 7, not others
    assert not textcat._teacher_targets(texts) == pytest.approx(after_two)


def test_nnpu_takes_its_priors_from_the_sources_ranking(tiny_bert, monkeypatch):
    from .test_loss import nnpu_by_hand

    nlp = make_pipeline(tiny_bert, objective="dallmi", mixup=False, loss_form="nnpu")
    examples = make_examples(nlp, hide_positives(toy_texts(16, seed=5), 0.5))
    optimizer = nlp.initialize(lambda: examples)
    textcat = nlp.get_pipe("textcat")
    with pytest.raises(ValueError, match="loss_form = 'nnpu'.*adapt_sourced"):
        nlp.update(examples, sgd=optimizer)
    texts = [eg.reference.text for eg in examples]
    probabilities = numpy.array([[doc.cats[label] for label in textcat.labels]
                                 for doc in nlp.pipe(texts)])  # fmt: skip
    textcat.set_teacher(examples)
    positives = textcat._positives(examples)
    shares = teacher.unlabeled_shares(probabilities, positives.astype(bool))
    assert textcat._priors == pytest.approx(numpy.nan_to_num(shares), abs=1e-4)
    assert (textcat._priors > 0).any()
    seen = record_logits(monkeypatch)
    losses = nlp.update(examples, sgd=optimizer)
    (logits,) = seen
    expected = nnpu_by_hand(logits.astype("float64"), positives, textcat._priors)
    assert losses["textcat"] == pytest.approx(expected, rel=1e-5, abs=1e-6)

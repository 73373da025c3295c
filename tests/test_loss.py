"""The losses against an independent per-label computation and finite differences."""

import math

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_dallmi.loss import MixUpConsistency, VariationalPULoss, largest_losses, masked_bce


def label_sets(logits: numpy.ndarray, positives: numpy.ndarray):
    """Per label with a positive: its index and its positives' and unlabeled entries'
    probabilities, as Python floats."""
    for label in range(logits.shape[1]):
        probs = [1.0 / (1.0 + math.exp(-z)) for z in logits[:, label]]
        pos = [p for p, y in zip(probs, positives[:, label]) if y == 1.0]
        unl = [p for p, y in zip(probs, positives[:, label]) if y != 1.0]
        if pos:
            yield label, pos, unl


def reference_pu_loss(
    logits: numpy.ndarray, positives: numpy.ndarray, form: str, positive_term: str = "mean"
) -> float:
    """DESIGN section 1, written label by label with plain Python floats; ``l2`` is the
    reference code's positive term ``sqrt(sum_P p^2)``."""
    total = 0.0
    for _, pos, unl in label_sets(logits, positives):
        if form == "norm":
            unl_term = sum(unl) / len(unl) if unl else 0.0
            if positive_term == "l2":
                total += unl_term - math.sqrt(sum(p * p for p in pos))
            else:
                total += unl_term - sum(pos) / len(pos)
        else:
            unl_term = math.log(sum(unl) / len(unl)) if unl else 0.0
            total += unl_term - sum(math.log(p) for p in pos) / len(pos)
    return total


def finite_difference(fn, x: numpy.ndarray, eps: float = 1e-6) -> numpy.ndarray:
    grad = numpy.zeros_like(x)
    for index in numpy.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (fn(up) - fn(down)) / (2 * eps)
    return grad


label_matrices = st.integers(1, 8).flatmap(
    lambda n: st.integers(1, 5).flatmap(
        lambda k: st.tuples(
            st.lists(st.floats(-6, 6), min_size=n * k, max_size=n * k),
            st.lists(st.sampled_from([0.0, 1.0, 0.5]), min_size=n * k, max_size=n * k),
            st.just((n, k)),
        )
    )
)


@pytest.mark.parametrize("form,positive_term", [("norm", "mean"), ("log", "mean"), ("norm", "l2")])
@settings(max_examples=60, deadline=None)
@given(data=label_matrices)
def test_pu_loss_matches_reference_and_finite_differences(form, positive_term, data):
    values, labels, shape = data
    logits = numpy.asarray(values, dtype="float64").reshape(shape)
    positives = numpy.asarray(labels, dtype="float64").reshape(shape)
    d_logits, value = VariationalPULoss(form, positive_term)(logits, positives)
    expected = reference_pu_loss(logits, positives, form, positive_term)
    assert value == pytest.approx(expected, abs=1e-9)
    numeric = finite_difference(
        lambda z: reference_pu_loss(z, positives, form, positive_term), logits
    )
    numpy.testing.assert_allclose(d_logits, numeric, atol=1e-6)


def test_l2_positive_term_differs_from_the_mean_and_needs_the_norm_form():
    logits = numpy.array([[2.0], [1.0], [-1.0]])
    positives = numpy.array([[1.0], [1.0], [0.0]])
    _, mean_value = VariationalPULoss("norm", "mean")(logits, positives)
    _, l2_value = VariationalPULoss("norm", "l2")(logits, positives)
    assert l2_value < mean_value  # sqrt(p1^2 + p2^2) > (p1 + p2) / 2
    with pytest.raises(ValueError, match="norm form"):
        VariationalPULoss("log", "l2")
    with pytest.raises(ValueError, match="positive term"):
        VariationalPULoss("norm", "max")


def test_labels_without_positives_contribute_nothing():
    logits = numpy.random.default_rng(0).normal(size=(6, 3))
    positives = numpy.zeros((6, 3))
    positives[:2, 1] = 1.0
    d_logits, value = VariationalPULoss("norm")(logits, positives)
    assert not d_logits[:, [0, 2]].any()
    probs = 1 / (1 + numpy.exp(-logits[:, 1]))
    assert value == pytest.approx(probs[2:].mean() - probs[:2].mean())


def test_log_form_is_finite_for_extreme_logits():
    logits = numpy.array([[-200.0, 200.0], [-150.0, 90.0], [300.0, -400.0]], dtype="float32")
    positives = numpy.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype="float32")
    d_logits, value = VariationalPULoss("log")(logits, positives)
    assert math.isfinite(value) and numpy.isfinite(d_logits).all()
    assert d_logits.dtype == numpy.float32
    # -log(sigmoid(-200)) is 200: the positive term must keep its size, not saturate.
    assert value > 199.0


def test_unknown_form_is_rejected():
    with pytest.raises(ValueError, match="squared"):
        VariationalPULoss("squared")


@pytest.mark.parametrize("form", ["norm", "log"])
def test_mixup_consistency_value_and_gradient(form):
    rng = numpy.random.default_rng(1)
    logits = rng.normal(size=7) * 3
    targets = rng.uniform(0.05, 1.0, size=7)

    def value_of(z):
        q = 1 / (1 + numpy.exp(-z))
        if form == "norm":
            return float(((targets - q) ** 2).sum())
        return float(((numpy.log(targets) - numpy.log(q)) ** 2).sum())

    d_logits, value = MixUpConsistency(form)(logits, targets)
    assert value == pytest.approx(value_of(logits))
    numpy.testing.assert_allclose(d_logits, finite_difference(value_of, logits), atol=1e-6)


def test_masked_bce_ignores_missing_entries():
    rng = numpy.random.default_rng(2)
    logits = rng.normal(size=(5, 3))
    truths = (rng.uniform(size=(5, 3)) > 0.5).astype("float64")
    mask = (rng.uniform(size=(5, 3)) > 0.3).astype("float64")

    def value_of(z):
        p = 1 / (1 + numpy.exp(-z))
        terms = -(truths * numpy.log(p) + (1 - truths) * numpy.log(1 - p))
        return float((terms * mask).sum() / mask.sum())

    d_logits, value = masked_bce(logits, truths, mask)
    assert value == pytest.approx(value_of(logits))
    numpy.testing.assert_allclose(d_logits, finite_difference(value_of, logits), atol=1e-6)
    assert not d_logits[mask == 0].any()


def test_masked_bce_weights_scale_entries_but_not_the_normaliser():
    rng = numpy.random.default_rng(3)
    logits = rng.normal(size=(4, 3))
    truths = (rng.uniform(size=(4, 3)) > 0.5) * 0.9 + 0.05  # smoothed targets
    mask = numpy.ones((4, 3))
    mask[0, 0] = 0.0
    weights = numpy.where(truths > 0.5, 1.0, 0.5)

    def value_of(z):
        p = 1 / (1 + numpy.exp(-z))
        terms = -(truths * numpy.log(p) + (1 - truths) * numpy.log(1 - p))
        return float((terms * mask * weights).sum() / mask.sum())

    d_logits, value = masked_bce(logits, truths, mask, weights)
    assert value == pytest.approx(value_of(logits))
    numpy.testing.assert_allclose(d_logits, finite_difference(value_of, logits), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=1, max_value=7),
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=0.0, max_value=0.99),
    st.integers(min_value=0, max_value=2**31),
)
def test_largest_losses_rejects_the_top_share_of_candidates(n_docs, n_labels, share, seed):
    rng = numpy.random.default_rng(seed)
    logits = rng.normal(0, 3, (n_docs, n_labels)).round(1)  # rounded: ties happen
    targets = rng.choice([0.0, 0.05, 0.3], size=logits.shape)
    candidates = (rng.uniform(size=logits.shape) > 0.3).astype("float64")
    rejected = largest_losses(logits, targets, candidates, share)
    # Reference: every candidate's BCE as a Python float, sorted by (-loss, position).
    entries = []
    for i in range(n_docs):
        for j in range(n_labels):
            if candidates[i, j]:
                p = 1.0 / (1.0 + math.exp(-logits[i, j]))
                t = targets[i, j]
                loss = -(t * math.log(p) + (1 - t) * math.log(1 - p))
                entries.append((-round(loss, 9), i * n_labels + j))
    expected = numpy.zeros(logits.size)
    for _, flat in sorted(entries)[: int(share * len(entries))]:
        expected[flat] = 1.0
    numpy.testing.assert_array_equal(rejected.reshape(-1), expected)
    assert not rejected[candidates == 0].any()


def test_rejected_entries_leave_the_bce_and_its_normaliser():
    logits = numpy.array([[3.0, -1.0], [0.5, 2.0], [-2.0, 0.0]])
    truths = numpy.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    unlabeled = (truths == 0).astype("float64")
    rejected = largest_losses(logits, truths, unlabeled, 0.5)  # 2 of 5 unlabeled entries
    numpy.testing.assert_array_equal(rejected, [[0, 0], [1, 1], [0, 0]])  # logits 2.0, 0.5
    d_logits, value = masked_bce(logits, truths, 1.0 - rejected)
    kept = [(3.0, 1.0), (-1.0, 0.0), (-2.0, 0.0), (0.0, 0.0)]
    by_hand = [math.log1p(math.exp(-z)) if y else math.log1p(math.exp(z)) for z, y in kept]
    assert value == pytest.approx(sum(by_hand) / 4)
    assert not d_logits[rejected == 1].any()


def nnpu_by_hand(logits, positives, priors, reversed_negative=False):
    """Kiryo et al.'s risk with the sigmoid loss, label by label with Python floats; with
    ``reversed_negative``, a label whose estimate of the negatives' risk is below 0 counts
    as ``−`` that estimate alone (the objective whose gradient their algorithm follows)."""
    total = 0.0
    for label, pos, unl in label_sets(logits, positives):
        prior = float(priors[label])
        negative = sum(unl) / len(unl) - prior * sum(pos) / len(pos) if unl else 0.0
        if negative < 0 and reversed_negative:
            total -= negative
        else:
            total += prior * (1 - sum(pos) / len(pos)) + max(negative, 0.0)
    return total


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=2**31))
def test_nnpu_value_and_gradient_against_a_reference(seed):
    rng = numpy.random.default_rng(seed)
    logits = rng.normal(0, 2, (6, 4))
    positives = (rng.uniform(size=(6, 4)) < 0.3).astype("float64")
    positives[:, 3] = 1.0  # a label without unlabeled entries: the first term alone
    priors = rng.uniform(0.05, 0.9, 4)
    d_logits, value = VariationalPULoss("nnpu", priors=priors)(logits, positives)
    assert value == pytest.approx(nnpu_by_hand(logits, positives, priors), abs=1e-9)
    ascent = finite_difference(
        lambda z: nnpu_by_hand(z, positives, priors, reversed_negative=True), logits
    )
    numpy.testing.assert_allclose(d_logits, ascent, atol=1e-6)


def test_nnpu_pushes_unlabeled_back_up_once_their_negative_risk_is_below_zero():
    positives = numpy.array([[1.0], [1.0], [0.0], [0.0]])
    logits = numpy.array([[3.0], [3.0], [-4.0], [-4.0]])  # unlabeled far below π·mean_P p
    d_logits, _ = VariationalPULoss("nnpu", priors=numpy.array([0.5]))(logits, positives)
    assert (d_logits[2:] < 0).all()  # descent raises their scores: hidden positives come back
    assert (d_logits[:2] > 0).all()  # and, by Kiryo's step, lowers the known positives'
    logits[2:] = 2.5  # unlabeled above π·mean_P p: the ordinary PU direction
    d_logits, _ = VariationalPULoss("nnpu", priors=numpy.array([0.5]))(logits, positives)
    assert (d_logits[2:] > 0).all()


def test_nnpu_needs_priors_and_only_nnpu_takes_them():
    with pytest.raises(ValueError, match="priors"):
        VariationalPULoss("nnpu")
    with pytest.raises(ValueError, match="priors"):
        VariationalPULoss("norm", priors=numpy.array([0.5]))
    logits, positives = numpy.zeros((2, 3)), numpy.array([[1.0, 0, 1], [0, 1, 0]])
    for priors in ([0.5], [0.2, 0.3, 1.5]):  # one per label, each in [0, 1]
        with pytest.raises(ValueError, match="loss_form = 'nnpu'.*per label"):
            VariationalPULoss("nnpu", priors=numpy.array(priors))(logits, positives)

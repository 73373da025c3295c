"""The losses against an independent per-label computation and finite differences."""

import math

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thinc.api import registry

from spacy_dallmi.loss import VariationalPULoss, masked_bce


def reference_pu_loss(logits: numpy.ndarray, positives: numpy.ndarray, form: str) -> float:
    """DESIGN section 1, written label by label with plain Python floats."""
    total = 0.0
    for label in range(logits.shape[1]):
        probs = [1.0 / (1.0 + math.exp(-z)) for z in logits[:, label]]
        pos = [p for p, y in zip(probs, positives[:, label]) if y == 1.0]
        unl = [p for p, y in zip(probs, positives[:, label]) if y != 1.0]
        if not pos:
            continue
        if form == "norm":
            unl_term = sum(unl) / len(unl) if unl else 0.0
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


@pytest.mark.parametrize("form", ["norm", "log"])
@settings(max_examples=60, deadline=None)
@given(data=label_matrices)
def test_pu_loss_matches_reference_and_finite_differences(form, data):
    values, labels, shape = data
    logits = numpy.asarray(values, dtype="float64").reshape(shape)
    positives = numpy.asarray(labels, dtype="float64").reshape(shape)
    loss = registry.losses.get("spacy_dallmi.VariationalPULoss.v1")(form=form)
    d_logits, value = loss(logits, positives)
    assert value == pytest.approx(reference_pu_loss(logits, positives, form), abs=1e-9)
    numeric = finite_difference(lambda z: reference_pu_loss(z, positives, form), logits)
    numpy.testing.assert_allclose(d_logits, numeric, atol=1e-6)


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

    loss = registry.losses.get("spacy_dallmi.MixUpConsistency.v1")(form=form)
    d_logits, value = loss(logits, targets)
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

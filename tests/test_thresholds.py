"""Per-label thresholds against a brute-force search and on a real pipeline's output."""

import numpy
import pytest
import spacy
import srsly
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_dallmi.experiments.thresholds import (
    DEFAULT_THRESHOLD,
    best_f1_threshold,
    fit_thresholds,
    write_thresholds,
)


def brute_force_f1(gold, scores):
    """The best F1 over every cut at a distinct score, by direct counting."""
    best = 0.0
    for cut in set(scores):
        predicted = scores >= cut
        tp = int((predicted & gold).sum())
        best = max(best, 2 * tp / (predicted.sum() + gold.sum()))
    return best


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9])), min_size=1))
def test_best_threshold_reaches_the_brute_force_f1(pairs):
    gold = numpy.asarray([g for g, _ in pairs])
    scores = numpy.asarray([s for _, s in pairs])
    if not gold.any():
        with pytest.raises(ValueError, match="No positive"):
            best_f1_threshold(gold, scores)
        return
    threshold, f1 = best_f1_threshold(gold, scores)
    assert f1 == pytest.approx(brute_force_f1(gold, scores))
    predicted = scores >= threshold
    tp = int((predicted & gold).sum())
    assert 2 * tp / (predicted.sum() + gold.sum()) == pytest.approx(f1)


def test_threshold_sits_between_scores():
    threshold, f1 = best_f1_threshold(numpy.array([1, 1, 0, 0]), numpy.array([0.9, 0.8, 0.3, 0.1]))
    assert f1 == 1.0 and threshold == pytest.approx(0.55)


def test_fit_thresholds_per_label_and_json(tmp_path):
    nlp = spacy.blank("en")
    texts = ["a", "b", "c", "d"]
    predicted = [nlp.make_doc(t) for t in texts]
    gold = [nlp.make_doc(t) for t in texts]
    for doc, joy, fear in zip(predicted, [0.9, 0.6, 0.4, 0.1], [0.2, 0.3, 0.8, 0.1]):
        doc.cats = {"joy": joy, "fear": fear, "anger": 0.5}
    for doc, joy, fear in zip(gold, [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]):
        doc.cats = {"joy": joy, "fear": fear, "anger": 0.0}
    fitted = fit_thresholds(predicted, gold, ["joy", "fear", "anger"])
    assert fitted["joy"]["threshold"] == pytest.approx(0.5) and fitted["joy"]["f1"] == 1.0
    assert fitted["fear"]["threshold"] == pytest.approx(0.55) and fitted["fear"]["positives"] == 1
    assert fitted["anger"] == {"threshold": DEFAULT_THRESHOLD, "f1": None, "positives": 0}
    details = write_thresholds(fitted, tmp_path / "thresholds.json")
    assert srsly.read_json(tmp_path / "thresholds.json") == {
        label: values["threshold"] for label, values in fitted.items()
    }
    assert srsly.read_json(details)["fear"]["positives"] == 1


def test_fit_threshold_columns_matches_fit_thresholds_and_checks_shapes():
    from spacy_dallmi.experiments.thresholds import fit_threshold_columns

    rng = numpy.random.default_rng(0)
    labels = ["joy", "fear", "anger"]
    scores = rng.random((30, 3))
    gold = (rng.random((30, 3)) < 0.4).astype(float)
    gold[:, 2] = 0.0
    nlp = spacy.blank("en")
    predicted = [nlp.make_doc(str(i)) for i in range(30)]
    reference = [nlp.make_doc(str(i)) for i in range(30)]
    for doc, ref, row_s, row_g in zip(predicted, reference, scores, gold):
        doc.cats = dict(zip(labels, map(float, row_s)))
        ref.cats = dict(zip(labels, map(float, row_g)))
    columns = fit_threshold_columns(gold, scores, labels)
    assert columns == fit_thresholds(predicted, reference, labels)
    for column, label in enumerate(labels[:2]):
        threshold, f1 = best_f1_threshold(gold[:, column], scores[:, column])
        assert columns[label] == {
            "threshold": threshold,
            "f1": f1,
            "positives": gold[:, column].sum(),
        }
    assert columns["anger"]["threshold"] == DEFAULT_THRESHOLD
    with pytest.raises(ValueError, match="3 labels"):
        fit_threshold_columns(gold[:, :2], scores[:, :2], labels)


def test_gold_without_a_known_positive_is_negative_and_other_values_are_an_error():
    """A gold doc with no cats, a missing label, None or 0.0 has no known positive (counted as
    negative, as a blank label cell is when prepared); 2.0 is an error naming doc and label."""
    nlp = spacy.blank("en")
    predicted = [nlp.make_doc(t) for t in "abcd"]
    for doc, score in zip(predicted, [0.9, 0.7, 0.2, 0.1]):
        doc.cats = {"joy": score}
    gold = [nlp.make_doc(t) for t in "abcd"]
    gold[0].cats = {"joy": 1.0}
    gold[1].cats = {}
    gold[2].cats = {"joy": None}
    gold[3].cats = {"joy": 0.0}
    fitted = fit_thresholds(predicted, gold, ["joy"])
    assert fitted["joy"]["positives"] == 1 and fitted["joy"]["f1"] == 1.0
    gold[2].cats = {"joy": 2.0}
    with pytest.raises(ValueError, match=r"Gold doc 2 \('c'\) has the value 2\.0 for label 'joy'"):
        fit_thresholds(predicted, gold, ["joy"])

"""The conservative selection: resampled PU scores and win rates against the scorer itself."""

import warnings

import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_dallmi.scorer import score_cats_map
from spacy_dallmi.selection import (
    check_confidence,
    choose,
    pu_win_rate,
    resampled_pu_scores,
)

LABELS = ["a", "b", "c"]


def scorer_pu(known, probs, rows):
    """``cats_pu_score`` of the documents ``rows`` (repeats allowed), by the scorer."""
    nlp = spacy.blank("en")
    examples = []
    for i in rows:
        predicted, reference = nlp.make_doc("x"), nlp.make_doc("x")
        predicted.cats = {label: float(p) for label, p in zip(LABELS, probs[i])}
        reference.cats = {label: float(k) for label, k in zip(LABELS, known[i])}
        examples.append(Example(predicted, reference))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample may lack a label's positives
        return score_cats_map(examples, labels=LABELS)["cats_pu_score"]


def data(seed, n=12):
    rng = numpy.random.default_rng(seed)
    known = rng.random((n, len(LABELS))) < 0.3
    known[0, 0] = known[1, 1] = known[2, 2] = True  # every label has a known positive
    known[:, 2] = False
    known[2, 2] = True  # label c: one known positive, often absent from a resample
    return known, rng.random((n, len(LABELS)))


@pytest.mark.parametrize("seed", range(5))
def test_resampled_scores_are_the_scorers_on_the_repeated_documents(seed):
    known, probs = data(seed)
    rng = numpy.random.default_rng(100 + seed)
    counts = rng.multinomial(len(known), numpy.full(len(known), 1 / len(known)), size=20)
    counts = numpy.vstack([numpy.ones(len(known), dtype=int), counts])  # the slice itself first
    got = resampled_pu_scores(known, probs, counts)
    for b, row in enumerate(counts):
        rows = numpy.repeat(numpy.arange(len(known)), row)
        assert got[b] == pytest.approx(scorer_pu(known, probs, rows), abs=1e-12)


def test_a_resample_without_any_known_positive_is_nan():
    known = numpy.array([[True], [False]])
    assert numpy.isnan(resampled_pu_scores(known, numpy.array([[0.9], [0.1]]), [[0, 2]])[0])


@pytest.mark.parametrize("seed", range(3))
def test_win_rate_is_a_paired_bootstrap_of_the_score_difference(seed):
    known, source = data(seed, n=15)
    candidate = numpy.clip(
        source + numpy.random.default_rng(seed).normal(0, 0.2, source.shape), 0, 1
    )
    resamples = 60
    got = pu_win_rate(known, candidate, source, resamples=resamples, seed=7)
    # the same draws, each resample scored twice by the scorer
    rng = numpy.random.default_rng(7)
    counts = rng.multinomial(15, numpy.full(15, 1 / 15), size=resamples)
    wins = 0
    for row in counts:
        rows = numpy.repeat(numpy.arange(15), row)
        wins += scorer_pu(known, candidate, rows) > scorer_pu(known, source, rows) + 1e-12
    assert got == pytest.approx(wins / resamples)
    assert 0.0 < got < 1.0


def test_win_rate_of_a_uniform_gain_a_copy_and_a_loss():
    known, source = data(3, n=20)
    source = 0.1 + 0.8 * source
    better = source + numpy.where(known, 0.05, -0.05)  # higher on positives, lower elsewhere
    assert pu_win_rate(known, better, source, resamples=200) == 1.0
    assert pu_win_rate(known, source, source, resamples=200) == 0.0
    assert pu_win_rate(known, source, better, resamples=200) == 0.0


def test_choose_keeps_the_source_unless_a_candidate_wins_often_enough():
    scores = {"source": 0.30, "blend 0.5": 0.34, "checkpoint": 0.35}
    assert choose(scores) == "checkpoint"
    wins = {"blend 0.5": 0.95, "checkpoint": 0.80}
    assert choose(scores, wins, 0.9) == "blend 0.5"
    assert choose(scores, wins, 0.97) == "source"
    # the first of equal scores: the candidate nearest the source
    assert choose({"source": 0.3, "blend 0.5": 0.3, "checkpoint": 0.3}) == "source"


@pytest.mark.parametrize("bad", [1.0, -0.1, True, 2])
def test_a_confidence_outside_zero_one_names_the_setting(bad):
    with pytest.raises(ValueError, match="selection_confidence"):
        check_confidence(bad)


def test_choose_ships_only_candidates_the_guard_does_not_rank_below_the_source():
    scores = {"source": 0.5, "blend 0.5": 0.6, "checkpoint": 0.9}
    guard = {"source": 0.2, "blend 0.5": 0.2, "checkpoint": 0.1}
    assert choose(scores, guard=guard) == "blend 0.5"  # a tie on the guard passes
    assert choose(scores, guard={**guard, "blend 0.5": 0.19}) == "source"
    # with a confidence rule too, a candidate must pass both
    wins = {"blend 0.5": 0.5, "checkpoint": 0.99}
    assert choose(scores, wins, 0.9, guard=guard) == "source"
    assert choose(scores, wins, 0.9, guard={**guard, "checkpoint": 0.3}) == "checkpoint"

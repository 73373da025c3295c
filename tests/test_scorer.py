"""Tests for the mAP scorer, checked against scikit-learn computed independently of the module."""

import math
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score
from spacy.scorer import Scorer
from spacy.training import Example

from spacy_dallmi.scorer import average_precision, score_cats_map

NLP = spacy.blank("en")
REPO_ROOT = Path(__file__).resolve().parents[1]


@st.composite
def binary_ranking(draw: st.DrawFn, tied: bool) -> Tuple[List[int], List[float]]:
    """Draw gold labels with at least one positive and matching scores.

    With `tied`, scores come from a handful of values so that many items share a threshold,
    which is where a naive rank-by-rank AP departs from scikit-learn's.
    """
    size = draw(st.integers(min_value=1, max_value=60))
    y_true = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    y_true[draw(st.integers(0, size - 1))] = 1
    if tied:
        values = st.sampled_from([0.0, 0.2, 0.5, 0.7, 1.0])
    else:
        values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)
    y_score = draw(st.lists(values, min_size=size, max_size=size))
    return y_true, y_score


@settings(max_examples=300, deadline=None)
@given(case=st.one_of(binary_ranking(tied=True), binary_ranking(tied=False)))
def test_average_precision_matches_sklearn(case: Tuple[List[int], List[float]]) -> None:
    y_true, y_score = case
    expected = average_precision_score(y_true, y_score)
    assert average_precision(y_true, y_score) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(50))
def test_average_precision_single_positive_and_heavy_ties(seed: int) -> None:
    rng = numpy.random.default_rng(seed)
    size = int(rng.integers(1, 200))
    single = numpy.zeros(size, dtype=int)
    single[rng.integers(size)] = 1
    few_values = rng.choice([0.1, 0.4, 0.9], size=size)
    for y_true in (single, rng.integers(0, 2, size=size) | single):
        for y_score in (few_values, rng.random(size), numpy.full(size, 0.3)):
            expected = average_precision_score(y_true, y_score)
            assert average_precision(y_true, y_score) == pytest.approx(expected, abs=1e-12)


def test_average_precision_accepts_booleans_and_known_value() -> None:
    # Ranking: +, -, + -> P = 1 at R = 0.5, P = 2/3 at R = 1.
    assert average_precision([True, False, True], [0.9, 0.8, 0.7]) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3
    )


@pytest.mark.parametrize(
    ("y_true", "y_score", "match"),
    [
        ([0, 0, 0], [0.1, 0.5, 0.9], "no positive"),
        ([], [], "no positive"),
        ([0, 1], [0.1], "equal length"),
        ([0, 2], [0.1, 0.2], "binary"),
        ([0, 1], [0.1, float("nan")], "finite"),
    ],
)
def test_average_precision_rejects_bad_input(
    y_true: List[int], y_score: List[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        average_precision(y_true, y_score)


def make_example(text: str, predicted: Dict[str, float], gold: Dict[str, float]) -> Example:
    """Build an Example whose predicted doc carries `predicted` and whose reference has `gold`."""
    reference = Example.from_dict(NLP.make_doc(text), {"cats": gold}).reference
    predicted_doc = NLP.make_doc(text)
    predicted_doc.cats = predicted
    return Example(predicted_doc, reference)


def examples_from_matrices(
    gold: numpy.ndarray, pred: numpy.ndarray, labels: List[str]
) -> List[Example]:
    """Turn a gold matrix (NaN = key absent) and a prediction matrix into Examples."""
    examples = []
    for row, (gold_row, pred_row) in enumerate(zip(gold, pred)):
        gold_cats = {
            label: float(value) for label, value in zip(labels, gold_row) if not numpy.isnan(value)
        }
        pred_cats = {label: float(value) for label, value in zip(labels, pred_row)}
        examples.append(make_example(f"document number {row}", pred_cats, gold_cats))
    return examples


def sklearn_expectations(
    gold: numpy.ndarray, pred: numpy.ndarray, labels: List[str], threshold: float
) -> Dict[str, object]:
    """Compute the expected AP columns from the raw matrices with scikit-learn."""
    per_type = {}
    rounded = {}
    for column, label in enumerate(labels):
        annotated = ~numpy.isnan(gold[:, column])
        y_true = gold[annotated, column]
        y_score = pred[annotated, column]
        if y_true.sum() == 0:
            continue
        per_type[label] = average_precision_score(y_true, y_score)
        rounded[label] = average_precision_score(y_true, (y_score >= threshold).astype(float))
    annotated = ~numpy.isnan(gold)
    return {
        "per_type": per_type,
        "macro": float(numpy.mean(list(per_type.values()))),
        "rounded": float(numpy.mean(list(rounded.values()))),
        "micro": average_precision_score(gold[annotated], pred[annotated]),
        "skipped": sorted(set(labels) - set(per_type)),
    }


@pytest.fixture
def random_dataset() -> Tuple[numpy.ndarray, numpy.ndarray, List[str]]:
    """Forty documents, five labels: one never positive, one often unannotated, tied scores."""
    rng = numpy.random.default_rng(7)
    labels = ["anger", "joy", "fear", "never", "sparse"]
    n_docs = 40
    gold = (rng.random((n_docs, len(labels))) < 0.3).astype(float)
    gold[:3, :3] = 1.0
    gold[:, 3] = 0.0
    gold[rng.random(n_docs) < 0.5, 4] = numpy.nan
    gold[0, 4] = 1.0
    gold[rng.random(n_docs) < 0.1, 1] = numpy.nan
    pred = rng.random((n_docs, len(labels)))
    pred[:, 2] = rng.choice([0.2, 0.5, 0.8], size=n_docs)
    return gold, pred, labels


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_score_cats_map_matches_sklearn(
    random_dataset: Tuple[numpy.ndarray, numpy.ndarray, List[str]], threshold: float
) -> None:
    gold, pred, labels = random_dataset
    examples = examples_from_matrices(gold, pred, labels)
    expected = sklearn_expectations(gold, pred, labels, threshold)

    scores = score_cats_map(examples, labels=labels, threshold=threshold)

    assert scores["cats_macro_ap"] == pytest.approx(expected["macro"], abs=1e-12)
    assert scores["cats_micro_ap"] == pytest.approx(expected["micro"], abs=1e-12)
    assert scores["cats_ap_per_type"] == pytest.approx(expected["per_type"], abs=1e-12)
    assert scores["cats_macro_ap_rounded"] == pytest.approx(expected["rounded"], abs=1e-12)
    assert scores["cats_ap_skipped_labels"] == ["never"] == expected["skipped"]
    assert set(scores["cats_ap_per_type"]) == {"anger", "joy", "fear", "sparse"}


def test_score_cats_map_keeps_spacy_columns(
    random_dataset: Tuple[numpy.ndarray, numpy.ndarray, List[str]],
) -> None:
    gold, pred, labels = random_dataset
    examples = examples_from_matrices(gold, pred, labels)
    spacy_scores = Scorer.score_cats(
        examples, "cats", labels=labels, multi_label=True, threshold=0.5
    )

    scores = score_cats_map(examples, labels=labels, positive_label=None, multi_label=False)

    assert {key: scores[key] for key in spacy_scores} == spacy_scores
    assert scores["cats_score_desc"] == "macro AUC"
    assert isinstance(scores["cats_macro_auc"], float)


def test_score_cats_map_excludes_absent_gold_keys() -> None:
    # Doc 1 is unannotated for "b"; its top score must not count as a false positive.
    examples = [
        make_example("one", {"a": 0.9, "b": 0.95}, {"a": 0.0}),
        make_example("two", {"a": 0.8, "b": 0.6}, {"a": 1.0, "b": 1.0}),
        make_example("three", {"a": 0.1, "b": 0.2}, {"a": 1.0, "b": 0.0}),
    ]

    scores = score_cats_map(examples)

    assert scores["cats_ap_per_type"]["b"] == pytest.approx(1.0)
    assert scores["cats_ap_per_type"]["a"] == pytest.approx(
        average_precision_score([0, 1, 1], [0.9, 0.8, 0.1])
    )
    assert scores["cats_micro_ap"] == pytest.approx(
        average_precision_score([0, 1, 1, 1, 0], [0.9, 0.8, 0.1, 0.6, 0.2])
    )


def test_score_cats_map_defaults_labels_to_gold_keys_and_missing_predictions_to_zero() -> None:
    examples = [
        make_example("one", {"a": 0.7, "extra": 1.0}, {"a": 1.0, "b": 1.0}),
        make_example("two", {"a": 0.2}, {"a": 0.0, "b": 0.0}),
    ]

    scores = score_cats_map(iter(examples))

    assert set(scores["cats_ap_per_type"]) == {"a", "b"}
    assert set(scores["cats_f_per_type"]) == {"a", "b"}
    # "b" is never predicted, so both docs score 0.0 and tie: AP = prevalence.
    assert scores["cats_ap_per_type"]["b"] == pytest.approx(0.5)
    assert scores["cats_ap_skipped_labels"] == []


def test_score_cats_map_without_positives_reports_none() -> None:
    examples = [
        make_example("one", {"a": 0.7, "b": 0.1}, {"a": 0.0, "b": 0.0}),
        make_example("two", {"a": 0.2, "b": 0.9}, {"a": 0.0}),
    ]

    scores = score_cats_map(examples, labels=["b", "a", "unseen"])

    assert scores["cats_macro_ap"] is None
    assert scores["cats_micro_ap"] is None
    assert scores["cats_macro_ap_rounded"] is None
    assert scores["cats_ap_per_type"] == {}
    assert scores["cats_ap_skipped_labels"] == ["a", "b", "unseen"]
    assert "cats_macro_auc" in scores


def test_rounded_ap_differs_from_proper_ap_when_ranking_matters() -> None:
    # Both positives rank on top, but rounding at 0.5 ties the first positive with a negative.
    examples = [
        make_example("one", {"a": 0.9}, {"a": 1.0}),
        make_example("two", {"a": 0.4}, {"a": 1.0}),
        make_example("three", {"a": 0.6}, {"a": 0.0}),
        make_example("four", {"a": 0.1}, {"a": 0.0}),
    ]

    scores = score_cats_map(examples)

    assert scores["cats_macro_ap"] == pytest.approx(
        average_precision_score([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    )
    assert scores["cats_macro_ap_rounded"] == pytest.approx(
        average_precision_score([1, 1, 0, 0], [1.0, 0.0, 1.0, 0.0])
    )
    assert not math.isclose(scores["cats_macro_ap"], scores["cats_macro_ap_rounded"])


def pu_score_by_hand(gold: numpy.ndarray, pred: numpy.ndarray) -> Tuple[float, List[int]]:
    """mean over labels with a known positive of (mean_P p - mean_U p); NaN gold = absent.

    Returns the score and the columns left out (no positive among the annotated docs).
    """
    terms, left_out = [], []
    for column in range(gold.shape[1]):
        annotated = ~numpy.isnan(gold[:, column])
        truth = gold[annotated, column] >= 0.5
        scores = pred[annotated, column]
        if not truth.any():
            left_out.append(column)
            continue
        terms.append(scores[truth].mean() - scores[~truth].mean())
    return float(numpy.mean(terms)), left_out


def test_pu_score_matches_an_independent_computation(
    random_dataset: Tuple[numpy.ndarray, numpy.ndarray, List[str]],
) -> None:
    gold, pred, labels = random_dataset
    expected, left_out = pu_score_by_hand(gold, pred)
    assert [labels[column] for column in left_out] == ["never"]

    with pytest.warns(UserWarning, match=r"No known positive for label\(s\) \['never'\]"):
        scores = score_cats_map(examples_from_matrices(gold, pred, labels), labels=labels)

    assert scores["cats_pu_score"] == pytest.approx(expected, abs=1e-12)
    # A label that is never positive would otherwise enter as mean_P of nothing (NaN).
    assert math.isfinite(scores["cats_pu_score"])


def test_pu_score_rewards_ranking_known_positives_above_the_rest() -> None:
    examples = [
        make_example("one", {"a": 0.9}, {"a": 1.0}),
        make_example("two", {"a": 0.2}, {"a": 0.0}),
        make_example("three", {"a": 0.4}, {}),
    ]
    assert score_cats_map(examples, labels=["a"])["cats_pu_score"] == pytest.approx(0.9 - 0.2)
    flipped = [
        make_example("one", {"a": 0.2}, {"a": 1.0}),
        make_example("two", {"a": 0.9}, {"a": 0.0}),
    ]
    assert score_cats_map(flipped, labels=["a"])["cats_pu_score"] == pytest.approx(0.2 - 0.9)


def test_pu_score_without_any_positive_is_none_not_nan() -> None:
    examples = [
        make_example("one", {"a": 0.7, "b": 0.1}, {"a": 0.0, "b": 0.0}),
        make_example("two", {"a": 0.2, "b": 0.9}, {"a": 0.0}),
    ]
    with pytest.warns(UserWarning, match=r"\['a', 'b'\]"):
        scores = score_cats_map(examples, labels=["a", "b"])
    assert scores["cats_pu_score"] is None


# Hand-made predictions and gold for the pipeline test. Label "c" has no positive.
HAND_PREDICTIONS = {
    "d0": {"a": 0.9, "b": 0.2, "c": 0.5},
    "d1": {"a": 0.8, "b": 0.7, "c": 0.1},
    "d2": {"a": 0.3, "b": 0.4, "c": 0.6},
    "d3": {"a": 0.6, "b": 0.5, "c": 0.3},
    "d4": {"a": 0.1, "b": 0.9, "c": 0.8},
}
HAND_GOLD = {
    "d0": {"a": 1.0, "b": 0.0, "c": 0.0},
    "d1": {"a": 0.0, "b": 1.0, "c": 0.0},
    "d2": {"a": 1.0, "c": 0.0},  # "b" not annotated: left out for "b"
    "d3": {"a": 0.0, "b": 0.0, "c": 0.0},
    "d4": {"a": 0.0, "b": 1.0, "c": 0.0},
}
# By hand. a: ranking d0+ d1- d3- d2+ d4-, AP = 1/2 * 1/1 + 1/2 * 2/4 = 0.75;
#   PU = mean(0.9, 0.3) - mean(0.8, 0.6, 0.1) = 0.6 - 0.5 = 0.1.
# b (d2 left out): ranking d4+ d1+ d3- d0-, AP = 1; PU = mean(0.7, 0.9) - mean(0.2, 0.5) = 0.45.
# c: no positive, left out of both averages.
HAND_MACRO_AP = (0.75 + 1.0) / 2
HAND_PU_SCORE = (0.1 + 0.45) / 2

PIPELINE_CONFIG = """
[nlp]
lang = "en"
pipeline = ["textcat"]

[components]

[components.textcat]
factory = "textcat_multilabel"

[components.textcat.scorer]
@scorers = "spacy_dallmi.textcat_map_scorer.v1"
"""


def test_scorer_resolves_from_a_pipeline_config_and_scores_nlp_evaluate() -> None:
    """spaCy's own multi-label textcat, with only its scorer block naming ours."""
    config = spacy.util.Config().from_str(PIPELINE_CONFIG)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    textcat = nlp.get_pipe("textcat")
    assert textcat.scorer is score_cats_map
    examples = [
        Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text, cats in HAND_GOLD.items()
    ]
    nlp.initialize(lambda: examples)

    def hand_made_predict(docs: List[spacy.tokens.Doc]) -> numpy.ndarray:
        return numpy.array(
            [[HAND_PREDICTIONS[doc.text][label] for label in textcat.labels] for doc in docs],
            dtype="float32",
        )

    textcat.predict = hand_made_predict
    with pytest.warns(UserWarning, match=r"\['c'\]"):
        scores = nlp.evaluate(examples)

    assert scores["cats_macro_ap"] == pytest.approx(HAND_MACRO_AP, abs=1e-12)
    assert scores["cats_ap_per_type"] == pytest.approx({"a": 0.75, "b": 1.0}, abs=1e-12)
    # predictions pass through float32
    assert scores["cats_pu_score"] == pytest.approx(HAND_PU_SCORE, abs=1e-6)
    assert scores["cats_ap_skipped_labels"] == ["c"]


def test_scorer_works_without_sklearn() -> None:
    # scikit-learn is a test-only dependency: the module must import and run without it.
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"
        "from spacy_dallmi.scorer import average_precision\n"
        "assert abs(average_precision([1, 0, 1], [0.9, 0.8, 0.7]) - 5 / 6) < 1e-12\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr

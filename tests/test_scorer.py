"""Tests for the mAP scorer, checked against scikit-learn computed independently of the module."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score
from spacy.scorer import Scorer
from spacy.training import Example

import spacy_dallmi.scorer as scorer_module
from spacy_dallmi.scorer import average_precision, make_textcat_map_scorer, score_cats_map

NLP = spacy.blank("en")
REPO_ROOT = Path(__file__).resolve().parents[1]


@st.composite
def binary_ranking(draw: st.DrawFn, tied: bool) -> tuple[list[int], list[float]]:
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
def test_average_precision_matches_sklearn(case: tuple[list[int], list[float]]) -> None:
    y_true, y_score = case
    expected = average_precision_score(y_true, y_score)
    assert average_precision(y_true, y_score) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(50))
def test_average_precision_single_positive_and_heavy_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 200))
    single = np.zeros(size, dtype=int)
    single[rng.integers(size)] = 1
    few_values = rng.choice([0.1, 0.4, 0.9], size=size)
    for y_true in (single, rng.integers(0, 2, size=size) | single):
        for y_score in (few_values, rng.random(size), np.full(size, 0.3)):
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
    y_true: list[int], y_score: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        average_precision(y_true, y_score)


def make_example(text: str, predicted: dict[str, float], gold: dict[str, float]) -> Example:
    """Build an Example whose predicted doc carries `predicted` and whose reference has `gold`."""
    reference = Example.from_dict(NLP.make_doc(text), {"cats": gold}).reference
    predicted_doc = NLP.make_doc(text)
    predicted_doc.cats = predicted
    return Example(predicted_doc, reference)


def examples_from_matrices(gold: np.ndarray, pred: np.ndarray, labels: list[str]) -> list[Example]:
    """Turn a gold matrix (NaN = key absent) and a prediction matrix into Examples."""
    examples = []
    for row, (gold_row, pred_row) in enumerate(zip(gold, pred)):
        gold_cats = {
            label: float(value) for label, value in zip(labels, gold_row) if not np.isnan(value)
        }
        pred_cats = {label: float(value) for label, value in zip(labels, pred_row)}
        examples.append(make_example(f"document number {row}", pred_cats, gold_cats))
    return examples


def sklearn_expectations(
    gold: np.ndarray, pred: np.ndarray, labels: list[str], threshold: float
) -> dict[str, object]:
    """Compute the expected AP columns from the raw matrices with scikit-learn."""
    per_type = {}
    rounded = {}
    for column, label in enumerate(labels):
        annotated = ~np.isnan(gold[:, column])
        y_true = gold[annotated, column]
        y_score = pred[annotated, column]
        if y_true.sum() == 0:
            continue
        per_type[label] = average_precision_score(y_true, y_score)
        rounded[label] = average_precision_score(y_true, (y_score >= threshold).astype(float))
    annotated = ~np.isnan(gold)
    return {
        "per_type": per_type,
        "macro": float(np.mean(list(per_type.values()))),
        "rounded": float(np.mean(list(rounded.values()))),
        "micro": average_precision_score(gold[annotated], pred[annotated]),
        "skipped": sorted(set(labels) - set(per_type)),
    }


@pytest.fixture
def random_dataset() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Forty documents, five labels: one never positive, one often unannotated, tied scores."""
    rng = np.random.default_rng(7)
    labels = ["anger", "joy", "fear", "never", "sparse"]
    n_docs = 40
    gold = (rng.random((n_docs, len(labels))) < 0.3).astype(float)
    gold[:3, :3] = 1.0
    gold[:, 3] = 0.0
    gold[rng.random(n_docs) < 0.5, 4] = np.nan
    gold[0, 4] = 1.0
    gold[rng.random(n_docs) < 0.1, 1] = np.nan
    pred = rng.random((n_docs, len(labels)))
    pred[:, 2] = rng.choice([0.2, 0.5, 0.8], size=n_docs)
    return gold, pred, labels


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_score_cats_map_matches_sklearn(
    random_dataset: tuple[np.ndarray, np.ndarray, list[str]], threshold: float
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
    random_dataset: tuple[np.ndarray, np.ndarray, list[str]],
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


def test_registry_returns_scorer() -> None:
    assert scorer_module.score_cats_map is score_cats_map
    factory = spacy.util.registry.scorers.get("spacy_dallmi.textcat_map_scorer.v1")
    assert factory() is score_cats_map
    assert make_textcat_map_scorer() is score_cats_map
    resolved = spacy.util.registry.resolve(
        {"scorer": {"@scorers": "spacy_dallmi.textcat_map_scorer.v1"}}
    )
    assert resolved["scorer"] is score_cats_map


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

"""Tests for the label-balanced cycle batcher (the index-level core and the spaCy batcher),
and for the reference code's positive-sampling batcher of the batching ablation."""

import math
from typing import Dict, List, Sequence, Set, Tuple

import numpy
import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.training import Example

import spacy_dallmi.batcher  # noqa: F401  (runs the registry decorator without entry points)
from spacy_dallmi.batcher import (
    Batcher,
    configure_cycle_batcher,
    cycle_batch_indices,
    min_batch_size,
    positive_sampling_indices,
)

DENSITIES = (0.0, 0.0, 0.005, 0.02, 0.1, 0.3, 0.6, 0.95, 1.0)


@st.composite
def label_matrices(draw: st.DrawFn) -> Tuple[List[List[int]], int]:
    """Random positive-label lists, built from a drawn seed so large matrices stay fast.

    Per-label densities include 0 (labels never required) and near-0 (labels with a single
    positive), and a drawn fraction of documents is stripped of all positives.
    """
    n_docs = draw(st.integers(1, 150))
    n_labels = draw(st.integers(1, 14))
    densities = draw(st.lists(st.sampled_from(DENSITIES), min_size=n_labels, max_size=n_labels))
    blank_fraction = draw(st.sampled_from((0.0, 0.0, 0.2, 0.7)))
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    matrix = rng.random((n_docs, n_labels)) < numpy.asarray(densities)
    matrix[rng.random(n_docs) < blank_fraction] = False
    positives = [numpy.flatnonzero(row).tolist() for row in matrix]
    return positives, n_labels


def check_epoch(batches: List[List[int]], positives: Sequence[Sequence[int]], size: int) -> None:
    """Assert the five batcher guarantees, plus tight packing, for one epoch of batches."""
    n_docs = len(positives)
    required = {label for labels in positives for label in labels}
    for batch in batches:
        assert 1 <= len(batch) <= size
        assert len(set(batch)) == len(batch), "a document appears twice in one batch"
        covered = {label for doc in batch for label in positives[doc]}
        assert covered >= required, f"labels {sorted(required - covered)} not covered"
    assert {doc for batch in batches for doc in batch} == set(range(n_docs))
    # Only the last batch may be short: the stream fills every other batch completely.
    assert all(len(batch) == size for batch in batches[:-1])
    # Every batch consumes at least `size - len(required)` stream items (at least one), which
    # bounds the epoch length and so the work per epoch.
    assert len(batches) <= math.ceil(n_docs / max(1, size - len(required)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), matrix=label_matrices(), seed=st.integers(0, 2**32 - 1))
def test_core_guarantees_hold_for_random_label_matrices(
    data: st.DataObject, matrix: Tuple[List[List[int]], int], seed: int
) -> None:
    positives, n_labels = matrix
    smallest = min_batch_size(positives)
    size = data.draw(st.one_of(st.just(smallest), st.integers(smallest, max(smallest, 80))))
    rng = numpy.random.default_rng(seed)
    epochs = [list(cycle_batch_indices(positives, n_labels, size, rng)) for _ in range(2)]
    for batches in epochs:
        check_epoch(batches, positives, size)
    replay_rng = numpy.random.default_rng(seed)
    replay = [list(cycle_batch_indices(positives, n_labels, size, replay_rng)) for _ in range(2)]
    assert replay == epochs


def test_min_batch_size_counts_labels_and_a_slot_for_unlabeled_docs() -> None:
    assert min_batch_size([[0], [1, 2], [2]]) == 3
    assert min_batch_size([[0], [1, 2], []]) == 4
    assert min_batch_size([[], []]) == 1
    assert min_batch_size([]) == 1


def test_core_size_equal_to_label_count_works_when_every_doc_has_a_positive() -> None:
    positives = [[i % 4] for i in range(40)]
    batches = list(cycle_batch_indices(positives, 4, 4, numpy.random.default_rng(1)))
    check_epoch(batches, positives, 4)


def test_core_without_positives_is_a_plain_shuffled_partition() -> None:
    batches = list(cycle_batch_indices([[] for _ in range(23)], 3, 5, numpy.random.default_rng(0)))
    assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]
    flat = [doc for batch in batches for doc in batch]
    assert sorted(flat) == list(range(23))
    assert flat != list(range(23))


def test_core_empty_input_yields_no_batches() -> None:
    assert list(cycle_batch_indices([], 3, 4, numpy.random.default_rng(0))) == []


def test_core_rejects_too_small_size_eagerly_naming_both_numbers() -> None:
    positives = [[0, 1], [2], [3], [4], []]
    with pytest.raises(ValueError, match=r"Batch size 3 .*\b5 labels.*at least 6"):
        cycle_batch_indices(positives, 5, 3, numpy.random.default_rng(0))
    with pytest.raises(ValueError, match=r"Batch size 5 .*\b5 labels.*1 slot"):
        cycle_batch_indices(positives, 5, 5, numpy.random.default_rng(0))


@pytest.mark.parametrize("size", [0, -2, 2.5, True, "8"])
def test_core_rejects_invalid_size(size: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        cycle_batch_indices([[0]], 1, size, numpy.random.default_rng(0))  # type: ignore[arg-type]


def test_core_rejects_label_ids_out_of_range() -> None:
    with pytest.raises(ValueError, match="outside range"):
        cycle_batch_indices([[0], [3]], 2, 4, numpy.random.default_rng(0))


def test_core_draws_rare_label_positives_without_replacement() -> None:
    """A rare label's positives are used evenly, not at random, to cover it in every batch.

    Each pool draw exhausts the three positives before any repeats; the stream adds each of
    them once more, so per-epoch counts differ by at most 2. Random draws with replacement
    over about 20 batches would usually be far more uneven.
    """
    positives = [[0] if i < 3 else [] for i in range(60)]
    for seed in range(5):
        batches = list(cycle_batch_indices(positives, 1, 4, numpy.random.default_rng(seed)))
        counts = [sum(doc in batch for batch in batches) for doc in range(3)]
        assert max(counts) - min(counts) <= 2, counts
        assert sum(counts) >= len(batches)


def test_core_rotates_the_label_served_first() -> None:
    """Coverage starts at a different label each batch, so no label always gets first pick.

    With single-label pools, the document right after the stream head is the positive drawn
    for the starting label; when the head has no positive, that label must alternate.
    """
    positives = [[0]] * 10 + [[1]] * 10 + [[]] * 180
    batches = list(cycle_batch_indices(positives, 2, 6, numpy.random.default_rng(4)))
    first_served = [
        positives[batch[1]][0] if not positives[batch[0]] else None for batch in batches
    ]
    pairs = [(a, b) for a, b in zip(first_served, first_served[1:]) if None not in (a, b)]
    assert len(pairs) > 10
    assert all(a != b for a, b in pairs)


@pytest.fixture(scope="module")
def nlp() -> spacy.language.Language:
    return spacy.blank("en")


def make_examples(nlp: spacy.language.Language, cats: List[Dict[str, float]]) -> List[Example]:
    return [
        Example.from_dict(nlp.make_doc(f"document number {i}"), {"cats": doc_cats})
        for i, doc_cats in enumerate(cats)
    ]


def random_cats(n_docs: int, seed: int) -> List[Dict[str, float]]:
    """Cats over labels of very different frequency, with docs that have no positive."""
    rng = numpy.random.default_rng(seed)
    frequencies = {"anger": 0.3, "fear": 0.05, "joy": 0.5, "surprise": 0.02, "neutral": 0.0}
    cats = []
    for _ in range(n_docs):
        cats.append({name: float(rng.random() < p) for name, p in frequencies.items()})
    cats[0]["surprise"] = 1.0
    cats[1]["fear"] = 1.0
    return cats


def positives_of(eg: Example) -> Set[str]:
    return {name for name, value in eg.reference.cats.items() if value == 1.0}


def batch_ids(batches: List[List[Example]], examples: List[Example]) -> List[List[int]]:
    index = {id(eg): i for i, eg in enumerate(examples)}
    return [[index[id(eg)] for eg in batch] for batch in batches]


def test_registered_batcher_covers_every_label_in_every_batch(nlp: spacy.language.Language) -> None:
    examples = make_examples(nlp, random_cats(200, seed=3))
    batcher = spacy.util.registry.batchers.get("spacy_dallmi.cycle_batcher.v1")(size=8)
    required = set().union(*(positives_of(eg) for eg in examples))
    assert required == {"anger", "fear", "joy", "surprise"}
    for _ in range(2):
        batches = list(batcher(examples))
        ids = batch_ids(batches, examples)
        check_epoch(ids, [sorted(positives_of(eg)) for eg in examples], 8)
        for batch in batches:
            assert set().union(*(positives_of(eg) for eg in batch)) == required


def resolve_batcher(size: int, seed: int) -> Batcher:
    """The batcher a training config's ``[training.batcher]`` block builds."""
    config = spacy.util.Config().from_str(
        f'[batcher]\n@batchers = "spacy_dallmi.cycle_batcher.v1"\nsize = {size}\nseed = {seed}\n'
    )
    return spacy.util.registry.resolve(config)["batcher"]


def test_batcher_from_a_training_config_applies_size_and_seed(
    nlp: spacy.language.Language,
) -> None:
    examples = make_examples(nlp, random_cats(150, seed=5))

    def epoch(size: int, seed: int) -> List[List[int]]:
        return batch_ids(list(resolve_batcher(size, seed)(examples)), examples)

    for size in (7, 16):
        batches = epoch(size, 3)
        assert max(len(batch) for batch in batches) == size
        check_epoch(batches, [sorted(positives_of(eg)) for eg in examples], size)
    # The seed reaches the generator: the config's seed replays configure_cycle_batcher's
    # sequence, another seed gives another order.
    assert epoch(16, 7) == epoch(16, 7)
    assert epoch(16, 7) == batch_ids(list(configure_cycle_batcher(16, 7)(examples)), examples)
    assert epoch(16, 7) != epoch(16, 8)


def test_values_other_than_one_are_not_positives(nlp: spacy.language.Language) -> None:
    cats = []
    for i in range(30):
        cats.append({"a": float(i % 2 == 0), "b": float(i % 3 == 0), "c": 0.5, "d": 0.0})
    cats.append({"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.99})
    examples = make_examples(nlp, cats)
    # Two labels to cover plus a slot for docs without positives: 3 suffices only if neither
    # 0.5, 0.99 nor 0.0 counts as a positive.
    batches = list(configure_cycle_batcher(size=3, seed=0)(examples))
    for batch in batches:
        assert set().union(*(positives_of(eg) for eg in batch)) == {"a", "b"}
    assert {id(eg) for batch in batches for eg in batch} == {id(eg) for eg in examples}


def test_labels_without_positives_are_not_required(nlp: spacy.language.Language) -> None:
    cats = [{"rare": 0.0, "common": 1.0} for _ in range(10)]
    batches = list(configure_cycle_batcher(size=1, seed=0)(make_examples(nlp, cats)))
    assert [len(batch) for batch in batches] == [1] * 10


def test_batcher_error_names_batch_size_and_label_count(nlp: spacy.language.Language) -> None:
    labels = ["l0", "l1", "l2", "l3", "l4", "l5"]
    cats = [{name: float(name == labels[i % 6]) for name in labels} for i in range(12)]
    batcher = configure_cycle_batcher(size=4, seed=0)
    with pytest.raises(ValueError, match=r"Batch size 4 .*\b6 labels.*(batch size|drop labels)"):
        batcher(make_examples(nlp, cats))


@pytest.mark.parametrize("size", [0, -1, 3.0, False, "64"])
def test_configure_rejects_invalid_size(size: object) -> None:
    with pytest.raises(ValueError, match="size must be a positive int"):
        configure_cycle_batcher(size=size)  # type: ignore[arg-type]


def test_configure_rejects_non_int_seed() -> None:
    with pytest.raises(ValueError, match="seed must be an int"):
        configure_cycle_batcher(seed=1.5)  # type: ignore[arg-type]


def test_batcher_is_deterministic_for_a_seed(nlp: spacy.language.Language) -> None:
    examples = make_examples(nlp, random_cats(120, seed=11))

    def run(seed: int) -> List[List[List[int]]]:
        batcher = configure_cycle_batcher(size=10, seed=seed)
        return [batch_ids(list(batcher(examples)), examples) for _ in range(3)]

    first = run(0)
    assert run(0) == first
    assert run(1) != first
    # One generator advances across calls, so consecutive epochs differ.
    assert first[0] != first[1]
    assert first[1] != first[2]


def test_batcher_accepts_a_generator_and_empty_input(nlp: spacy.language.Language) -> None:
    batcher = configure_cycle_batcher(size=6, seed=0)
    assert list(batcher(iter([]))) == []
    examples = make_examples(nlp, random_cats(9, seed=2))
    batches = list(batcher(eg for eg in examples))
    assert {id(eg) for batch in batches for eg in batch} == {id(eg) for eg in examples}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), matrix=label_matrices(), seed=st.integers(0, 2**32 - 1))
def test_positive_sampling_draws_positives_of_labels_in_turn(
    data: st.DataObject, matrix: Tuple[List[List[int]], int], seed: int
) -> None:
    positives, n_labels = matrix
    size = data.draw(st.integers(1, 40))
    required = sorted({label for labels in positives for label in labels})
    if not required:
        with pytest.raises(ValueError, match="has a known positive"):
            positive_sampling_indices(positives, n_labels, size, numpy.random.default_rng(seed))
        return
    batches = list(
        positive_sampling_indices(positives, n_labels, size, numpy.random.default_rng(seed))
    )
    replay = positive_sampling_indices(positives, n_labels, size, numpy.random.default_rng(seed))
    assert batches == list(replay)
    # One slot per document, in batches of `size` (the last may be short).
    assert [len(b) for b in batches[:-1]] == [size] * (len(batches) - 1)
    slots = [doc for batch in batches for doc in batch]
    assert len(slots) == len(positives)
    # Slot k holds a positive of the k-th label of the cycle from some start, so a document
    # without any known positive is never drawn...
    n = len(required)
    assert any(
        all(required[(first + k) % n] in positives[doc] for k, doc in enumerate(slots))
        for first in range(n)
    ), "the slots do not follow the label cycle"
    # ... and every full batch of at least len(required) slots holds each label.
    for batch in batches:
        if len(batch) >= len(required):
            assert set(required) <= {lab for doc in batch for lab in positives[doc]}


def test_positive_sampling_draws_with_replacement_and_skips_unlabeled_docs() -> None:
    # Labels 0 and 1 with 10 positives each, 20 unlabeled docs: 40 slots, 20 per label. Drawn
    # without replacement, a label's first 10 draws would be its 10 docs; with replacement all
    # 10 distinct has probability 10!/10**10 < 0.0004.
    positives = [[0]] * 10 + [[1]] * 10 + [[] for _ in range(20)]
    for seed in range(5):
        batches = list(positive_sampling_indices(positives, 2, 40, numpy.random.default_rng(seed)))
        assert len(batches) == 1 and len(batches[0]) == 40
        drawn = batches[0]
        assert all(doc < 20 for doc in drawn), "a doc without a positive was drawn"
        label0 = [doc for doc in drawn if doc < 10]
        assert len(label0) == 20 and len(set(label0[:10])) < 10


def test_positive_sampling_needs_a_known_positive() -> None:
    rng = numpy.random.default_rng(0)
    assert list(positive_sampling_indices([], 2, 4, rng)) == []
    with pytest.raises(ValueError, match="None of the 3 documents has a known positive"):
        positive_sampling_indices([[], [], []], 2, 4, rng)
    with pytest.raises(ValueError, match="outside range"):
        positive_sampling_indices([[2]], 2, 4, rng)
    with pytest.raises(ValueError, match="positive integer"):
        positive_sampling_indices([[0]], 1, 0, rng)


def test_positive_sampling_batcher_resolves_from_a_config(nlp: spacy.language.Language) -> None:
    examples = make_examples(nlp, random_cats(60, seed=2))
    config = spacy.util.Config().from_str(
        '[batcher]\n@batchers = "spacy_dallmi.positive_sampling_batcher.v1"\nsize = 10\nseed = 4\n'
    )
    batcher = spacy.util.registry.resolve(config)["batcher"]
    batches = list(batcher(examples))
    assert [len(b) for b in batches] == [10] * 6
    required = {"anger", "fear", "joy", "surprise"}
    for batch in batches:
        assert all(positives_of(eg) for eg in batch)
        assert set().union(*(positives_of(eg) for eg in batch)) == required
    with pytest.raises(ValueError, match="positive_sampling_batcher.v1: size"):
        spacy.util.registry.batchers.get("spacy_dallmi.positive_sampling_batcher.v1")(size=0)

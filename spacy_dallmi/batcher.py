"""Label-balanced cycle batching for positive-unlabeled multi-label training.

DALLMi's variational PU loss estimates, for every label, a term over that label's *known
positives* in the batch. A batch without a single positive of some label gives that label no
positive signal at all (its loss term is undefined or degenerates), so a plain random batcher
is not enough when some labels are rare. This batcher builds every batch in three steps:

1. Take the next document of the epoch's shuffled *stream*. Taking it first guarantees that
   every batch consumes at least one stream item, so an epoch always terminates.
2. Cycle through the labels (the starting label rotates from batch to batch so no label is
   always served first) and, for each label not yet covered by a document already in the
   batch, add one of its positives. Positives are drawn without replacement within the epoch
   from that label's shuffled pool, which is reshuffled when it runs out. A multi-label
   document covers all of its labels at once.
3. Fill the remaining slots from the stream. A stream item that is already in the batch
   counts as seen and is consumed, so no batch holds a document twice.

The epoch ends when the stream is exhausted; the last batch still gets full label coverage.

A value of exactly ``1.0`` in ``eg.reference.cats`` is a known positive; any other value, or
an absent label, is unlabeled. Labels are ordered by sorted name, so results do not depend on
dict order.

Guarantees, for every call of the configured batcher (one call = one epoch):

(1) every batch holds at least one positive of every label that has a positive in the data;
(2) every example appears in the epoch at least once (positives may appear more often, since
    they are also drawn to cover labels);
(3) no batch is larger than ``size``;
(4) the sequence of batches is deterministic for a given seed and the same inputs;
(5) no example appears twice in one batch.

Empty input yields no batches. Without any positives the batcher degrades to plain shuffled
batches of ``size``. The batch size must be at least the number of labels to cover, plus one
when some document has no known positive (that document needs a slot beside one positive per
label); smaller sizes raise a ``ValueError``. Work per epoch is linear in the number of
documents, positives and batches.

Caveats: spaCy's ``[training] accumulate_gradient > 1`` splits each batch into sub-batches,
which breaks guarantee (1); the ``dallmi_textcat`` component rejects that setting. The
batcher needs the whole epoch in memory, so streamed corpora (``max_epochs = -1``) are not
supported.
"""

from typing import Callable, Iterable, Iterator, List, Sequence, Set, Tuple

import numpy
import spacy
from spacy.training import Example

__all__ = [
    "configure_cycle_batcher",
    "configure_positive_sampling_batcher",
    "cycle_batch_indices",
    "min_batch_size",
    "positive_sampling_indices",
]

Batcher = Callable[[Iterable[Example]], Iterator[List[Example]]]


def min_batch_size(positives: Sequence[Sequence[int]]) -> int:
    """Return the smallest batch size for which the cycle batching can keep its guarantees.

    Every label with a positive needs one slot in the worst case (all its positives are
    single-label documents). A document without any known positive covers no label, so it can
    only enter a batch through an extra slot beside the label coverage.
    """
    covered = {label for labels in positives for label in labels}
    needs_free_slot = any(len(labels) == 0 for labels in positives)
    return max(1, len(covered) + int(needs_free_slot))


def cycle_batch_indices(
    positives: Sequence[Sequence[int]],
    n_labels: int,
    size: int,
    rng: numpy.random.Generator,
) -> Iterator[List[int]]:
    """Yield one epoch of label-balanced batches of document indices.

    `positives[i]` lists the label ids (in ``range(n_labels)``) that document ``i`` has as
    known positives. Labels without any positive are not required in batches, since no batch
    could hold one. Arguments are validated eagerly, so a too-small ``size`` fails at the call
    rather than at the first batch. ``rng`` is advanced by the epoch, which lets a caller
    reuse one generator to get different yet reproducible epochs.

    Raises:
        ValueError: if ``size`` is not a positive int, a label id is out of range, or ``size``
            is too small to cover every label with a positive (see ``min_batch_size``).
    """
    _check_size(size)
    doc_labels = [sorted(set(labels)) for labels in positives]
    pools = _label_pools(doc_labels, n_labels)
    required = [label for label in range(n_labels) if pools[label]]
    needed = min_batch_size(doc_labels)
    if size < needed:
        slot_note = (
            ", plus 1 slot for documents without any known positive"
            if needed > len(required)
            else ""
        )
        raise ValueError(
            f"Batch size {size} is too small: every batch must hold a positive of each of the "
            f"{len(required)} labels with known positives{slot_note}. Raise the batch size to "
            f"at least {needed} or drop labels with few positives."
        )
    return _generate_epoch(doc_labels, pools, required, size, rng)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"Batch size must be a positive integer, got {size!r}.")


def _label_pools(doc_labels: Sequence[Sequence[int]], n_labels: int) -> List[List[int]]:
    """Per label id, the documents that have it as a known positive, in document order."""
    pools: List[List[int]] = [[] for _ in range(n_labels)]
    for doc, labels in enumerate(doc_labels):
        for label in labels:
            if not 0 <= label < n_labels:
                raise ValueError(
                    f"Document {doc} has positive label id {label}, outside range({n_labels})."
                )
            pools[label].append(doc)
    return pools


def _generate_epoch(
    doc_labels: List[List[int]],
    pools: List[List[int]],
    required: List[int],
    size: int,
    rng: numpy.random.Generator,
) -> Iterator[List[int]]:
    """Run the three-step batch construction described in the module docstring.

    Coverage is tracked with a per-label stamp (the number of the batch that last covered the
    label) instead of a fresh set per batch, so starting a batch costs nothing and a batch
    costs time proportional to its size plus the number of required labels.
    """
    n_docs = len(doc_labels)
    if n_docs == 0:
        return
    stream: List[int] = rng.permutation(n_docs).tolist()
    shuffled = {label: rng.permutation(pools[label]).tolist() for label in required}
    cursor = dict.fromkeys(required, 0)
    covered_in = dict.fromkeys(required, -1)
    start = int(rng.integers(len(required))) if required else 0
    position = 0
    batch_no = 0
    batch: List[int] = []
    members: Set[int] = set()

    def add(doc: int) -> None:
        """Put `doc` into the batch being built and mark the labels it covers there."""
        batch.append(doc)
        members.add(doc)
        for label in doc_labels[doc]:
            covered_in[label] = batch_no

    while position < n_docs:
        batch = []
        members = set()
        add(stream[position])
        position += 1
        for offset in range(len(required)):
            label = required[(start + offset) % len(required)]
            if covered_in[label] == batch_no:
                continue
            if cursor[label] == len(shuffled[label]):
                shuffled[label] = rng.permutation(shuffled[label]).tolist()
                cursor[label] = 0
            add(shuffled[label][cursor[label]])
            cursor[label] += 1
        while len(batch) < size and position < n_docs:
            doc = stream[position]
            position += 1
            if doc not in members:
                add(doc)
        yield batch
        batch_no += 1
        if required:
            start = (start + 1) % len(required)


@spacy.util.registry.batchers("spacy_dallmi.cycle_batcher.v1")
def configure_cycle_batcher(size: int = 64, seed: int = 0) -> Batcher:
    """Create a label-balanced batcher for spaCy's ``[training.batcher]`` block.

    One ``numpy.random.default_rng(seed)`` is created here and advanced across calls, because
    spaCy calls the batcher once per epoch: each epoch then gets different batches while the
    whole run stays reproducible for a seed. The labels to cover are derived from each call's
    examples (sorted label names with at least one value of exactly 1.0).

    Raises:
        ValueError: if ``size`` is not a positive int or ``seed`` is not an int; calling the
            batcher raises it if ``size`` is too small for the labels to cover.
    """
    rng = _configured_rng("spacy_dallmi.cycle_batcher.v1", size, seed)
    return _example_batcher(cycle_batch_indices, size, rng)


IndexBatcher = Callable[
    [Sequence[Sequence[int]], int, int, numpy.random.Generator], Iterator[List[int]]
]


def _example_batcher(indices: IndexBatcher, size: int, rng: numpy.random.Generator) -> Batcher:
    """A spaCy batcher (one call = one epoch) from an index-level one such as
    :func:`cycle_batch_indices`, fed each example's known positives."""

    def batcher(items: Iterable[Example]) -> Iterator[List[Example]]:
        examples = list(items)
        labels, positives = _known_positives(examples)
        batches = indices(positives, len(labels), size, rng)
        return ([examples[i] for i in batch] for batch in batches)

    return batcher


def _configured_rng(name: str, size: int, seed: int) -> numpy.random.Generator:
    """Check a registered batcher's arguments and make its generator."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name}: size must be a positive int, got {size!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{name}: seed must be an int, got {seed!r}.")
    return numpy.random.default_rng(seed)


def _known_positives(examples: Sequence[Example]) -> Tuple[List[str], List[List[int]]]:
    """The sorted names of the labels with a known positive (a value of exactly 1.0), and
    each example's known positives as ids into them."""
    positive_names = [
        [name for name, value in eg.reference.cats.items() if value == 1.0] for eg in examples
    ]
    labels = sorted({name for names in positive_names for name in names})
    label_ids = {name: i for i, name in enumerate(labels)}
    return labels, [[label_ids[name] for name in names] for names in positive_names]


def positive_sampling_indices(
    positives: Sequence[Sequence[int]],
    n_labels: int,
    size: int,
    rng: numpy.random.Generator,
) -> Iterator[List[int]]:
    """Yield one epoch of the reference code's sampling, for the batching ablation (Table 4).

    The authors' trainers that balance labels draw, for each slot, one positive of the next
    label in turn, uniformly *with replacement*, and an epoch has as many slots as there are
    documents. The differences from :func:`cycle_batch_indices` are what the ablation
    measures: a document without any known positive is never drawn (so the "unlabeled" side
    of a label's loss holds only other labels' positives), a document may appear twice in a
    batch, and an epoch need not visit every document. A batch with at least as many slots
    as there are labels with a known positive holds a positive of each.

    Two details differ from the reference sampler, neither of which the ablation is about:
    the cycle starts at a random label each epoch (the reference carries its position over
    from the last epoch), and a label without any positive is skipped (the reference fails).

    Raises:
        ValueError: if ``size`` is not a positive int, a label id is out of range, or there
            are documents but none with a known positive (nothing could be drawn).
    """
    _check_size(size)
    pools = _label_pools([sorted(set(labels)) for labels in positives], n_labels)
    required = [label for label in range(n_labels) if pools[label]]
    if positives and not required:
        raise ValueError(
            f"None of the {len(positives)} documents has a known positive: the positive "
            "sampling draws only positives. Use spacy_dallmi.cycle_batcher.v1 instead."
        )
    return _sample_epoch(pools, required, len(positives), size, rng)


def _sample_epoch(
    pools: List[List[int]],
    required: List[int],
    n_docs: int,
    size: int,
    rng: numpy.random.Generator,
) -> Iterator[List[int]]:
    """Draw the epoch's ``n_docs`` slots (slot k: a random positive of the k-th label of the
    cycle) and cut them into batches of ``size``."""
    if not n_docs:
        return
    start = int(rng.integers(len(required)))
    draws = [
        pools[label][int(rng.integers(len(pools[label])))]
        for label in (required[(start + slot) % len(required)] for slot in range(n_docs))
    ]
    for begin in range(0, n_docs, size):
        yield draws[begin : begin + size]


@spacy.util.registry.batchers("spacy_dallmi.positive_sampling_batcher.v1")
def configure_positive_sampling_batcher(size: int = 64, seed: int = 0) -> Batcher:
    """The reference code's one-positive-per-label sampling as a spaCy batcher, for the
    batching ablation only (see :func:`positive_sampling_indices`); DALLMi's default is
    ``spacy_dallmi.cycle_batcher.v1``.

    Raises:
        ValueError: if ``size`` is not a positive int or ``seed`` is not an int; calling the
            batcher raises it if no example has a known positive.
    """
    rng = _configured_rng("spacy_dallmi.positive_sampling_batcher.v1", size, seed)
    return _example_batcher(positive_sampling_indices, size, rng)

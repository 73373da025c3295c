"""The experiment protocol: label-set alignment, train/test splits, caps and label hiding.

:func:`hide_labels` is the repository's one simulation of partial annotation. Every random
step draws from a generator of its own (:func:`stream`), so changing one setting (the ratio, a
cap) changes no other step's outcome: runs at 50/70/90% share their test split.
"""

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy

from .readers import DataPreparationError, DomainPair, LabelSetError

REMOVAL_MODES = ("per_sample", "per_label")
_STEPS = ("domains", "source_split", "target_split", "source_train_cap", "source_test_cap")
_STEPS += ("target_train_cap", "target_test_cap", "hiding", "target_valid", "valid_hiding")
#: One generator per random step, numbered in this order (never reorder: it changes seeds).
STREAMS = {name: number for number, name in enumerate(_STEPS)}


def stream(seed: int, name: str) -> numpy.random.Generator:
    return numpy.random.default_rng([seed, STREAMS[name]])


def _is_unit(value: Any, low_open: bool = True) -> bool:
    """Whether ``value`` is a real number in (0, 1), or [0, 1) (NaN and bools are not)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    return (0.0 < float(value) if low_open else 0.0 <= float(value)) and float(value) < 1.0


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_ratio(ratio: Any, allow_zero: bool = False) -> None:
    """Reject ratios outside (0, 1); 0 (nothing hidden) only for partial labels (``allow_zero``)."""
    if not _is_unit(ratio, low_open=not allow_zero):
        low = "0 (labels already partial)" if allow_zero else "strictly above 0"
        raise DataPreparationError(
            f"ratio must be {low} and below 1 (the share of target positives to hide, "
            f"e.g. 0.5, 0.7 or 0.9), got {ratio!r}"
        )


@dataclass(frozen=True)
class PrepareSettings:
    """The experiment settings, checked on construction, before anything is read. ``ratio``
    0: the target's labels are already partial. ``max_docs`` caps every split a per-domain cap
    does not; ``valid_fraction`` carves a validation slice out of target train (None: none)."""

    dataset: str
    ratio: float
    removal: str = "per_sample"
    seed: int = 0
    max_docs: Optional[int] = None
    test_fraction: float = 0.2
    max_source_docs: Optional[int] = None
    max_target_docs: Optional[int] = None
    max_target_test_docs: Optional[int] = None
    target_test_fraction: Optional[float] = None
    valid_fraction: Optional[float] = None

    def __post_init__(self) -> None:
        check_ratio(self.ratio, allow_zero=True)
        check_removal(self.removal)
        if not _is_integer(self.seed):
            raise DataPreparationError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise DataPreparationError(f"seed must be >= 0, got {self.seed!r}")
        for name in ("max_docs", "max_source_docs", "max_target_docs", "max_target_test_docs"):
            value = getattr(self, name)
            if value is not None and (not _is_integer(value) or value < 1):
                raise DataPreparationError(
                    f"{name} must be a positive integer or None, got {value!r}"
                )
        for name in ("test_fraction", "target_test_fraction", "valid_fraction"):
            value = getattr(self, name)
            if (value is not None or name == "test_fraction") and not _is_unit(value):
                raise DataPreparationError(
                    f"{name} must be strictly between 0 and 1, got {value!r}"
                )

    @property
    def hides(self) -> bool:
        return self.ratio > 0

    def cap(self, split: str) -> Optional[int]:
        """The most docs kept in ``split`` (e.g. ``source_test``); None = no cap."""
        if split.startswith("source"):
            specific = self.max_source_docs
        elif split == "target_test":
            specific = self.max_target_test_docs
        else:
            specific = self.max_target_docs
        return specific if specific is not None else self.max_docs

    def split_fraction(self, side: str) -> float:
        if side == "target" and self.target_test_fraction is not None:
            return self.target_test_fraction
        return self.test_fraction

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def check_removal(removal: str) -> None:
    if removal not in REMOVAL_MODES:
        raise DataPreparationError(
            f"removal must be one of {', '.join(REMOVAL_MODES)}, got {removal!r}"
        )


def round_half_up(values: Union[numpy.ndarray, float]) -> numpy.ndarray:
    """Round halves up (Python's round() rounds them to even, which would bias small counts)."""
    return numpy.floor(numpy.asarray(values, dtype=float) + 0.5).astype(int)


def check_label_sets(
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    label_map: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """Check that every target label, after ``label_map`` (target -> source name), is a source
    label (the model cannot adapt to a label it never saw) and that the map is one-to-one on
    target labels; return the effective renaming."""
    mapping = dict(label_map or {})
    unknown_keys = [key for key in mapping if key not in target_labels]
    if unknown_keys:
        raise LabelSetError(
            f"label_map names target label(s) {', '.join(unknown_keys)} that the target data "
            f"does not have (target labels: {', '.join(target_labels)})."
        )
    renamed = [mapping.get(label, label) for label in target_labels]
    clashes = sorted({name for name in renamed if renamed.count(name) > 1})
    if clashes:
        raise LabelSetError(
            f"label_map gives several target labels the same name: {', '.join(clashes)}."
        )
    unknown = [
        f"{label} (mapped to {mapping[label]})" if label in mapping else label
        for label, name in zip(target_labels, renamed)
        if name not in source_labels
    ]
    if unknown:
        raise LabelSetError(
            f"Target label(s) {', '.join(unknown)} are not labels of the source domain "
            f"(source labels: {', '.join(source_labels)}). Pass a label_map from target to "
            f'source names (e.g. --label-map map.json holding {{"happy": "joy"}}) or drop '
            f"the label(s) by restricting the label set (labels=... / --labels)."
        )
    return {key: value for key, value in mapping.items() if key != value}


def align_domains(
    pair: DomainPair,
    label_map: Optional[Mapping[str, str]] = None,
    labels: Optional[Sequence[str]] = None,
) -> Tuple[DomainPair, Dict[str, Any]]:
    """Give the target the source's label names and order, both restricted to ``labels`` first
    (a target label outside them is dropped and counted, not unknown); return the pair and
    what was done."""
    source, target = pair.source, pair.target
    label_map = dict(label_map or {})
    if labels is not None:
        labels = list(labels)
        if not labels or len(set(labels)) != len(labels):
            raise LabelSetError(f"labels must be non-empty and without repeats, got {labels}")
        keep = [name for name in target.labels if label_map.get(name, name) in labels]
        # Map entries of target labels dropped here are moot; unknown names stay to be reported.
        label_map = {
            key: value
            for key, value in label_map.items()
            if key in keep or key not in target.labels
        }
        source = source.select_labels(labels)
        target = target.select_labels(keep)
    mapping = check_label_sets(source.labels, target.labels, label_map)
    target = target.rename_labels(mapping)
    info = {
        "renamed_target_labels": mapping,
        "source_labels_missing_in_target": [x for x in source.labels if x not in target.labels],
    }
    aligned = DomainPair(source, target.align_to(source.labels), pair.reports, pair.details)
    return aligned, info


def split_train_test(
    n_docs: int, test_fraction: float, rng: numpy.random.Generator
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Sorted random train/test indices: round(fraction * n) test docs, at least one on each
    side whenever there are two or more docs."""
    n_test = int(round_half_up(n_docs * test_fraction))
    if n_docs >= 2:
        n_test = min(max(n_test, 1), n_docs - 1)
    order = rng.permutation(n_docs)
    return numpy.sort(order[n_test:]), numpy.sort(order[:n_test])


def keep_duplicates_together(
    train: numpy.ndarray, test: numpy.ndarray, texts: Sequence[str]
) -> Tuple[numpy.ndarray, numpy.ndarray, int]:
    """Put every copy of a text on the side of its first copy, so no text is in both train and
    test; return the sides and how many docs moved (-1: moving would empty a side, so none)."""
    in_test = numpy.zeros(len(texts), dtype=bool)
    in_test[numpy.asarray(test, dtype=int)] = True
    first_side: Dict[str, bool] = {}
    wanted = numpy.array([first_side.setdefault(text, side) for text, side in zip(texts, in_test)])
    wanted = wanted.astype(bool) if len(texts) else in_test
    moved = int((wanted != in_test).sum())
    if moved and (wanted.all() or not wanted.any()):
        return numpy.asarray(train), numpy.asarray(test), -1
    return numpy.flatnonzero(~wanted), numpy.flatnonzero(wanted), moved


def cap_indices(
    indices: numpy.ndarray, max_docs: Optional[int], rng: numpy.random.Generator
) -> numpy.ndarray:
    if max_docs is None or len(indices) <= max_docs:
        return numpy.asarray(indices)
    return numpy.sort(rng.choice(indices, size=max_docs, replace=False))


@dataclass(frozen=True)
class HidingResult:
    """The partial matrix of :func:`hide_labels`; ``hidden``, the positives that are 0 in it;
    ``restored``, those drawn but put back so that their label keeps a known positive."""

    partial: numpy.ndarray
    hidden: numpy.ndarray
    restored: numpy.ndarray
    positives_per_label: numpy.ndarray
    ratio: float
    removal: str

    @property
    def hidden_per_label(self) -> numpy.ndarray:
        return self.hidden.sum(axis=0)

    @property
    def restored_per_label(self) -> numpy.ndarray:
        return self.restored.sum(axis=0)

    @property
    def n_positives(self) -> int:
        return int(self.positives_per_label.sum())

    @property
    def n_hidden(self) -> int:
        return int(self.hidden.sum())

    @property
    def n_restored(self) -> int:
        return int(self.restored.sum())

    @property
    def achieved_ratio(self) -> float:
        """Share of positives hidden; NaN without positives."""
        return self.n_hidden / self.n_positives if self.n_positives else math.nan


def _rank_within(keys: numpy.ndarray, axis: int) -> numpy.ndarray:
    """Rank of each entry along ``axis`` (0 = smallest); with random keys, a random order."""
    order = numpy.argsort(keys, axis=axis, kind="stable")
    return numpy.argsort(order, axis=axis, kind="stable")


def _hide_per_sample(
    positive: numpy.ndarray, ratio: float, rng: numpy.random.Generator
) -> numpy.ndarray:
    """Hide floor or ceil of ratio*k of each document's k positives (the paper's protocol),
    ceil with probability frac(ratio*k), coupled by systematic sampling (one uniform offset,
    random doc order) so that the total is within one of ratio * all positives."""
    counts = positive.sum(axis=1)
    wanted = ratio * counts
    base = numpy.floor(wanted + 1e-9)
    fraction = numpy.clip(wanted - base, 0.0, 1.0)
    order = rng.permutation(len(counts))
    edges = numpy.floor(numpy.concatenate(([0.0], numpy.cumsum(fraction[order]))) + rng.random())
    extra = numpy.zeros(len(counts))
    extra[order] = numpy.clip(numpy.diff(edges), 0, 1)
    n_hide = numpy.minimum(base + extra, counts).astype(int)
    keys = numpy.where(positive, rng.random(positive.shape), numpy.inf)
    return positive & (_rank_within(keys, axis=1) < n_hide[:, None])


def _hide_per_label(
    positive: numpy.ndarray, ratio: float, rng: numpy.random.Generator
) -> numpy.ndarray:
    """Hide round(ratio * n) of each label's n positives, chosen uniformly."""
    n_hide = round_half_up(ratio * positive.sum(axis=0))
    keys = numpy.where(positive, rng.random(positive.shape), numpy.inf)
    return positive & (_rank_within(keys, axis=0) < n_hide[None, :])


def hide_labels(
    label_matrix: Union[numpy.ndarray, Sequence[Sequence[int]]],
    ratio: float,
    removal: str,
    rng: Union[numpy.random.Generator, int],
) -> HidingResult:
    """Hide a share ``ratio`` of the positives of a 0/1 matrix (docs x labels): a hidden
    positive becomes 0, "unlabeled" to DALLMi. ``removal``: ``per_sample`` (each document loses
    ``ratio`` of its positives, as in the paper) or ``per_label`` (round(ratio * n) of each
    label's n). A label left without a known positive gets one back at random: neither
    DALLMi's loss nor the batcher can use it otherwise. ``rng``: a Generator or a seed."""
    check_ratio(ratio)
    check_removal(removal)
    full = numpy.asarray(label_matrix)
    if full.ndim != 2:
        raise DataPreparationError(f"label_matrix must be 2-D (docs x labels), got {full.shape}")
    if not numpy.isin(full, (0, 1)).all():
        raise DataPreparationError("label_matrix must hold only 0/1 (or boolean) values")
    generator = numpy.random.default_rng(rng)
    positive = full.astype(bool)
    hide = _hide_per_sample if removal == "per_sample" else _hide_per_label
    hidden = hide(positive, float(ratio), generator)
    restored = numpy.zeros_like(hidden)
    for j in range(positive.shape[1]):
        if positive[:, j].any() and not (positive[:, j] & ~hidden[:, j]).any():
            pick = generator.choice(numpy.flatnonzero(hidden[:, j]))
            hidden[pick, j] = False
            restored[pick, j] = True
    partial = full.copy()
    partial[hidden] = 0
    return HidingResult(partial, hidden, restored, positive.sum(axis=0), float(ratio), removal)

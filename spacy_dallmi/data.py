"""Turn multi-label text data into spaCy corpora for DALLMi domain adaptation.

DALLMi adapts a classifier trained on a fully labelled *source* domain to a *target* domain in
which only some positive labels are known. An experiment therefore needs five corpora, which
this module writes as ``DocBin`` files (``doc.cats`` holds every label, ``1.0`` or ``0.0``):

- ``source_train.spacy`` / ``source_test.spacy``: the labelled source domain;
- ``target_train.spacy``: the target train split with a share of its positives hidden
  (``0.0`` = unlabeled), the data DALLMi and the partial-label baseline train on;
- ``target_train_full.spacy``: the same documents with all labels, for the upper-bound
  baseline;
- ``target_test.spacy``: the fully labelled target test split, for evaluation;

plus ``labels.json`` (the ordered label list) and ``stats.json`` (counts per split, every row,
label or positive that was dropped or changed and why, and the settings used).

Two layers keep the readers separate from the experiment protocol:

1. Readers (:func:`read_table` and the built-in layouts in :func:`load_dataset`) turn files
   into a :class:`Corpus` (texts plus a boolean label matrix) and a :class:`ReadReport` that
   counts every row that was left out, by reason, so nothing disappears silently.
2. :func:`prepare_domains` is the one place that aligns the label sets, splits each domain
   80/20, caps the splits, hides target labels (:func:`hide_labels`) and writes the output.
   :func:`prepare_dataset` (built-in layouts) and :func:`prepare_files` (users' own files) both
   end there.

Every random step draws from its own generator derived from the seed, so that changing one
setting (say the hiding ratio or ``max_docs``) does not change the outcome of another step
(say the train/test split): runs at 50/70/90% hidden labels share their test split.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import numbers
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import DocBin
from wasabi import Printer

__all__ = [
    "DATASETS",
    "EMOTION_LABELS",
    "MESH_ROOTS",
    "OUTPUT_FILES",
    "REMOVAL_MODES",
    "Corpus",
    "DataFileNotFoundError",
    "DataPreparationError",
    "DomainPair",
    "HidingResult",
    "LabelSetError",
    "MissingColumnError",
    "PrepareSettings",
    "ReadReport",
    "align_domains",
    "cap_indices",
    "check_label_sets",
    "detect_format",
    "hide_labels",
    "load_dataset",
    "load_emotions",
    "load_pubmed",
    "prepare_dataset",
    "prepare_domains",
    "prepare_files",
    "read_goemotions",
    "read_table",
    "split_train_test",
]

PathLike = Union[str, Path]

#: The 8 emotions GoEmotions and SemEval-2018 E-c share, in the order the corpora use.
EMOTION_LABELS = ("anger", "disgust", "fear", "joy", "love", "optimism", "sadness", "surprise")
#: All label columns of SemEval-2018 E-c; the 3 not in EMOTION_LABELS are dropped (and counted).
SEMEVAL_LABELS = (
    "anger",
    "anticipation",
    "disgust",
    "fear",
    "joy",
    "love",
    "optimism",
    "pessimism",
    "sadness",
    "surprise",
    "trust",
)
#: The 14 MeSH tree roots that are one-hot columns of the PubMed CSVs (the paper's 14 labels).
MESH_ROOTS = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "L", "M", "N", "Z")
GOEMOTIONS_FILES = ("train.tsv", "dev.tsv", "test.tsv")
SEMEVAL_FILES = ("2018-E-c-En-train.txt", "2018-E-c-En-dev.txt")
PUBMED_FILES = (
    "train-data-small.csv",
    "dev-data-small.csv",
    "test-data-small.csv",
    "dev-data-med.csv",
    "test-data-med.csv",
)
DATASETS = ("emotions", "pubmed")
REMOVAL_MODES = ("per_sample", "per_label")
FORMATS = ("csv", "tsv", "jsonl")
#: Split name -> DocBin file name, in the order they are written and reported.
OUTPUT_FILES = {
    "source_train": "source_train.spacy",
    "source_test": "source_test.spacy",
    "target_train": "target_train.spacy",
    "target_train_full": "target_train_full.spacy",
    "target_test": "target_test.spacy",
}
LABELS_FILE = "labels.json"
STATS_FILE = "stats.json"

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_LABEL_SEPARATORS = re.compile(r"[,;|]")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}
#: Why a row can be left out; written next to the counts in the printed summary.
SKIP_REASONS = {
    "empty_text": "empty or whitespace-only text",
    "missing_labels": "no label value (blank label cell or missing key)",
    "unparseable_labels": "a label value that is not 0/1, or not a list of label names/ids",
    "invalid_json": "a line that is not a JSON object",
    "missing_pmid": "no pmid, so it cannot be deduplicated",
    "duplicate_pmid": "the same pmid as an earlier row (the first one is kept)",
    "unparseable_meshMajor": "meshMajor is not a Python-style list of strings",
    "tagged_neither": "meshMajor tags neither Male nor Female, so it is in neither domain",
}
#: One generator per random step (see the module docstring for why they are independent).
_STREAMS = {
    "domains": 0,
    "source_split": 1,
    "target_split": 2,
    "source_train_cap": 3,
    "source_test_cap": 4,
    "target_train_cap": 5,
    "target_test_cap": 6,
    "hiding": 7,
}


class DataPreparationError(ValueError):
    """Input data or settings that cannot be turned into a corpus; the message says how to fix."""


class MissingColumnError(DataPreparationError):
    """A requested column is not in the file; the message lists the columns that are."""


class LabelSetError(DataPreparationError):
    """Source and target label sets that cannot be aligned (unknown label, bad mapping)."""


class DataFileNotFoundError(FileNotFoundError):
    """A data file is missing; the message names the path and how to fetch it."""


class _RowProblem(Exception):
    """Internal signal that one row cannot be used, carrying the reason it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ReadReport:
    """What happened to the rows of one read: how many were seen, which were left out and why.

    Readers never drop a row without recording it here, so that the numbers in ``stats.json``
    add up (``rows == kept + sum(skipped counts)``) and a user can find the offending rows
    (``skipped`` holds ``file:line`` ids).
    """

    origin: str
    rows: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    dropped_labels: dict[str, int] = field(default_factory=dict)
    emptied_docs: int = 0

    def skip(self, reason: str, row_id: str) -> None:
        """Record that row ``row_id`` was left out for ``reason`` (a key of SKIP_REASONS)."""
        self.skipped.setdefault(reason, []).append(row_id)

    @property
    def skipped_counts(self) -> dict[str, int]:
        """Number of rows left out, per reason."""
        return {reason: len(ids) for reason, ids in sorted(self.skipped.items())}

    @property
    def kept(self) -> int:
        """Rows that became documents."""
        return self.rows - sum(len(ids) for ids in self.skipped.values())

    def to_dict(self, examples: int = 5) -> dict[str, Any]:
        """JSON-ready summary; only the first ``examples`` row ids per reason, to stay small."""
        return {
            "origin": self.origin,
            "rows": self.rows,
            "kept": self.kept,
            "skipped": self.skipped_counts,
            "skipped_examples": {r: ids[:examples] for r, ids in sorted(self.skipped.items())},
            "dropped_labels": dict(self.dropped_labels),
            "emptied_docs": self.emptied_docs,
        }


@dataclass
class Corpus:
    """Texts with a boolean label matrix (docs x labels) and the report of how they were read.

    A matrix rather than per-doc label sets, because splitting, hiding and counting are all
    column or row operations on it.
    """

    texts: list[str]
    labels: list[str]
    matrix: np.ndarray
    report: ReadReport

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=bool)
        if self.matrix.shape != (len(self.texts), len(self.labels)):
            raise DataPreparationError(
                f"Label matrix of shape {self.matrix.shape} does not fit {len(self.texts)} "
                f"texts and {len(self.labels)} labels."
            )
        if len(set(self.labels)) != len(self.labels):
            raise LabelSetError(f"Duplicate label names in {self.report.origin}: {self.labels}")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Corpus:
        """The documents at ``indices``; the read report is shared, since no row is re-read."""
        idx = np.asarray(indices, dtype=int)
        return Corpus(
            [self.texts[i] for i in idx], list(self.labels), self.matrix[idx], self.report
        )

    def select_labels(self, keep: Sequence[str]) -> Corpus:
        """Keep the labels ``keep`` (in that order), counting the positives of the others.

        The dropped positives are added to ``report.dropped_labels`` and documents that lose
        all their positives to ``report.emptied_docs``: they stay in as all-negative examples,
        which is what they are for the kept label set.
        """
        missing = [label for label in keep if label not in self.labels]
        if missing:
            raise LabelSetError(
                f"Label(s) {', '.join(missing)} not found in {self.report.origin} "
                f"(labels found: {', '.join(self.labels) or 'none'})."
            )
        columns = [self.labels.index(label) for label in keep]
        for j, label in enumerate(self.labels):
            if label not in keep:
                dropped = int(self.matrix[:, j].sum())
                self.report.dropped_labels[label] = (
                    self.report.dropped_labels.get(label, 0) + dropped
                )
        kept = self.matrix[:, columns]
        self.report.emptied_docs += int((self.matrix.any(axis=1) & ~kept.any(axis=1)).sum())
        return Corpus(list(self.texts), list(keep), kept, self.report)

    def rename_labels(self, mapping: Mapping[str, str]) -> Corpus:
        """Rename labels (old name -> new name); names not in ``mapping`` stay as they are."""
        renamed = [mapping.get(label, label) for label in self.labels]
        return Corpus(list(self.texts), renamed, self.matrix.copy(), self.report)

    def align_to(self, labels: Sequence[str]) -> Corpus:
        """Reorder columns to ``labels``; labels this corpus lacks become all-zero columns."""
        unknown = [label for label in self.labels if label not in labels]
        if unknown:
            raise LabelSetError(f"Cannot align labels {unknown} of {self.report.origin}.")
        matrix = np.zeros((len(self), len(labels)), dtype=bool)
        for j, label in enumerate(labels):
            if label in self.labels:
                matrix[:, j] = self.matrix[:, self.labels.index(label)]
        return Corpus(list(self.texts), list(labels), matrix, self.report)


@dataclass
class DomainPair:
    """A source and a target corpus, with the read reports and dataset-level counts behind them.

    ``reports`` is keyed by a name for each read (e.g. ``source``/``target``, or ``pubmed`` when
    one pool of files feeds both domains); ``details`` holds counts that belong to neither
    domain alone (duplicates, coin flips).
    """

    source: Corpus
    target: Corpus
    reports: dict[str, ReadReport]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PrepareSettings:
    """The experiment settings, checked on construction so bad values fail before any reading."""

    dataset: str
    ratio: float
    removal: str = "per_sample"
    seed: int = 0
    max_docs: Optional[int] = None
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_ratio(self.ratio)
        _check_removal(self.removal)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise DataPreparationError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise DataPreparationError(f"seed must be >= 0, got {self.seed!r}")
        if self.max_docs is not None and (
            isinstance(self.max_docs, bool)
            or not isinstance(self.max_docs, numbers.Integral)
            or self.max_docs < 1
        ):
            raise DataPreparationError(
                f"max_docs must be a positive integer or None, got {self.max_docs!r}"
            )
        if not _is_open_unit(self.test_fraction):
            raise DataPreparationError(
                f"test_fraction must be strictly between 0 and 1, got {self.test_fraction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy, written to ``stats.json`` so every output says how it was made."""
        return asdict(self)


@dataclass(frozen=True)
class HidingResult:
    """Outcome of :func:`hide_labels`: the partial matrix and what was hidden or restored.

    ``hidden`` and ``restored`` are boolean masks of the input's shape: ``hidden`` marks the
    positives that are 0 in ``partial``; ``restored`` marks positives that were drawn for hiding
    but put back so that their label keeps one known positive (they are not in ``hidden``).
    """

    partial: np.ndarray
    hidden: np.ndarray
    restored: np.ndarray
    positives_per_label: np.ndarray
    ratio: float
    removal: str

    @property
    def hidden_per_label(self) -> np.ndarray:
        """Hidden positives per label."""
        return self.hidden.sum(axis=0)

    @property
    def restored_per_label(self) -> np.ndarray:
        """Restored positives per label (0 or 1)."""
        return self.restored.sum(axis=0)

    @property
    def n_positives(self) -> int:
        """Positives before hiding."""
        return int(self.positives_per_label.sum())

    @property
    def n_hidden(self) -> int:
        """Positives hidden in the end (after restoration)."""
        return int(self.hidden.sum())

    @property
    def n_restored(self) -> int:
        """Positives restored to keep every label's last known positive."""
        return int(self.restored.sum())

    @property
    def achieved_ratio(self) -> float:
        """Share of positives hidden; NaN without positives (there is nothing to hide)."""
        return self.n_hidden / self.n_positives if self.n_positives else math.nan


# --------------------------------------------------------------------------------------------
# Checks and small helpers


def _is_open_unit(value: Any) -> bool:
    """Whether ``value`` is a real number strictly between 0 and 1 (NaN and bools are not)."""
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) < 1.0
    )


def _check_ratio(ratio: Any) -> None:
    """Reject hiding ratios outside (0, 1): 0 hides nothing and 1 would leave no positive."""
    if not _is_open_unit(ratio):
        raise DataPreparationError(
            f"ratio must be strictly between 0 and 1 (the share of target positives to hide, "
            f"e.g. 0.5, 0.7 or 0.9), got {ratio!r}"
        )


def _check_removal(removal: str) -> None:
    if removal not in REMOVAL_MODES:
        raise DataPreparationError(
            f"removal must be one of {', '.join(REMOVAL_MODES)}, got {removal!r}"
        )


def _round_half_up(values: np.ndarray | float) -> np.ndarray:
    """Round halves up (Python's round() rounds them to even, which would bias small counts)."""
    return np.floor(np.asarray(values, dtype=float) + 0.5).astype(int)


def _stream(seed: int, name: str) -> np.random.Generator:
    """The generator of one random step, independent of the other steps' generators."""
    return np.random.default_rng([seed, _STREAMS[name]])


def _require_file(path: Path, asset_hint: Optional[str]) -> None:
    """Fail early, naming the path and how to get it, rather than with a bare OSError later."""
    if not path.is_file():
        hint = asset_hint or f"Check the path (relative paths start from {Path.cwd()})."
        raise DataFileNotFoundError(f"Data file not found: {path}. {hint}")


def _asset_hint(asset: str, origin: str) -> str:
    """How to fetch a built-in dataset's files, for the missing-file error."""
    return (
        f"It belongs to the '{asset}' asset ({origin}): run `spacy project assets` to fetch it, "
        f"or point data_dir at the folder that holds goemotions/, semeval2018_ec/ and pubmed/ "
        f"(by default ../shared/datasets)."
    )


def detect_format(path: Path, file_format: Optional[str] = None) -> str:
    """The table format: ``file_format`` if given, else from the file extension."""
    if file_format is not None:
        if file_format not in FORMATS:
            raise DataPreparationError(
                f"file_format must be one of {', '.join(FORMATS)}, got {file_format!r}"
            )
        return file_format
    suffix = path.suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DataPreparationError(
            f"Cannot tell the format of {path} from its extension {suffix!r}: pass the format "
            f"explicitly ({', '.join(FORMATS)})."
        )
    return _EXTENSIONS[suffix]


def _missing_columns(path: Path, required: Sequence[str], found: Sequence[str]) -> None:
    missing = [column for column in required if column not in found]
    if missing:
        listed = ", ".join(repr(column) for column in found) or "none"
        raise MissingColumnError(
            f"Column(s) {', '.join(repr(c) for c in missing)} not found in {path}. "
            f"Columns found: {listed}."
        )


def _iter_records(
    path: Path,
    file_format: str,
    required: Sequence[str],
    *,
    fieldnames: Optional[Sequence[str]] = None,
    asset_hint: Optional[str] = None,
) -> Iterator[tuple[str, Optional[Mapping[str, Any]]]]:
    """Yield ``(row id, record)`` for each row; ``None`` records are lines that are not JSON.

    Columns are checked on the header (CSV/TSV) or the first object (JSONL), so a wrong name
    fails at once with the list of names that exist. ``fieldnames`` is for headerless files.
    """
    _require_file(path, asset_hint)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if file_format == "jsonl":
            checked = False
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                row_id = f"{path.name}:{line_number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    record = None
                if not isinstance(record, dict):
                    yield row_id, None
                    continue
                if not checked:
                    _missing_columns(path, required, list(record))
                    checked = True
                yield row_id, record
            return
        delimiter = "\t" if file_format == "tsv" else ","
        reader = csv.DictReader(handle, fieldnames=fieldnames, delimiter=delimiter)
        _missing_columns(path, required, reader.fieldnames or [])
        for record in reader:
            yield f"{path.name}:{reader.line_num}", record


def _text_value(value: Any) -> str:
    """The text of a cell; raises for missing or blank text, which gives an empty document."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise _RowProblem("empty_text")
    return text


def _parse_flag(value: Any) -> bool:
    """Parse a 0/1 label cell (also true/false, yes/no, 1.0/0.0); blank means no annotation."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        if value in (0, 1):
            return bool(value)
        raise _RowProblem("unparseable_labels")
    if value is None or not str(value).strip():
        raise _RowProblem("missing_labels")
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    try:
        number = float(text)
    except ValueError:
        raise _RowProblem("unparseable_labels") from None
    if number in (0.0, 1.0):
        return number == 1.0
    raise _RowProblem("unparseable_labels")


def _parse_label_list(value: Any) -> list[str]:
    """Parse a cell listing label names: a JSON/Python list, or names split on , ; or |.

    A blank cell is an unannotated row (``missing_labels``); an explicit empty list ``[]`` is
    an annotated row with no positive label (an all-negative example).
    """
    if value is None:
        raise _RowProblem("missing_labels")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise _RowProblem("missing_labels")
        if text.startswith("["):
            items = _literal_list(text)
        else:
            items = _LABEL_SEPARATORS.split(text)
            if not any(item.strip() for item in items):
                raise _RowProblem("unparseable_labels")
    elif isinstance(value, list):
        items = value
    else:
        raise _RowProblem("unparseable_labels")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _RowProblem("unparseable_labels")
        name = item.strip()
        if name and name not in names:
            names.append(name)
    return names


def _literal_list(text: str, reason: str = "unparseable_labels") -> list[Any]:
    """A list written as JSON or as a Python literal (the PubMed CSVs use the latter)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise _RowProblem(reason) from None
    if not isinstance(items, list):
        raise _RowProblem(reason)
    return items


class _CorpusBuilder:
    """Collects usable rows into a Corpus; unusable ones go to the report, by reason.

    With ``labels`` given (label columns, a known label file) the label set and its order are
    fixed, labels without any positive included; otherwise it is the sorted set of names seen.
    """

    def __init__(self, origin: str, labels: Optional[Sequence[str]] = None) -> None:
        self.report = ReadReport(origin=origin)
        self._labels = list(labels) if labels is not None else None
        self._texts: list[str] = []
        self._positives: list[list[str]] = []

    def add(self, text: str, positives: Sequence[str]) -> None:
        self._texts.append(text)
        self._positives.append(list(positives))

    def build(self) -> Corpus:
        labels = self._labels
        if labels is None:
            labels = sorted({name for names in self._positives for name in names})
        column = {label: j for j, label in enumerate(labels)}
        matrix = np.zeros((len(self._texts), len(labels)), dtype=bool)
        for i, names in enumerate(self._positives):
            matrix[i, [column[name] for name in names]] = True
        return Corpus(self._texts, labels, matrix, self.report)


def _as_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]


# --------------------------------------------------------------------------------------------
# Readers


def read_table(
    paths: PathLike | Sequence[PathLike],
    *,
    text_column: str,
    label_columns: Optional[Sequence[str]] = None,
    labels_column: Optional[str] = None,
    file_format: Optional[str] = None,
    asset_hint: Optional[str] = None,
) -> Corpus:
    """Read one or more CSV/TSV/JSONL files (same layout) into a :class:`Corpus`.

    Labels come from EITHER ``label_columns`` (one 0/1 column per label; the label set is these
    columns, in this order) OR ``labels_column`` (one column listing each row's label names,
    separated by , ; or |, or as a JSON list; the label set is the sorted set of names seen).
    Rows with blank text, blank label values or unparseable labels are left out and counted in
    ``corpus.report``; a missing file or column raises at once with a message saying what to do.
    ``file_format`` (csv, tsv, jsonl) overrides the guess from the extension; ``asset_hint``
    is added to the missing-file error (e.g. which asset to fetch).
    """
    if (label_columns is None) == (labels_column is None):
        raise DataPreparationError(
            "Pass exactly one of label_columns (one 0/1 column per label) and labels_column "
            "(one column listing each row's labels)."
        )
    if label_columns is not None:
        label_columns = list(label_columns)
        if not label_columns or len(set(label_columns)) != len(label_columns):
            raise DataPreparationError(
                f"label_columns must be non-empty and without repeats, got {label_columns}"
            )
    files = _as_paths(paths)
    builder = _CorpusBuilder(", ".join(str(p) for p in files), labels=label_columns)
    required = [text_column, *(label_columns or [labels_column])]
    for path in files:
        _require_file(path, asset_hint)
        fmt = detect_format(path, file_format)
        for row_id, record in _iter_records(path, fmt, required, asset_hint=asset_hint):
            builder.report.rows += 1
            try:
                if record is None:
                    raise _RowProblem("invalid_json")
                text = _text_value(record.get(text_column))
                if label_columns is not None:
                    flags = [_parse_flag(record.get(column)) for column in label_columns]
                    positives = [c for c, flag in zip(label_columns, flags) if flag]
                else:
                    positives = _parse_label_list(record.get(labels_column))
            except _RowProblem as problem:
                builder.report.skip(problem.reason, row_id)
                continue
            builder.add(text, positives)
    return builder.build()


def read_goemotions(folder: PathLike) -> Corpus:
    """Read GoEmotions train+dev+test (headerless TSVs: text, label ids, comment id).

    Label ids index ``labels.txt`` (28 labels incl. ``neutral``); all 28 are kept here so that
    :meth:`Corpus.select_labels` can count what dropping the non-shared ones removes.
    """
    folder = Path(folder)
    hint = _asset_hint("goemotions", "monologg/GoEmotions-pytorch, data/original")
    labels_path = folder / "labels.txt"
    _require_file(labels_path, hint)
    names = [line.strip() for line in labels_path.read_text(encoding="utf8").splitlines()]
    names = [name for name in names if name]
    files = [folder / name for name in GOEMOTIONS_FILES]
    builder = _CorpusBuilder(", ".join(str(p) for p in files), labels=names)
    columns = ("text", "label_ids", "comment_id")
    for path in files:
        for row_id, record in _iter_records(
            path, "tsv", columns[:2], fieldnames=columns, asset_hint=hint
        ):
            builder.report.rows += 1
            try:
                text = _text_value(record["text"])
                positives = [names[i] for i in _parse_ids(record["label_ids"], len(names))]
            except _RowProblem as problem:
                builder.report.skip(problem.reason, row_id)
                continue
            builder.add(text, positives)
    return builder.build()


def _parse_ids(value: Optional[str], n_labels: int) -> list[int]:
    """Comma-separated label ids, each a valid index into the label list."""
    if value is None or not value.strip():
        raise _RowProblem("missing_labels")
    try:
        ids = sorted({int(part) for part in value.split(",")})
    except ValueError:
        raise _RowProblem("unparseable_labels") from None
    if ids[0] < 0 or ids[-1] >= n_labels:
        raise _RowProblem("unparseable_labels")
    return ids


def load_emotions(data_dir: PathLike) -> DomainPair:
    """Reddit -> Twitter: GoEmotions (source) and SemEval-2018 E-c train+dev (target).

    Both keep only the 8 shared emotions (EMOTION_LABELS). GoEmotions' 20 other labels
    (``neutral`` included) and SemEval's ``anticipation``, ``pessimism`` and ``trust`` are
    dropped and their positives counted; a comment or tweet with none of the 8 stays in as an
    all-negative example.
    """
    data_dir = Path(data_dir)
    source_all = read_goemotions(data_dir / "goemotions")
    target_all = read_table(
        [data_dir / "semeval2018_ec" / name for name in SEMEVAL_FILES],
        text_column="Tweet",
        label_columns=SEMEVAL_LABELS,
        file_format="tsv",
        asset_hint=_asset_hint("semeval2018_ec", "mithunpaul08/twitter_psentiment_multi_label"),
    )
    source = source_all.select_labels(EMOTION_LABELS)
    target = target_all.select_labels(EMOTION_LABELS)
    details = {
        "shared_labels": list(EMOTION_LABELS),
        "source_labels_dropped": [x for x in source_all.labels if x not in EMOTION_LABELS],
        "target_labels_dropped": [x for x in target_all.labels if x not in EMOTION_LABELS],
    }
    return DomainPair(source, target, {"source": source.report, "target": target.report}, details)


def load_pubmed(data_dir: PathLike, *, seed: int = 0) -> DomainPair:
    """PubMed, male -> female: the five CSVs deduplicated by pmid, split by meshMajor tags.

    Docs tagged ``Male`` only go to the source, ``Female`` only to the target, docs tagged both
    to one side by a coin flip seeded with ``seed``, and docs tagged neither are left out (all
    counted in the report and ``details``). Text is Title + " " + abstractText; labels are the
    14 one-hot MeSH root columns.
    """
    folder = Path(data_dir) / "pubmed"
    hint = _asset_hint("pubmed", "jktjia/PubMed-Multilabel-Classifiction, data/")
    files = [folder / name for name in PUBMED_FILES]
    builder = _CorpusBuilder(", ".join(str(p) for p in files), labels=MESH_ROOTS)
    report = builder.report
    required = ("Title", "abstractText", "meshMajor", "pmid", *MESH_ROOTS)
    seen: set[str] = set()
    sides: list[tuple[bool, bool]] = []
    for path in files:
        for row_id, record in _iter_records(path, "csv", required, asset_hint=hint):
            report.rows += 1
            try:
                pmid = (record["pmid"] or "").strip()
                if not pmid:
                    raise _RowProblem("missing_pmid")
                if pmid in seen:
                    raise _RowProblem("duplicate_pmid")
                seen.add(pmid)
                parts = (record["Title"] or "", record["abstractText"] or "")
                text = _text_value(" ".join(part.strip() for part in parts if part.strip()))
                mesh = _literal_list(record["meshMajor"] or "", "unparseable_meshMajor")
                male, female = "Male" in mesh, "Female" in mesh
                if not (male or female):
                    raise _RowProblem("tagged_neither")
                flags = [_parse_flag(record[column]) for column in MESH_ROOTS]
            except _RowProblem as problem:
                report.skip(problem.reason, row_id)
                continue
            builder.add(text, [c for c, flag in zip(MESH_ROOTS, flags) if flag])
            sides.append((male, female))
    pool = builder.build()
    male = np.array([m for m, _ in sides], dtype=bool)
    female = np.array([f for _, f in sides], dtype=bool)
    both = male & female
    coin = _stream(seed, "domains").random(len(pool)) < 0.5
    to_source = (male & ~female) | (both & coin)
    details = {
        "unique_pmids": len(seen),
        "tagged_male": int(male.sum()),
        "tagged_female": int(female.sum()),
        "tagged_both": int(both.sum()),
        "tagged_neither": len(report.skipped.get("tagged_neither", [])),
        "both_to_source": int((both & to_source).sum()),
        "both_to_target": int((both & ~to_source).sum()),
    }
    return DomainPair(
        pool.subset(np.flatnonzero(to_source)),
        pool.subset(np.flatnonzero(~to_source)),
        {"pubmed": report},
        details,
    )


def load_dataset(dataset: str, data_dir: PathLike, *, seed: int = 0) -> DomainPair:
    """Load a built-in layout (``emotions`` or ``pubmed``) from ``data_dir``."""
    if dataset == "emotions":
        return load_emotions(data_dir)
    if dataset == "pubmed":
        return load_pubmed(data_dir, seed=seed)
    raise DataPreparationError(
        f"Unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}, or use "
        f"prepare-files for your own data."
    )


# --------------------------------------------------------------------------------------------
# Label sets


def check_label_sets(
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    label_map: Optional[Mapping[str, str]] = None,
) -> dict[str, str]:
    """Check that every target label, after ``label_map`` (target -> source name), is a source
    label, and return the effective renaming.

    The model is trained on the source labels, so a target label it has never seen cannot be
    adapted to; failing here names such labels instead of silently training on a wrong set.
    The mapping itself is checked too: keys must be target labels and no two target labels may
    end up with one name.
    """
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
) -> tuple[DomainPair, dict[str, Any]]:
    """Give the target the source's label names and order; optionally restrict both to ``labels``.

    Restricting happens before the check, so a target label outside ``labels`` is dropped
    (and counted) rather than reported as unknown. Returns the aligned pair and what was done
    (renamings, source labels the target has no column for).
    """
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


# --------------------------------------------------------------------------------------------
# Splitting and hiding


def split_train_test(
    n_docs: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test indices (each sorted, so docs keep their file order).

    The test split has round(test_fraction * n_docs) docs, but at least one doc is on each side
    whenever there are two or more, so both splits can be written and evaluated.
    """
    n_test = int(_round_half_up(n_docs * test_fraction))
    if n_docs >= 2:
        n_test = min(max(n_test, 1), n_docs - 1)
    order = rng.permutation(n_docs)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def cap_indices(
    indices: np.ndarray, max_docs: Optional[int], rng: np.random.Generator
) -> np.ndarray:
    """A random sample of ``max_docs`` of ``indices`` (sorted), or all of them if fewer."""
    if max_docs is None or len(indices) <= max_docs:
        return np.asarray(indices)
    return np.sort(rng.choice(indices, size=max_docs, replace=False))


def _rank_within(keys: np.ndarray, axis: int) -> np.ndarray:
    """Rank of each entry along ``axis`` (0 = smallest); with random keys, a random order."""
    return np.argsort(np.argsort(keys, axis=axis, kind="stable"), axis=axis, kind="stable")


def _hide_per_sample(positive: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Hide about ``ratio`` of each document's positives (the paper's protocol).

    A document with k positives loses floor(ratio*k) or ceil(ratio*k) of them, the latter with
    probability frac(ratio*k), so each document's expected loss is exactly ratio*k. The
    roundings are coupled by systematic sampling (one uniform offset over the cumulative
    fractions, in a random document order), which keeps the total within one positive of
    ratio * all positives instead of letting independent roundings drift.
    """
    counts = positive.sum(axis=1)
    wanted = ratio * counts
    base = np.floor(wanted + 1e-9)
    fraction = np.clip(wanted - base, 0.0, 1.0)
    order = rng.permutation(len(counts))
    edges = np.floor(np.concatenate(([0.0], np.cumsum(fraction[order]))) + rng.random())
    extra = np.zeros(len(counts))
    extra[order] = np.clip(np.diff(edges), 0, 1)
    n_hide = np.minimum(base + extra, counts).astype(int)
    keys = np.where(positive, rng.random(positive.shape), np.inf)
    return positive & (_rank_within(keys, axis=1) < n_hide[:, None])


def _hide_per_label(positive: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Hide round(ratio * n) of each label's n positives, chosen uniformly."""
    n_hide = _round_half_up(ratio * positive.sum(axis=0))
    keys = np.where(positive, rng.random(positive.shape), np.inf)
    return positive & (_rank_within(keys, axis=0) < n_hide[None, :])


def hide_labels(
    label_matrix: np.ndarray | Sequence[Sequence[int]],
    ratio: float,
    removal: str,
    rng: np.random.Generator | int,
) -> HidingResult:
    """Hide a share ``ratio`` of the positives of a 0/1 matrix (docs x labels).

    This simulates partial annotation of the target domain: a hidden positive becomes 0, which
    DALLMi reads as "unlabeled", not "negative". ``removal`` is ``per_sample`` (each document
    loses ``ratio`` of its own positives, stochastically rounded; frequent labels lose more,
    as in the paper) or ``per_label`` (each label loses round(ratio * its positives)). In both,
    a label left without any known positive gets one hidden positive back, chosen at random,
    because neither DALLMi's loss nor the label-balanced batcher can use a label with none.
    ``rng`` is a numpy Generator or a seed; equal seeds give equal results.
    """
    _check_ratio(ratio)
    _check_removal(removal)
    full = np.asarray(label_matrix)
    if full.ndim != 2:
        raise DataPreparationError(f"label_matrix must be 2-D (docs x labels), got {full.shape}")
    if not np.isin(full, (0, 1)).all():
        raise DataPreparationError("label_matrix must hold only 0/1 (or boolean) values")
    generator = np.random.default_rng(rng)
    positive = full.astype(bool)
    hide = _hide_per_sample if removal == "per_sample" else _hide_per_label
    hidden = hide(positive, float(ratio), generator)
    restored = np.zeros_like(hidden)
    for j in range(positive.shape[1]):
        if positive[:, j].any() and not (positive[:, j] & ~hidden[:, j]).any():
            pick = generator.choice(np.flatnonzero(hidden[:, j]))
            hidden[pick, j] = False
            restored[pick, j] = True
    partial = full.copy()
    partial[hidden] = 0
    return HidingResult(partial, hidden, restored, positive.sum(axis=0), float(ratio), removal)


# --------------------------------------------------------------------------------------------
# Writing


def _docbin(nlp: Language, texts: list[str], matrix: np.ndarray, labels: list[str]) -> DocBin:
    """Docs whose ``cats`` hold every label, 1.0 or 0.0, so no label is "missing" to spaCy."""
    docbin = DocBin(store_user_data=False)
    for text, row in zip(texts, matrix):
        doc = nlp.make_doc(text)
        doc.cats = {label: float(value) for label, value in zip(labels, row)}
        docbin.add(doc)
    return docbin


def _split_stats(matrix: np.ndarray, labels: list[str], capped: int) -> dict[str, Any]:
    return {
        "docs": int(matrix.shape[0]),
        "positives": {label: int(n) for label, n in zip(labels, matrix.sum(axis=0))},
        "docs_without_positives": int((~matrix.any(axis=1)).sum()),
        "capped": capped,
    }


def prepare_domains(
    pair: DomainPair,
    output_dir: PathLike,
    settings: PrepareSettings,
    *,
    label_map: Optional[Mapping[str, str]] = None,
    labels: Optional[Sequence[str]] = None,
    inputs: Optional[Mapping[str, Any]] = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Align, split, cap, hide and write one source/target pair; return the stats written.

    This is the single implementation of the experiment protocol behind both
    :func:`prepare_dataset` and :func:`prepare_files`. ``inputs`` (e.g. the column names) is
    recorded under ``settings`` in ``stats.json``.
    """
    pair, label_info = align_domains(pair, label_map, labels)
    for side, corpus in (("source", pair.source), ("target", pair.target)):
        if len(corpus) < 2:
            raise DataPreparationError(
                f"The {side} domain has {len(corpus)} usable document(s) (from "
                f"{corpus.report.origin}); at least 2 are needed for a train/test split."
            )
    label_names = list(pair.source.labels)
    seed = settings.seed
    splits: dict[str, Corpus] = {}
    capped: dict[str, int] = {}
    domains: dict[str, dict[str, Any]] = {}
    for side, corpus in (("source", pair.source), ("target", pair.target)):
        train, test = split_train_test(
            len(corpus), settings.test_fraction, _stream(seed, f"{side}_split")
        )
        domains[side] = {"docs": len(corpus), "train": len(train), "test": len(test)}
        for part, indices in (("train", train), ("test", test)):
            kept = cap_indices(indices, settings.max_docs, _stream(seed, f"{side}_{part}_cap"))
            splits[f"{side}_{part}"] = corpus.subset(kept)
            capped[f"{side}_{part}"] = len(indices) - len(kept)
    domains["target"].update(label_info)
    full_train = splits["target_train"]
    hiding = hide_labels(
        full_train.matrix, settings.ratio, settings.removal, _stream(seed, "hiding")
    )
    matrices = {
        "source_train": splits["source_train"].matrix,
        "source_test": splits["source_test"].matrix,
        "target_train": hiding.partial,
        "target_train_full": full_train.matrix,
        "target_test": splits["target_test"].matrix,
    }
    texts = {name: splits[name.replace("_full", "")].texts for name in OUTPUT_FILES}
    capped["target_train_full"] = capped["target_train"]

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("en")
    split_stats: dict[str, dict[str, Any]] = {}
    for name, filename in OUTPUT_FILES.items():
        _docbin(nlp, texts[name], matrices[name], label_names).to_disk(out / filename)
        split_stats[name] = _split_stats(matrices[name], label_names, capped[name])
    split_stats["target_train"]["hidden"] = dict(zip(label_names, hiding.hidden_per_label.tolist()))
    split_stats["target_train"]["restored"] = dict(
        zip(label_names, hiding.restored_per_label.tolist())
    )
    stats: dict[str, Any] = {
        "settings": {
            **settings.to_dict(),
            "label_map": dict(label_map or {}),
            "labels": list(labels) if labels is not None else None,
            "inputs": dict(inputs or {}),
        },
        "labels": label_names,
        "files": {**OUTPUT_FILES, "labels": LABELS_FILE, "stats": STATS_FILE},
        "splits": split_stats,
        "hiding": {
            "removal": settings.removal,
            "requested_ratio": settings.ratio,
            "positives": hiding.n_positives,
            "hidden": hiding.n_hidden,
            "restored": hiding.n_restored,
            # Rounded so that the returned stats equal stats.json (srsly keeps ~10 digits).
            "achieved_ratio": round(hiding.achieved_ratio, 6) if hiding.n_positives else None,
        },
        "reads": {name: report.to_dict() for name, report in pair.reports.items()},
        "domains": domains,
        "dataset": dict(pair.details),
    }
    stats["changes"] = _describe_changes(stats)
    srsly.write_json(out / LABELS_FILE, label_names)
    srsly.write_json(out / STATS_FILE, stats)
    print_summary(stats, out, quiet=quiet)
    return stats


def _describe_changes(stats: dict[str, Any]) -> list[str]:
    """One plain sentence per thing that was left out or changed, with its count and reason."""
    lines: list[str] = []
    for name, read in stats["reads"].items():
        for reason, count in read["skipped"].items():
            why = SKIP_REASONS.get(reason, reason)
            lines.append(f"{name}: {count} row(s) left out: {why} (reason '{reason}').")
        if read["dropped_labels"]:
            dropped = ", ".join(f"{label} ({n})" for label, n in read["dropped_labels"].items())
            lines.append(
                f"{name}: label(s) outside the label set were dropped, with their positives: "
                f"{dropped}."
            )
        if read["emptied_docs"]:
            lines.append(
                f"{name}: {read['emptied_docs']} doc(s) had only dropped labels and are kept as "
                f"all-negative examples."
            )
    details = stats["dataset"]
    if "tagged_both" in details:
        lines.append(
            f"pubmed: {details['tagged_both']} doc(s) tagged both Male and Female were split "
            f"by a seeded coin flip: {details['both_to_source']} to the source, "
            f"{details['both_to_target']} to the target."
        )
    target = stats["domains"]["target"]
    for old, new in target["renamed_target_labels"].items():
        lines.append(f"target: label '{old}' renamed to '{new}' (label_map).")
    missing = target["source_labels_missing_in_target"]
    if missing:
        lines.append(
            f"target: no column for source label(s) {', '.join(missing)}; they are 0.0 "
            f"(unlabeled/negative) in every target doc."
        )
    for split, numbers_ in stats["splits"].items():
        if numbers_["capped"] and split != "target_train_full":
            also = " (the same docs in target_train_full)" if split == "target_train" else ""
            lines.append(
                f"{split}: {numbers_['capped']} doc(s) left out by max_docs="
                f"{stats['settings']['max_docs']} (a seeded random sample is kept){also}."
            )
    restored = stats["splits"]["target_train"]["restored"]
    if any(restored.values()):
        names = ", ".join(label for label, n in restored.items() if n)
        lines.append(
            f"target_train: 1 hidden positive restored for label(s) {names}, so that every "
            f"label keeps at least one known positive."
        )
    return lines


def print_summary(stats: dict[str, Any], output_dir: Path, *, quiet: bool = False) -> None:
    """Print split sizes, per-label positives and all changes as wasabi tables."""
    msg = Printer(no_print=quiet)
    settings = stats["settings"]
    msg.divider(
        f"DALLMi data: {settings['dataset']} (ratio {settings['ratio']}, {settings['removal']}, "
        f"seed {settings['seed']})"
    )
    splits = stats["splits"]
    msg.table(
        [
            (
                name,
                s["docs"],
                sum(s["positives"].values()),
                s["docs_without_positives"],
                s["capped"],
                sum(s.get("hidden", {}).values()),
            )
            for name, s in splits.items()
        ],
        header=("split", "docs", "positives", "no positive", "capped", "hidden"),
        divider=True,
        aligns=("l", "r", "r", "r", "r", "r"),
    )
    msg.table(
        [
            (
                label,
                *(splits[name]["positives"][label] for name in OUTPUT_FILES),
                splits["target_train"]["hidden"][label],
            )
            for label in stats["labels"]
        ],
        header=("label", *OUTPUT_FILES, "hidden"),
        divider=True,
        aligns=("l", *("r" for _ in OUTPUT_FILES), "r"),
    )
    hiding = stats["hiding"]
    msg.info(
        f"Hidden {hiding['hidden']} of {hiding['positives']} target train positives "
        f"(requested {hiding['requested_ratio']}, restored {hiding['restored']})."
    )
    for line in stats["changes"]:
        msg.info(line)
    msg.good(
        f"Wrote {len(OUTPUT_FILES)} DocBin files, {LABELS_FILE} and {STATS_FILE} to {output_dir}"
    )


# --------------------------------------------------------------------------------------------
# Entry points


def prepare_dataset(
    dataset: str,
    data_dir: PathLike,
    output_dir: PathLike,
    *,
    ratio: float,
    removal: str = "per_sample",
    seed: int = 0,
    max_docs: Optional[int] = None,
    test_fraction: float = 0.2,
    quiet: bool = False,
) -> dict[str, Any]:
    """Build the corpora of a built-in layout (``emotions`` or ``pubmed``) from ``data_dir``.

    ``data_dir`` holds ``goemotions/``, ``semeval2018_ec/`` and ``pubmed/`` as described in the
    datasets README. Settings are checked before anything is read. Returns the stats that are
    also written to ``output_dir/stats.json``.
    """
    settings = PrepareSettings(dataset, ratio, removal, seed, max_docs, test_fraction)
    pair = load_dataset(dataset, data_dir, seed=seed)
    inputs = {"data_dir": str(data_dir)}
    return prepare_domains(pair, output_dir, settings, inputs=inputs, quiet=quiet)


def prepare_files(
    source_path: PathLike,
    target_path: PathLike,
    output_dir: PathLike,
    *,
    text_column: str,
    label_columns: Optional[Sequence[str]] = None,
    labels_column: Optional[str] = None,
    label_map: Optional[Mapping[str, str]] = None,
    labels: Optional[Sequence[str]] = None,
    target_text_column: Optional[str] = None,
    target_label_columns: Optional[Sequence[str]] = None,
    target_labels_column: Optional[str] = None,
    file_format: Optional[str] = None,
    ratio: float,
    removal: str = "per_sample",
    seed: int = 0,
    max_docs: Optional[int] = None,
    test_fraction: float = 0.2,
    quiet: bool = False,
) -> dict[str, Any]:
    """Build the corpora from a user's own source and target files (CSV, TSV or JSONL).

    Column options describe the source file; the target file uses the same names unless the
    ``target_*`` options say otherwise. In label-columns mode the target's label columns
    default to the source's, renamed back through ``label_map`` (target name -> source name),
    so a map ``{"happiness": "joy"}`` reads the target's ``happiness`` column as ``joy``.
    ``labels`` restricts both domains to a subset of the source labels (the rest are dropped
    and counted). Everything else works as in :func:`prepare_dataset`.
    """
    settings = PrepareSettings("files", ratio, removal, seed, max_docs, test_fraction)
    if target_label_columns is None and target_labels_column is None:
        if label_columns is not None:
            source_name = {value: key for key, value in (label_map or {}).items()}
            target_label_columns = [source_name.get(c, c) for c in label_columns]
        else:
            target_labels_column = labels_column
    source = read_table(
        source_path,
        text_column=text_column,
        label_columns=label_columns,
        labels_column=labels_column,
        file_format=file_format,
    )
    target = read_table(
        target_path,
        text_column=target_text_column or text_column,
        label_columns=target_label_columns,
        labels_column=target_labels_column,
        file_format=file_format,
    )
    pair = DomainPair(source, target, {"source": source.report, "target": target.report})
    inputs = {
        "source": str(source_path),
        "target": str(target_path),
        "text_column": text_column,
        "label_columns": list(label_columns) if label_columns is not None else None,
        "labels_column": labels_column,
        "target_text_column": target_text_column or text_column,
        "target_label_columns": (
            list(target_label_columns) if target_label_columns is not None else None
        ),
        "target_labels_column": target_labels_column,
        "file_format": file_format,
    }
    return prepare_domains(
        pair, output_dir, settings, label_map=label_map, labels=labels, inputs=inputs, quiet=quiet
    )

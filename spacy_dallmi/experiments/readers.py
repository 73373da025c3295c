"""Read multi-label text tables into a :class:`Corpus`, counting every row that is left out.

A reader never drops a row silently: each one is either a document or an entry in the
:class:`ReadReport` under a reason (:data:`SKIP_REASONS`), so that the numbers in
``stats.json`` add up and a user can find the offending rows by ``file:line``. Problems that
would make every row wrong are errors instead, raised before anything is written: a missing
file or column, a header that names one column twice (a dict reader would silently keep the
last one), or bytes that are not text in the file's encoding.

A blank label cell is not a reason to leave a row out: it says "no known positive" (see
:func:`read_table` for what that means in each kind of file).
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy

from ..tables import SUFFIXES, first_undecodable_line, repeated, unique_keys
from .cells import RowProblem, is_blank, parse_flag, parse_label_list, text_value

PathLike = Union[str, Path]

FORMATS = ("csv", "tsv", "jsonl")
#: What files are read as unless told otherwise; ``-sig`` drops a byte-order mark.
DEFAULT_ENCODING = "utf-8-sig"
_EXTENSIONS = {
    **{k: v for k, v in SUFFIXES.items() if v in FORMATS},
    ".tab": "tsv",
    ".ndjson": "jsonl",
}
#: Why a row can be left out; written next to the counts in the printed summary.
SKIP_REASONS = {
    "empty_text": "empty or whitespace-only text",
    "unparseable_labels": "a label value that is not 0/1, or not a list of label names/ids",
    "invalid_json": "a line that is not a JSON object",
    "missing_pmid": "no pmid, so it cannot be deduplicated",
    "duplicate_pmid": "the same pmid as an earlier row (the first one is kept)",
    "unparseable_meshMajor": "meshMajor is not a Python-style list of strings",
    "tagged_neither": "meshMajor tags neither Male nor Female, so it is in neither domain",
}


class DataPreparationError(ValueError):
    """Input data or settings that cannot be turned into a corpus; the message says how to fix."""


class MissingColumnError(DataPreparationError):
    """A requested column is not in the file; the message lists the columns that are."""


class LabelSetError(DataPreparationError):
    """Source and target label sets that cannot be aligned (unknown label, bad mapping)."""


class DataFileNotFoundError(FileNotFoundError):
    """A data file is missing; the message names the path and how to fetch it."""


@dataclass
class ReadReport:
    """What happened to the rows of one read: how many were seen, which were left out and why.

    ``rows == kept + sum(skipped counts)`` always holds; ``skipped`` holds ``file:line`` ids.
    ``positives`` (per label) and ``with_positive`` (rows with at least one known positive)
    describe the kept rows as read, before any label is renamed or dropped.
    """

    origin: str
    rows: int = 0
    skipped: Dict[str, List[str]] = field(default_factory=dict)
    dropped_labels: Dict[str, int] = field(default_factory=dict)
    emptied_docs: int = 0
    positives: Dict[str, int] = field(default_factory=dict)
    with_positive: int = 0

    def skip(self, reason: str, row_id: str) -> None:
        """Record that row ``row_id`` was left out for ``reason``."""
        self.skipped.setdefault(reason, []).append(row_id)

    @property
    def skipped_counts(self) -> Dict[str, int]:
        """Number of rows left out, per reason."""
        return {reason: len(ids) for reason, ids in sorted(self.skipped.items())}

    @property
    def kept(self) -> int:
        """Rows that became documents."""
        return self.rows - sum(len(ids) for ids in self.skipped.values())

    def to_dict(self, examples: int = 5) -> Dict[str, Any]:
        """JSON-ready summary; only the first ``examples`` row ids per reason, to stay small."""
        return {
            "origin": self.origin,
            "rows": self.rows,
            "kept": self.kept,
            "with_known_positive": self.with_positive,
            "without_known_positive": self.kept - self.with_positive,
            "positives": dict(self.positives),
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

    texts: List[str]
    labels: List[str]
    matrix: numpy.ndarray
    report: ReadReport

    def __post_init__(self) -> None:
        self.matrix = numpy.asarray(self.matrix, dtype=bool)
        if self.matrix.shape != (len(self.texts), len(self.labels)):
            raise DataPreparationError(
                f"Label matrix of shape {self.matrix.shape} does not fit {len(self.texts)} "
                f"texts and {len(self.labels)} labels."
            )
        if len(set(self.labels)) != len(self.labels):
            raise LabelSetError(f"Duplicate label names in {self.report.origin}: {self.labels}")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> "Corpus":
        """The documents at ``indices``; the read report is shared, since no row is re-read."""
        idx = numpy.asarray(indices, dtype=int)
        texts = [self.texts[i] for i in idx]
        return Corpus(texts, list(self.labels), self.matrix[idx], self.report)

    def select_labels(self, keep: Sequence[str]) -> "Corpus":
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
        dropped = self.report.dropped_labels
        for j, label in enumerate(self.labels):
            if label not in keep:
                dropped[label] = dropped.get(label, 0) + int(self.matrix[:, j].sum())
        kept = self.matrix[:, [self.labels.index(label) for label in keep]]
        self.report.emptied_docs += int((self.matrix.any(axis=1) & ~kept.any(axis=1)).sum())
        return Corpus(list(self.texts), list(keep), kept, self.report)

    def rename_labels(self, mapping: Mapping[str, str]) -> "Corpus":
        """Rename labels (old name -> new name); names not in ``mapping`` stay as they are."""
        renamed = [mapping.get(label, label) for label in self.labels]
        return Corpus(list(self.texts), renamed, self.matrix.copy(), self.report)

    def align_to(self, labels: Sequence[str]) -> "Corpus":
        """Reorder columns to ``labels``; labels this corpus lacks become all-zero columns."""
        unknown = [label for label in self.labels if label not in labels]
        if unknown:
            raise LabelSetError(f"Cannot align labels {unknown} of {self.report.origin}.")
        matrix = numpy.zeros((len(self), len(labels)), dtype=bool)
        for j, label in enumerate(labels):
            if label in self.labels:
                matrix[:, j] = self.matrix[:, self.labels.index(label)]
        return Corpus(list(self.texts), list(labels), matrix, self.report)


@dataclass
class DomainPair:
    """A source and a target corpus, with the read reports and dataset-level counts behind them.

    ``reports`` is keyed by a name for each read (``source``/``target``, or ``pubmed`` when one
    pool of files feeds both domains); ``details`` holds counts that belong to neither domain
    alone (duplicates, coin flips).
    """

    source: Corpus
    target: Corpus
    reports: Dict[str, ReadReport]
    details: Dict[str, Any] = field(default_factory=dict)


class CorpusBuilder:
    """Collects usable rows into a Corpus; unusable ones go to the report, by reason.

    With ``labels`` given (label columns, a known label file) the label set and its order are
    fixed, labels without any positive included; otherwise it is the sorted set of names seen.
    """

    def __init__(self, origin: str, labels: Optional[Sequence[str]] = None) -> None:
        self.report = ReadReport(origin=origin)
        self._labels = list(labels) if labels is not None else None
        self._texts: List[str] = []
        self._positives: List[List[str]] = []

    def add(self, text: str, positives: Sequence[str]) -> None:
        self._texts.append(text)
        self._positives.append(list(positives))

    def build(self) -> Corpus:
        labels = self._labels
        if labels is None:
            labels = sorted({name for names in self._positives for name in names})
        column = {label: j for j, label in enumerate(labels)}
        matrix = numpy.zeros((len(self._texts), len(labels)), dtype=bool)
        for i, names in enumerate(self._positives):
            matrix[i, [column[name] for name in names]] = True
        self.report.positives = {label: int(n) for label, n in zip(labels, matrix.sum(axis=0))}
        self.report.with_positive = int(matrix.any(axis=1).sum())
        return Corpus(self._texts, labels, matrix, self.report)


def require_file(path: Path, hint: Optional[str] = None, what: str = "Data file") -> None:
    """Fail early, naming the path and how to get it, rather than with a bare OSError later."""
    if not path.is_file():
        hint = hint or f"Check the path (relative paths start from {Path.cwd()})."
        raise DataFileNotFoundError(f"{what} not found: {path}. {hint}")


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


def _check_columns(path: Path, required: Sequence[str], found: Sequence[str]) -> None:
    """Every required column exists, and no column name is used twice."""
    twice = repeated(found)
    if twice:
        raise DataPreparationError(
            f"The header of {path} names column(s) {', '.join(repr(c) for c in twice)} more "
            "than once, so it is unclear which one to read. Give every column its own name."
        )
    missing = [column for column in required if column not in found]
    if missing:
        listed = ", ".join(repr(column) for column in found) or "none"
        raise MissingColumnError(
            f"Column(s) {', '.join(repr(c) for c in missing)} not found in {path}. "
            f"Columns found: {listed}."
        )


def _records(
    path: Path,
    file_format: str,
    required: Sequence[str],
    fieldnames: Optional[Sequence[str]],
    encoding: str,
) -> Iterator[Tuple[str, Optional[Mapping[str, Any]]]]:
    with path.open(encoding=encoding, newline="") as handle:
        if file_format == "jsonl":
            checked = False
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                row_id = f"{path.name}:{line_number}"
                try:
                    record = json.loads(line, object_pairs_hook=unique_keys)
                except json.JSONDecodeError:
                    record = None
                except ValueError as error:  # a key given twice
                    raise DataPreparationError(f"{path}, line {line_number}: {error}.") from None
                if not isinstance(record, dict):
                    yield row_id, None
                    continue
                if not checked:
                    _check_columns(path, required, list(record))
                    checked = True
                yield row_id, record
            return
        delimiter = "\t" if file_format == "tsv" else ","
        reader = csv.DictReader(handle, fieldnames=fieldnames, delimiter=delimiter)
        _check_columns(path, required, reader.fieldnames or [])
        for record in reader:
            yield f"{path.name}:{reader.line_num}", record


def iter_records(
    path: Path,
    file_format: str,
    required: Sequence[str],
    *,
    fieldnames: Optional[Sequence[str]] = None,
    hint: Optional[str] = None,
    encoding: str = DEFAULT_ENCODING,
) -> Iterator[Tuple[str, Optional[Mapping[str, Any]]]]:
    """Yield ``(row id, record)`` for each row; ``None`` records are lines that are not JSON.

    Columns are checked on the header (CSV/TSV) or the first object (JSONL), so a wrong or
    repeated name fails at once. ``fieldnames`` is for headerless files. A byte sequence that
    is not ``encoding`` text is an error naming the file and line.
    """
    require_file(path, hint)
    try:
        yield from _records(path, file_format, required, fieldnames, encoding)
    except LookupError:
        raise DataPreparationError(f"Unknown encoding {encoding!r} for {path}.") from None
    except UnicodeDecodeError as error:
        line = first_undecodable_line(path, encoding)
        raise DataPreparationError(
            f"{path}, line {line}: not valid {encoding} text ({error.reason}). Pass the file's "
            "encoding, e.g. --encoding cp1252 (encoding='cp1252')."
        ) from None


#: What a label column may hold, for the messages that reject a cell.
FLAG_VALUES = "0 or 1 (also true/false, yes/no)"
LIST_VALUES = 'label names (a|b, "a,b" or a JSON list such as ["a", "b"]; blank or [] for none)'


@dataclass
class _CellProblem:
    """One label cell that makes a file unusable: where it is and what is wrong with it."""

    path: Path
    row_id: str
    column: str
    value: Any

    @property
    def where(self) -> str:
        return f"line {self.row_id.rsplit(':', 1)[-1]}, column {self.column!r}"


def _cell_error(problems: List[_CellProblem], what: str, fix: str) -> DataPreparationError:
    """One error for all the bad cells of a read: the first named in full, the count, a few
    more places, and what to do."""
    first = problems[0]
    more = ""
    if len(problems) > 1:
        others = "; ".join(p.where for p in problems[1:4])
        more = f" {len(problems) - 1} more such cell(s) in this file, e.g. {others}."
    value = "" if is_blank(first.value) else f" {first.value!r}"
    return DataPreparationError(f"{first.path}, {first.where}:{value} {what}.{more} {fix}")


def _flags(
    record: Mapping[str, Any], columns: Sequence[str], row: Tuple[Path, str], partial: bool
) -> Tuple[List[str], List[_CellProblem], List[_CellProblem]]:
    """The positive columns of a row, its blank cells (a problem unless ``partial``) and its
    cells that are not 0/1."""
    positives, blank, bad = [], [], []
    for column in columns:
        value = record.get(column)
        try:
            flag = parse_flag(value)
        except RowProblem:
            bad.append(_CellProblem(*row, column, value))
            continue
        if flag is None and not partial:
            blank.append(_CellProblem(*row, column, value))
        elif flag:
            positives.append(column)
    return positives, blank, bad


def read_table(
    paths: Union[PathLike, Sequence[PathLike]],
    *,
    text_column: str,
    label_columns: Optional[Sequence[str]] = None,
    labels_column: Optional[str] = None,
    file_format: Optional[str] = None,
    hint: Optional[str] = None,
    encoding: str = DEFAULT_ENCODING,
    partial: bool = False,
    strict: bool = False,
) -> Corpus:
    """Read one or more CSV/TSV/JSONL files (same layout) into a :class:`Corpus`.

    Labels come from EITHER ``label_columns`` (one 0/1 column per label; the label set is these
    columns, in this order) OR ``labels_column`` (one column listing each row's label names,
    separated by , ; or |, or as a JSON list; the label set is the sorted set of names seen).

    A blank label cell (empty or whitespace-only, JSON null, a missing key, ``[]`` or ``""``)
    means "no known positive", never a dropped row. In a ``labels_column`` that is a row
    without positives: unlabeled in a partially labelled target (``partial``), all-negative in a
    fully labelled file; the matrix is the same. In ``label_columns`` a blank cell is unknown
    (not positive) when ``partial``; a fully labelled file must say 0 or 1, so there it is an
    error naming the file, line and column.

    Rows with blank text or an unreadable label value are left out and counted in
    ``corpus.report``; with ``strict`` (the source, which trains the source model) an
    unreadable label value is an error naming the file, line and column instead. A missing
    file or column, a repeated column name or undecodable bytes raise at once with a message
    saying what to do. ``file_format`` (csv, tsv, jsonl) overrides the guess from the
    extension; ``hint`` is added to the missing-file error.
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
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    builder = CorpusBuilder(", ".join(str(p) for p in files), labels=label_columns)
    required = [text_column, *(label_columns or [labels_column])]
    for path in files:
        require_file(path, hint)
        blank: List[_CellProblem] = []
        bad: List[_CellProblem] = []
        rows = iter_records(path, detect_format(path, file_format), required, encoding=encoding)
        for row_id, record in rows:
            builder.report.rows += 1
            try:
                if record is None:
                    raise RowProblem("invalid_json")
                text = text_value(record.get(text_column))
                if label_columns is not None:
                    positives, row_blank, row_bad = _flags(
                        record, label_columns, (path, row_id), partial
                    )
                    blank.extend(row_blank)
                    if row_bad:
                        bad.extend(row_bad)
                        raise RowProblem("unparseable_labels")
                else:
                    value = record.get(labels_column)
                    try:
                        positives = parse_label_list(value)
                    except RowProblem:
                        bad.append(_CellProblem(path, row_id, labels_column, value))
                        raise
            except RowProblem as problem:
                builder.report.skip(problem.reason, row_id)
                continue
            builder.add(text, positives)
        if blank:
            raise _cell_error(
                blank,
                "empty label cell",
                "This file is read as fully labelled (the source, a target test file, or a "
                "target whose positives are hidden with ratio > 0), so every label column must "
                f"say {FLAG_VALUES}. Fill in the empty cells; only a partially labelled target "
                "(ratio 0) may leave them empty, as unknown.",
            )
        if strict and bad:
            values = FLAG_VALUES if label_columns is not None else LIST_VALUES
            raise _cell_error(
                bad,
                "is not a label value",
                f"A label cell holds {values}. The source is fully labelled and every row "
                "trains the source model, so fix these cells (or remove their rows) and run "
                "again.",
            )
    return builder.build()

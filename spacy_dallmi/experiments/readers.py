"""Read multi-label text tables into a :class:`Corpus`, counting every row that is left out.

A row is a document or, in the :class:`ReadReport`, a ``file:line`` under a reason
(:data:`SKIP_REASONS`), so the numbers in ``stats.json`` add up. What makes every row wrong (a
missing file or column, a column named twice, bytes that are not text) is an error, raised
before anything is written. CSV/TSV rows come from :mod:`spacy_dallmi.tables`, as for
``classify``. A blank label cell says "no known positive", never drops a row.
"""

import ast
import json
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy

from ..tables import (
    SUFFIXES,
    ClassifyError,
    Counts,
    first_undecodable_line,
    jsonl_records,
    read_delimited,
    repeated,
)

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
#: What a label column may hold, for the messages that reject a cell.
FLAG_VALUES = "0 or 1 (also true/false, yes/no)"
LIST_VALUES = 'label names (a|b, "a,b" or a JSON list such as ["a", "b"]; blank or [] for none)'


class DataPreparationError(ValueError):
    """Input data or settings that cannot be turned into a corpus; the message says how to fix."""


class MissingColumnError(DataPreparationError):
    """A requested column is not in the file; the message lists the columns that are."""


class LabelSetError(DataPreparationError):
    """Source and target label sets that cannot be aligned (unknown label, bad mapping)."""


class DataFileNotFoundError(FileNotFoundError):
    """A data file is missing; the message names the path and how to fetch it."""


class RowProblem(Exception):
    """One row cannot be used; ``reason`` (a key of SKIP_REASONS) is what it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- cells -----------------------------------------------------------------------------------


def is_blank(value: Any) -> bool:
    """Whether a label cell holds no value: None, blank text, or ``""`` / ``''`` written out."""
    if value is None:
        return True
    return isinstance(value, str) and value.strip() in ("", '""', "''")


def text_value(value: Any) -> str:
    """The text of a cell; a missing or blank text is an ``empty_text`` row."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise RowProblem("empty_text")
    return text


def parse_flag(value: Any) -> Optional[bool]:
    """A 0/1 label cell (also true/false, yes/no, 1.0/0.0); None for a blank cell."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, numbers.Real):
        if is_blank(value):
            return None
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "0", "false", "no"):
            return text in ("1", "true", "yes")
        try:
            value = float(text)
        except ValueError:
            raise RowProblem("unparseable_labels") from None
    if value in (0, 1):
        return bool(value)
    raise RowProblem("unparseable_labels")


def parse_literal_list(text: str, reason: str = "unparseable_labels") -> List[Any]:
    """A list written as JSON or as a Python literal (the PubMed CSVs use the latter)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise RowProblem(reason) from None
    if not isinstance(items, list):
        raise RowProblem(reason)
    return items


def parse_label_list(value: Any) -> List[str]:
    """A cell listing label names: a JSON/Python list, or names split on , ; or |.
    A blank cell and ``[]`` are a row with no known positive: ``[]``."""
    if is_blank(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            items = parse_literal_list(text)
        else:
            items = re.split(r"[,;|]", text)
            if not any(item.strip() for item in items):
                raise RowProblem("unparseable_labels")
    elif isinstance(value, list):
        items = value
    else:
        raise RowProblem("unparseable_labels")
    if not all(isinstance(item, str) for item in items):
        raise RowProblem("unparseable_labels")
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


# -- corpora ---------------------------------------------------------------------------------


@dataclass
class ReadReport:
    """What happened to the rows of one read: ``rows == kept + sum(skipped counts)``.

    ``skipped`` holds ``file:line`` ids per reason; ``positives`` (per label) and
    ``with_positive`` describe the kept rows as read, before labels are renamed or dropped.
    """

    origin: str
    rows: int = 0
    skipped: Dict[str, List[str]] = field(default_factory=dict)
    dropped_labels: Dict[str, int] = field(default_factory=dict)
    emptied_docs: int = 0
    positives: Dict[str, int] = field(default_factory=dict)
    with_positive: int = 0

    def skip(self, reason: str, row_id: str) -> None:
        self.skipped.setdefault(reason, []).append(row_id)

    @property
    def skipped_counts(self) -> Dict[str, int]:
        return {reason: len(ids) for reason, ids in sorted(self.skipped.items())}

    @property
    def kept(self) -> int:
        return self.rows - sum(len(ids) for ids in self.skipped.values())

    def to_dict(self, examples: int = 5) -> Dict[str, Any]:
        """JSON-ready summary, with the first ``examples`` row ids per reason."""
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
    """Texts with a boolean label matrix (docs x labels) and the report of how they were read:
    splitting, hiding and counting are all row or column operations on the matrix."""

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
        """The documents at ``indices``, sharing the read report."""
        idx = numpy.asarray(indices, dtype=int)
        return Corpus(
            [self.texts[i] for i in idx], list(self.labels), self.matrix[idx], self.report
        )

    def select_labels(self, keep: Sequence[str]) -> "Corpus":
        """Keep the labels ``keep`` (in that order). The dropped positives are counted in
        ``report.dropped_labels``, and documents left without a positive (kept, as
        all-negative examples) in ``report.emptied_docs``."""
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
    """A source and a target corpus with their read reports, keyed by read (``source``,
    ``target``, or ``pubmed`` for one pool), and counts that belong to neither domain."""

    source: Corpus
    target: Corpus
    reports: Dict[str, ReadReport]
    details: Dict[str, Any] = field(default_factory=dict)


class CorpusBuilder:
    """Collects rows into a Corpus. The label set is ``labels`` (in that order) when given,
    else the sorted set of names seen."""

    def __init__(self, origin: str, labels: Optional[Sequence[str]] = None) -> None:
        self.report = ReadReport(origin=origin)
        self._labels = list(labels) if labels is not None else None
        self._texts: List[str] = []
        self._positives: List[List[str]] = []

    def add(self, text: str, positives: Sequence[str]) -> None:
        self._texts.append(text)
        self._positives.append(list(positives))

    def read(self, rows: Iterator["Record"], parse: Callable[..., Tuple[str, List[str]]]) -> None:
        """Add ``parse(row_id, record)``'s ``(text, positives)`` of each row; a row it raises
        RowProblem for is counted under the reason instead."""
        for row_id, record in rows:
            self.report.rows += 1
            try:
                self.add(*parse(row_id, record))
            except RowProblem as problem:
                self.report.skip(problem.reason, row_id)

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


# -- files -----------------------------------------------------------------------------------


def require_file(path: Path, hint: Optional[str] = None, what: str = "Data file") -> None:
    """Fail early, naming the path and how to get it, rather than with a bare OSError later."""
    if not path.is_file():
        hint = hint or f"Check the path (relative paths start from {Path.cwd()})."
        raise DataFileNotFoundError(f"{what} not found: {path}. {hint}")


def detect_format(path: Path, file_format: Optional[str] = None) -> str:
    """The table format: ``file_format`` if given, else from the file extension."""
    if file_format is not None and file_format not in FORMATS:
        raise DataPreparationError(
            f"file_format must be one of {', '.join(FORMATS)}, got {file_format!r}"
        )
    suffix = path.suffix.lower()
    if file_format is None and suffix not in _EXTENSIONS:
        raise DataPreparationError(
            f"Cannot tell the format of {path} from its extension {suffix!r}: pass the format "
            f"explicitly ({', '.join(FORMATS)})."
        )
    return file_format or _EXTENSIONS[suffix]


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


Record = Tuple[str, Optional[Mapping[str, Any]]]


def _jsonl(path: Path, required: Sequence[str], encoding: str) -> Iterator[Record]:
    """JSON Lines; a line that is not an object is a None record, a key given twice an error."""
    checked = False
    with path.open(encoding=encoding, newline="") as handle:
        for number, record in jsonl_records(path, handle, Counts(), lenient=True):
            if record is not None and not checked:
                _check_columns(path, required, list(record))
                checked = True
            yield f"{path.name}:{number}", record


def iter_records(
    path: Path,
    file_format: str,
    required: Sequence[str],
    *,
    fieldnames: Optional[Sequence[str]] = None,
    hint: Optional[str] = None,
    encoding: str = DEFAULT_ENCODING,
) -> Iterator[Record]:
    """``(row id, record)`` per row; a None record is a line that is not a JSON object.

    Columns are checked on the header (CSV/TSV) or the first object (JSONL), so a wrong name
    fails at once; ``fieldnames`` is for headerless files.
    """
    require_file(path, hint)
    try:
        if file_format == "jsonl":
            yield from _jsonl(path, required, encoding)
            return
        delimiter = "\t" if file_format == "tsv" else ","
        header = list(fieldnames) if fieldnames else None
        source = read_delimited(path, delimiter, Counts(), encoding, header)
        _check_columns(path, required, source.columns)
        for record in source.rows:
            yield f"{path.name}:{source.line}", record
    except ClassifyError as error:
        raise DataPreparationError(str(error)) from None
    except LookupError:
        raise DataPreparationError(f"Unknown encoding {encoding!r} for {path}.") from None
    except UnicodeDecodeError as error:
        line = first_undecodable_line(path, encoding)
        raise DataPreparationError(
            f"{path}, line {line}: not valid {encoding} text ({error.reason}). Pass the file's "
            "encoding, e.g. --encoding cp1252 (encoding='cp1252')."
        ) from None


Cell = Tuple[str, str, Any]  # row id, column, value


def _cell_error(path: Path, cells: List[Cell], what: str, fix: str) -> DataPreparationError:
    """One error for the bad cells of a file: the first in full, the count, a few more places
    and what to do."""

    def where(cell: Cell) -> str:
        return f"line {cell[0].rsplit(':', 1)[-1]}, column {cell[1]!r}"

    more = ""
    if len(cells) > 1:
        others = "; ".join(where(cell) for cell in cells[1:4])
        more = f" {len(cells) - 1} more such cell(s) in this file, e.g. {others}."
    value = "" if is_blank(cells[0][2]) else f" {cells[0][2]!r}"
    return DataPreparationError(f"{path}, {where(cells[0])}:{value} {what}.{more} {fix}")


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

    Labels come from EITHER ``label_columns`` (one 0/1 column per label, in order) OR
    ``labels_column`` (each row's label names, split on , ; or |, or a JSON list; the label set
    is the sorted set of names seen).

    A blank label cell means "no known positive". In a ``labels_column`` that is a row without
    positives: unlabeled if ``partial`` (a partially labelled target), else all-negative. In
    ``label_columns`` it is unknown if ``partial``; a fully labelled file must say 0 or 1, so
    there it is an error naming the file, line and column.

    Rows with blank text or an unreadable label value are counted in ``corpus.report``; with
    ``strict`` (the source) an unreadable label value is an error. ``hint`` is added to the
    missing-file error.
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
    columns = label_columns or [labels_column]
    # A file with a blank (or, strict, a bad) cell stops the read: these are the file's.
    blank: List[Cell] = []
    bad: List[Cell] = []

    def parse(row_id: str, record: Optional[Mapping[str, Any]]) -> Tuple[str, List[str]]:
        if record is None:
            raise RowProblem("invalid_json")
        text = text_value(record.get(text_column))
        positives, row_bad = [], []
        for column in columns:
            cell = (row_id, column, record.get(column))
            try:
                if label_columns is None:
                    positives = parse_label_list(cell[2])
                elif parse_flag(cell[2]):
                    positives.append(column)
                elif is_blank(cell[2]) and not partial:
                    blank.append(cell)
            except RowProblem:
                row_bad.append(cell)
        if row_bad:
            bad.extend(row_bad)
            raise RowProblem("unparseable_labels")
        return text, positives

    for path in files:
        require_file(path, hint)
        fmt = detect_format(path, file_format)
        builder.read(iter_records(path, fmt, [text_column, *columns], encoding=encoding), parse)
        if blank:
            raise _cell_error(
                path,
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
                path,
                bad,
                "is not a label value",
                f"A label cell holds {values}. The source is fully labelled and every row "
                "trains the source model, so fix these cells (or remove their rows) and run "
                "again.",
            )
    return builder.build()

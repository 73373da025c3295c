"""Streaming table readers and writers for ``classify``, with per-row accounting.

Why a module of its own: reading and writing CSV, TSV, JSONL and Parquet one row at a time is
independent of the model. The command (``spacy_dallmi.classify``) and the Ray path
(``spacy_dallmi.ray``) share the format rules, column checks and output column names here,
and the prediction (``spacy_dallmi.prediction``) only adds columns to rows it is given.

Rows are read lazily (Parquet in record batches) and written as they come, so memory does not
grow with the file. Nothing is dropped silently: blank lines (not rows in CSV or JSONL) and CSV
rows with fewer fields than the header (their missing cells become null) are counted in
:class:`Counts`, and :func:`counted` counts the rows read. A missing text column, duplicate
column names, and output columns that already exist in the input are errors that name the
columns. pyarrow is imported only when a Parquet file is read or written.
"""

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

PROB_PREFIX = "prob_"
LABELS_COLUMN = "labels"
STATUS_COLUMN = "text_status"
STATUSES = ("ok", "empty", "missing")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
CHUNK_ROWS = 1024  # rows per Parquet record batch, read and written


class ClassifyError(ValueError):
    """A problem with the input, the output or the options, worded for the user."""


@dataclass
class Counts:
    """What a run read and wrote; ``rows_in == rows_out`` or the run fails."""

    rows_in: int = 0
    rows_out: int = 0
    statuses: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    blank_lines: int = 0
    short_rows: int = 0
    seconds: float = 0.0


@dataclass
class Source:
    """An open input: its columns, a lazy row iterator and the row count if known."""

    path: Path
    columns: List[str]
    rows: Iterator[Dict[str, Any]]
    total: Optional[int] = None


# --------------------------------------------------------------------------- columns


def file_format(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ClassifyError(
            f"Cannot tell the format of {path} from its suffix {path.suffix!r}: use one of "
            f"{', '.join(SUFFIXES)}."
        )
    return fmt


def output_columns(labels: List[str], with_labels: bool) -> List[str]:
    """The columns ``classify`` adds, in order."""
    columns = [PROB_PREFIX + label for label in labels]
    return columns + ([LABELS_COLUMN] if with_labels else []) + [STATUS_COLUMN]


def check_columns(columns: List[str], text_column: str, added: List[str], where: str) -> None:
    """Fail on duplicate names, a missing text column or an added column that exists."""
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise ClassifyError(f"{where} has duplicate column names: {duplicates}.")
    if text_column not in columns:
        raise ClassifyError(
            f"{where} has no column {text_column!r} (--text-column). Columns found: {columns}."
        )
    clashes = [name for name in added if name in columns]
    if clashes:
        raise ClassifyError(
            f"{where} already has column(s) {clashes}, which classify would write. Rename "
            "them in the input first."
        )


# --------------------------------------------------------------------------- readers


def open_source(path: Path, counts: Counts) -> Source:
    if not path.is_file():
        raise ClassifyError(f"Input file not found: {path}")
    fmt = file_format(path)
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "jsonl":
        return _read_jsonl(path, counts)
    return _read_delimited(path, "\t" if fmt == "tsv" else ",", counts)


def _read_delimited(path: Path, delimiter: str, counts: Counts) -> Source:
    # A long document is a legitimate cell; the csv module's default cap is 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    handle = path.open(newline="", encoding="utf-8-sig")
    reader = csv.reader(handle, delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        handle.close()
        raise ClassifyError(f"{path} is empty: it has no header row.")

    def rows() -> Iterator[Dict[str, Any]]:
        with handle:
            for cells in reader:
                if not cells:
                    counts.blank_lines += 1
                    continue
                if len(cells) > len(header):
                    raise ClassifyError(
                        f"{path}, line {reader.line_num}: {len(cells)} fields, but the header "
                        f"has {len(header)}. Quote fields that hold the delimiter."
                    )
                if len(cells) < len(header):
                    counts.short_rows += 1
                row: Dict[str, Any] = dict.fromkeys(header)
                row.update(zip(header, cells))
                yield row

    return Source(path, header, rows())


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _read_jsonl(path: Path, counts: Counts) -> Source:
    """JSON Lines; the first record's keys are the columns (a later record may add keys)."""
    handle = path.open(encoding="utf8")
    records = _jsonl_records(path, handle, counts)
    first = next(records, None)
    if first is None:
        handle.close()
        raise ClassifyError(f"{path} holds no JSON records.")

    def rows() -> Iterator[Dict[str, Any]]:
        with handle:
            yield first
            yield from records

    return Source(path, list(first), rows())


def _jsonl_records(path: Path, lines: Iterable[str], counts: Counts) -> Iterator[Dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            counts.blank_lines += 1
            continue
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except ValueError as error:
            raise ClassifyError(f"{path}, line {number}: not a JSON record ({error}).") from error
        if not isinstance(record, dict):
            raise ClassifyError(f"{path}, line {number}: a JSON object is needed, not {line!r}.")
        yield record


def _import_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise ClassifyError(
            "Parquet needs pyarrow: pip install pyarrow (or spacy-dallmi[ray])."
        ) from error
    return pyarrow


def _read_parquet(path: Path) -> Source:
    pa = _import_pyarrow()
    parquet_file = pa.parquet.ParquetFile(path)

    def rows() -> Iterator[Dict[str, Any]]:
        for batch in parquet_file.iter_batches(batch_size=CHUNK_ROWS):
            yield from batch.to_pylist()

    return Source(path, parquet_file.schema_arrow.names, rows(), parquet_file.metadata.num_rows)


# --------------------------------------------------------------------------- writers


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


class Writer:
    """Writes rows of a fixed set of columns to ``path`` in format ``fmt``; ``rows`` counts
    the rows written."""

    def __init__(self, path: Path, fmt: str, columns: List[str], source: Source, added: List[str]):
        self.path = path
        self.columns = columns
        self.fmt = fmt
        self.source = source
        self.added = added
        self.column_set = set(columns)
        self.handle: Any = None
        self.buffer: List[Dict[str, Any]] = []
        self.parquet_writer: Any = None
        self.schema: Any = None
        self.rows = 0
        if self.fmt == "parquet":
            _import_pyarrow()
        else:
            self.handle = path.open("w", newline="", encoding="utf8")
        if self.fmt in ("csv", "tsv"):
            self.csv = csv.writer(self.handle, delimiter="\t" if self.fmt == "tsv" else ",")
            self.csv.writerow(columns)

    def write(self, row: Dict[str, Any]) -> None:
        self.rows += 1
        if self.fmt == "jsonl":
            self.handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            return
        if not self.column_set.issuperset(row):
            extra = [key for key in row if key not in self.column_set]
            raise ClassifyError(
                f"Row {self.rows} of {self.source.path} has column(s) {extra} that the first "
                f"row lacks; {self.fmt} output needs one set of columns. Write JSONL instead."
            )
        if self.fmt == "parquet":
            self.buffer.append(row)
            if len(self.buffer) >= CHUNK_ROWS:
                self._flush_parquet()
        else:
            self.csv.writerow([_csv_cell(row.get(name)) for name in self.columns])

    def _flush_parquet(self) -> None:
        pa = _import_pyarrow()
        if self.schema is None:
            self.schema = self._parquet_schema(pa)
            self.parquet_writer = pa.parquet.ParquetWriter(self.path, self.schema)
        try:
            table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ClassifyError(
                f"Rows up to {self.rows} of {self.source.path} do not fit the Parquet column "
                f"types taken from the first rows ({error}). Write CSV or JSONL instead."
            ) from error
        self.parquet_writer.write_table(table)
        self.buffer = []

    def _parquet_schema(self, pa: Any) -> Any:
        """Input columns: Parquet keeps its types, CSV/TSV are text, JSONL types come from
        the first rows (all-null columns become text); then the added columns."""
        added_types = {LABELS_COLUMN: pa.list_(pa.string()), STATUS_COLUMN: pa.string()}
        fmt = file_format(self.source.path)
        if fmt == "parquet":
            fields = list(pa.parquet.read_schema(self.source.path))
        else:
            fields = []
            for name in self.source.columns:
                kind = pa.string()
                if fmt == "jsonl":
                    kind = pa.array([row.get(name) for row in self.buffer]).type
                fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
        for name in self.added:
            fields.append(pa.field(name, added_types.get(name, pa.float32())))
        return pa.schema(fields)

    def close(self) -> None:
        if self.fmt == "parquet":
            if self.buffer or self.parquet_writer is None:
                self._flush_parquet()
            self.parquet_writer.close()
        else:
            self.handle.close()

    def abort(self) -> None:
        """Close without finishing and delete the file."""
        if self.parquet_writer is not None:
            self.parquet_writer.close()
        if self.handle is not None:
            self.handle.close()
        self.path.unlink(missing_ok=True)


def counted(rows: Iterator[Dict[str, Any]], counts: Counts) -> Iterator[Dict[str, Any]]:
    """The rows, unchanged, each counted in ``counts.rows_in`` as it is read."""
    for row in rows:
        counts.rows_in += 1
        yield row

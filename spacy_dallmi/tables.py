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
columns. A file that is not UTF-8 text is an error naming its first bad line. pyarrow is
imported only when a Parquet file is read or written.

Outputs are written to a temporary file of their own next to OUTPUT and published only when
complete (:func:`temporary_output`, :func:`publish`): two runs on one OUTPUT never share a
file, and OUTPUT is always one run's complete output. :func:`write_classified` is that
read-predict-write run for one OUTPUT, whoever predicts: it lives here, below both callers,
so that ``classify`` can hand over to ``spacy_dallmi.ray`` without Ray's module importing
``classify`` back.
"""

import csv
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

PROB_PREFIX = "prob_"
LABELS_COLUMN = "labels"
STATUS_COLUMN = "text_status"
STATUSES = ("ok", "empty", "missing")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
CHUNK_ROWS = 1024  # rows per Parquet record batch, read and written

Predict = Callable[
    [Iterable[Tuple[Any, Dict[str, Any]]]], Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]
]


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
    line: int = 0  # CSV/TSV: the line the last row read ends on, for messages that name it


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


def repeated(names: Iterable[str]) -> List[str]:
    """The names that occur more than once, sorted: a table's columns or a JSON object's keys,
    here and in the experiment kit's readers. It runs on every JSON line read, so the usual
    answer (none) is a set's length away."""
    names = list(names)
    if len(set(names)) == len(names):
        return []
    return sorted(name for name, count in Counter(names).items() if count > 1)


def check_columns(columns: List[str], text_column: str, added: List[str], where: str) -> None:
    """Fail on duplicate names, a missing text column or an added column that exists."""
    duplicates = repeated(columns)
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
    try:
        if fmt == "jsonl":
            source = _read_jsonl(path, counts)
        else:
            source = read_delimited(path, "\t" if fmt == "tsv" else ",", counts)
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None
    source.rows = _decoded(path, source.rows)
    return source


def _decoded(path: Path, rows: Iterator[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    try:
        yield from rows
    except UnicodeDecodeError as error:
        raise not_utf8(path, error) from None


def not_utf8(path: Path, error: UnicodeDecodeError) -> ClassifyError:
    """The error for a text file that is not UTF-8: the file, its first bad line, the fix."""
    line = first_undecodable_line(path, "utf-8")
    where = f", line {line}" if line else ""
    return ClassifyError(
        f"{path}{where}: not valid UTF-8 text ({error.reason}). Save the file as UTF-8 "
        f"(e.g. iconv -f cp1252 -t utf-8 {path.name} > utf8{path.suffix}) and run again."
    )


def first_undecodable_line(path: Path, encoding: str) -> int:
    """The 1-based number of the first line that is not valid ``encoding`` (0 if none is), for
    errors that send the user to the line; the experiment kit's readers use it too."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError:
                return number
    return 0


def open_sources(paths: List[Path], counts: Counts) -> Source:
    """The rows of several files of one format, one after the other, as one source.

    CSV, TSV and Parquet files must have the first file's columns (JSONL records may add
    keys, as within a file)."""
    first = open_source(paths[0], counts)
    if len(paths) == 1:
        return first

    def rows() -> Iterator[Dict[str, Any]]:
        yield from first.rows
        for path in paths[1:]:
            source = open_source(path, counts)
            if file_format(path) != "jsonl" and source.columns != first.columns:
                raise ClassifyError(
                    f"{path} has columns {source.columns}, but {paths[0]} has "
                    f"{first.columns}: files written to one OUTPUT need the same columns."
                )
            yield from source.rows

    return Source(first.path, first.columns, rows())


def read_delimited(
    path: Path,
    delimiter: str,
    counts: Counts,
    encoding: str = "utf-8-sig",
    header: Optional[List[str]] = None,
) -> Source:
    """CSV or TSV rows as dicts keyed by the header: the first row, or ``header`` for a
    headerless file (the experiment kit's readers use it too, with their own encoding)."""
    # A long document is a legitimate cell; the csv module's default cap is 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    handle = path.open(newline="", encoding=encoding)
    reader = csv.reader(handle, delimiter=delimiter)
    if header is None:
        try:
            header = next(reader, None)
        except UnicodeDecodeError:
            handle.close()
            raise
        if header is None:
            handle.close()
            raise ClassifyError(f"{path} is empty: it has no header row.")
    columns = header

    def rows() -> Iterator[Dict[str, Any]]:
        with handle:
            for cells in reader:
                if not cells:
                    counts.blank_lines += 1
                    continue
                if len(cells) > len(columns):
                    # Blank cells past the header (a trailing delimiter, as many exports
                    # write) hold nothing to lose; a filled one would be dropped, so it fails.
                    if any(cell.strip() for cell in cells[len(columns) :]):
                        raise ClassifyError(
                            f"{path}, line {reader.line_num}: {len(cells)} fields, but the "
                            f"header has {len(columns)}. Quote fields that hold the delimiter."
                        )
                    cells = cells[: len(columns)]
                if len(cells) < len(columns):
                    counts.short_rows += 1
                row: Dict[str, Any] = dict.fromkeys(columns)
                row.update(zip(columns, cells))
                source.line = reader.line_num
                yield row

    source = Source(path, columns, rows())
    return source


def unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """``json.loads`` hook: a key given twice in one object is an error, not "last one wins"
    (here and in the experiment kit's readers)."""
    twice = repeated([key for key, _ in pairs])
    if twice:
        raise ValueError(f"key(s) {', '.join(map(repr, twice))} given twice")
    return dict(pairs)


def _read_jsonl(path: Path, counts: Counts) -> Source:
    """JSON Lines; the first record's keys are the columns (a later record may add keys).

    A UTF-8 byte order mark is skipped, as for CSV (Windows editors write one)."""
    handle = path.open(encoding="utf-8-sig")
    records = (record for _, record in jsonl_records(path, handle, counts))
    try:
        first = next(records, None)
    except (UnicodeDecodeError, ClassifyError):
        handle.close()
        raise
    if first is None:
        handle.close()
        raise ClassifyError(f"{path} holds no JSON records.")

    def rows() -> Iterator[Dict[str, Any]]:
        with handle:
            yield first
            yield from records

    return Source(path, list(first), rows())


def jsonl_records(
    path: Path, lines: Iterable[str], counts: Counts, lenient: bool = False
) -> Iterator[Tuple[int, Optional[Dict[str, Any]]]]:
    """``(line number, record)`` per non-blank line (blank lines are counted). A line that is
    not a JSON object is an error or, ``lenient`` (the experiment kit's readers, which count
    such rows), a None record; a key given twice is always an error."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            counts.blank_lines += 1
            continue
        try:
            record = json.loads(line, object_pairs_hook=unique_keys)
        except json.JSONDecodeError as error:
            if not lenient:
                raise ClassifyError(
                    f"{path}, line {number}: not a JSON record ({error})."
                ) from error
            record = None
        except ValueError as error:  # a key given twice
            what = f"{error}." if lenient else f"not a JSON record ({error})."
            raise ClassifyError(f"{path}, line {number}: {what}") from error
        if not isinstance(record, dict):
            if not lenient:
                raise ClassifyError(
                    f"{path}, line {number}: a JSON object is needed, not {line!r}."
                )
            record = None
        yield number, record


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


# --------------------------------------------------------------------------- outputs


def parts_output(output: str) -> bool:
    """Whether OUTPUT asks for a folder of part files: a path ending in a separator."""
    return output.endswith(("/", os.sep))


def check_output(path: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """Refuse an OUTPUT that is an input, a folder, or (without ``overwrite``) exists."""
    for source in inputs:
        if path.resolve() == Path(source).resolve():
            raise ClassifyError(f"OUTPUT is the INPUT file ({source}): choose another path.")
    if path.is_dir():
        raise ClassifyError(
            f"{path} is a folder: name a file (its suffix gives the format), or end OUTPUT "
            "with / for a folder of Parquet part files (--ray)."
        )
    if path.exists() and not overwrite:
        raise ClassifyError(f"{path} exists: pass --overwrite to replace it, or choose another.")


def check_output_folder(path: Path, overwrite: bool) -> None:
    """Refuse a folder OUTPUT that is a file or, without ``overwrite``, holds files."""
    if path.exists() and not path.is_dir():
        raise ClassifyError(f"{path} is a file, not a folder: choose another OUTPUT.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ClassifyError(
            f"Output folder {path} is not empty: pass --overwrite to replace it, or choose "
            "a new one."
        )


def temporary_output(path: Path, folder: bool = False) -> Path:
    """A new, uniquely named temporary file (or folder) next to ``path``, for this run only.

    In the same folder, so that publishing it is a rename, never a copy.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{path.name}.", ".partial"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(handle)
    return Path(name)


def _usual_mode(path: Path) -> None:
    """Give a temporary file the permissions of a file the user creates (umask), not 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def _taken(path: Path, temporary: Path) -> ClassifyError:
    return ClassifyError(
        f"{path} was written by another run while this one ran: it is kept, and this run's "
        f"output is at {temporary}. Pass --overwrite to replace OUTPUT, or rename that file."
    )


def publish(temporary: Path, path: Path, overwrite: bool) -> None:
    """Move a finished temporary output to ``path`` in one step (a rename).

    With ``overwrite`` the last run to finish wins (``os.replace``). Without, an OUTPUT that
    appeared while this run ran (another run finished first) is kept, and this run fails
    naming its own output: the hard link that publishes the file fails if the name exists,
    so the check and the write are one step.
    """
    _usual_mode(temporary)
    if temporary.is_dir():
        _publish_folder(temporary, path, overwrite)
    elif overwrite:
        os.replace(temporary, path)
    else:
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise _taken(path, temporary) from None
        except OSError:  # a file system without hard links: check, then rename
            if path.exists():
                raise _taken(path, temporary) from None
            os.replace(temporary, path)
            return
        temporary.unlink()


def _publish_folder(temporary: Path, path: Path, overwrite: bool) -> None:
    """A folder is renamed into place; an empty one at ``path`` is replaced by the rename,
    a full one (with ``overwrite``) is moved aside first and then deleted."""
    try:
        os.rename(temporary, path)
        return
    except OSError:
        if not overwrite or not path.is_dir():
            raise _taken(path, temporary) from None
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, aside / path.name)
    os.rename(temporary, path)
    shutil.rmtree(aside, ignore_errors=True)


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
            raise self._type_error(pa, error) from None
        self.parquet_writer.write_table(table)
        self.buffer = []

    def _type_error(self, pa: Any, error: Exception, name: Optional[str] = None) -> ClassifyError:
        """Name the first row and column whose value does not fit the Parquet column type
        (``name``'s inferred type when the schema is being built)."""
        first_row = self.rows - len(self.buffer) + 1
        fields = [pa.field(name, pa.null())] if name else list(self.schema or [])
        for field_ in fields:
            values = [row.get(field_.name) for row in self.buffer]
            kinds: Dict[str, int] = {}
            for index, value in enumerate(values):
                kind = _kind(value)
                if kind is not None:
                    kinds.setdefault(kind, index)
                if name is None:
                    try:
                        pa.array([value], type=field_.type)
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        return self._mixed(field_.name, first_row + index, value, f"{field_.type}")
                elif len(kinds) > 1:
                    return self._mixed(field_.name, first_row + index, value, " and ".join(kinds))
        return ClassifyError(
            f"Rows {first_row} to {self.rows} of {self.source.path} do not fit Parquet column "
            f"types ({str(error).splitlines()[0]}). Write CSV or JSONL output instead."
        )

    def _mixed(self, column: str, row: int, value: Any, kinds: str) -> ClassifyError:
        return ClassifyError(
            f"{self.source.path}, row {row}, column {column!r}: value {value!r} does not fit "
            f"the column's other values ({kinds}); a Parquet column holds one type. Write CSV "
            "or JSONL output, or make the column one type in the input."
        )

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
                    try:
                        kind = pa.array([row.get(name) for row in self.buffer]).type
                    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                        raise self._type_error(pa, error, name) from None
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


def _kind(value: Any) -> Optional[str]:
    """What a JSON value is, in words: numbers of either type are one kind."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, (int, float)):
        return "numbers"
    if isinstance(value, str):
        return "text"
    return "lists" if isinstance(value, list) else "objects"


def counted(rows: Iterator[Dict[str, Any]], counts: Counts) -> Iterator[Dict[str, Any]]:
    """The rows, unchanged, each counted in ``counts.rows_in`` as it is read."""
    for row in rows:
        counts.rows_in += 1
        yield row


# --------------------------------------------------------------------------- the run


def write_classified(
    input_paths: Sequence[Path],
    output_path: Path,
    text_column: str,
    added: List[str],
    predict: Predict,
    progress: Any = None,
    overwrite: bool = False,
) -> Counts:
    """Read the rows of ``input_paths``, add the columns ``predict`` gives, write OUTPUT.

    ``predict`` maps ``(text value, row)`` pairs to ``(row, added columns)`` in order: in
    this process (:func:`spacy_dallmi.classify.classify_file`) or on Ray actors
    (``spacy_dallmi.ray``). The rows go to a temporary file of this run's own and OUTPUT
    appears, whole, only at the end.
    """
    inputs, output_path = [Path(path) for path in input_paths], Path(output_path)
    fmt = file_format(output_path)
    check_output(output_path, overwrite, inputs)
    counts = Counts()
    start = time.perf_counter()
    source = open_sources(inputs, counts)
    check_columns(source.columns, text_column, added, str(inputs[0]))
    if progress is not None and source.total is not None:
        progress.total = source.total
    temporary = temporary_output(output_path)
    try:
        writer = Writer(temporary, fmt, source.columns + added, source, added)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    try:
        rows = counted(source.rows, counts)
        items = ((row.get(text_column), row) for row in rows)
        for row, columns in predict(items):
            row.update(columns)
            writer.write(row)
            counts.statuses[columns[STATUS_COLUMN]] += 1
            if progress is not None:
                progress.update(1)
        if counts.rows_in != writer.rows:
            raise ClassifyError(
                f"Read {counts.rows_in} rows but wrote {writer.rows}: a component's error "
                "handler may have dropped documents. The output was not completed."
            )
        writer.close()
    except BaseException:
        writer.abort()
        raise
    counts.rows_out = writer.rows
    counts.seconds = time.perf_counter() - start
    publish(temporary, output_path, overwrite)
    return counts

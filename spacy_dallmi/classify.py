"""``classify``: label a corpus file with a saved pipeline, from the command line.

An adapted classifier exists to label a target corpus, and its users should not have to
write Python to do that. ``python -m spacy_dallmi classify MODEL INPUT OUTPUT --text-column
NAME`` reads CSV, TSV, JSONL or Parquet, and writes the same rows, in the same order, with
one ``prob_<label>`` column per label, optionally a ``labels`` column (labels at or over a
threshold) and a ``text_status`` column.

It streams: rows are read lazily (Parquet in record batches), go through one ``nlp.pipe``
with their row as context, and are written as they come back, so memory does not grow
with the file. The output is written to ``OUTPUT.partial`` and renamed when complete, so
a failed run never leaves a file that looks finished.

Nothing is dropped silently. An empty or whitespace-only text is ``empty`` and a null or
absent one ``missing``: such rows are kept with null probabilities and counted. Rows read
and rows written are counted and must match; blank lines (not rows in CSV or JSONL) and
CSV rows with fewer fields than the header (their missing cells become null) are counted.
A missing text column, duplicate column names, and output columns that already exist in
the input are errors that name the columns.

spaCy, torch and pyarrow are imported when a command runs, not when this module is, so
``--help`` stays fast; the command has a plain signature that typer turns into options, so
this core module does not import typer. :func:`predict_rows` and :func:`load_thresholds`
are shared with the Ray path (``spacy_dallmi.ray``).
"""

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

import numpy
from wasabi import msg

PROB_PREFIX = "prob_"
LABELS_COLUMN = "labels"
STATUS_COLUMN = "text_status"
STATUSES = ("ok", "empty", "missing")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
CHUNK_ROWS = 1024  # rows per Parquet record batch, read and written
DEFAULT_BATCH_SIZE = 64

Context = TypeVar("Context")


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


# ------------------------------------------------------------------ columns and labels


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


def cats_labels(nlp: Any) -> List[str]:
    """Labels of the components that set ``doc.cats``, in pipeline order."""
    names = [name for name in nlp.pipe_names if "doc.cats" in nlp.get_pipe_meta(name).assigns]
    if not names:
        raise ClassifyError(f"The pipeline has no component that sets doc.cats: {nlp.pipe_names}.")
    labels: List[str] = []
    for name in names:
        labels += [label for label in nlp.get_pipe(name).labels if label not in labels]
    return labels


def set_bucket_window(nlp: Any, window: int) -> None:
    """Set ``bucket_window`` on every component with length-bucketed ``pipe``."""
    from .inference import BucketedPipeMixin

    pipes = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, BucketedPipeMixin)]
    if not pipes:
        msg.warn("No component of the pipeline buckets by length; --bucket-window is ignored.")
    for pipe in pipes:
        pipe.cfg["bucket_window"] = window


def load_thresholds(
    path: Optional[Path], labels: List[str], default: Optional[float]
) -> Optional[Dict[str, float]]:
    """Per-label thresholds: a JSON object ``{label: threshold}``, ``default`` for the rest.

    Returns None when neither is given (no ``labels`` column).
    """
    thresholds: Dict[str, float] = {}
    if path is not None:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf8"))
        except (OSError, ValueError) as error:
            raise ClassifyError(f"Cannot read thresholds from {path}: {error}") from error
        if not isinstance(loaded, dict):
            raise ClassifyError(f'{path} must hold a JSON object {{"label": threshold, ...}}.')
        unknown = sorted(set(loaded) - set(labels))
        if unknown:
            raise ClassifyError(
                f"{path} names label(s) {unknown} that the model does not have. Its labels "
                f"are {labels}."
            )
        thresholds = dict(loaded)
    elif default is None:
        return None
    uncovered = [label for label in labels if label not in thresholds]
    if uncovered and default is None:
        raise ClassifyError(
            f"{path} has no threshold for label(s) {uncovered}: add them, or pass --threshold "
            "for the labels it leaves out."
        )
    thresholds.update(dict.fromkeys(uncovered, default))
    for label, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ClassifyError(
                f"Threshold of {label!r} must be a number in [0, 1], not {value!r}."
            )
    return {label: float(thresholds[label]) for label in labels}


# ------------------------------------------------------------------------- prediction


def text_status(value: Any) -> Tuple[str, str]:
    """``(text to classify, status)``: null or NaN is ``missing``, blank is ``empty``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", "missing"
    text = value if isinstance(value, str) else str(value)
    return (text, "ok") if text.strip() else ("", "empty")


def _float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (the model's precision)."""
    return float(str(numpy.float32(value)))


def predict_rows(
    nlp: Any,
    items: Iterable[Tuple[Any, Context]],
    labels: List[str],
    thresholds: Optional[Dict[str, float]],
    batch_size: int,
) -> Iterator[Tuple[Context, Dict[str, Any]]]:
    """For each ``(text value, context)``, in order: the context and its added columns.

    Rows without a text go through the pipeline as ``""`` (keeping the stream in order)
    and get null probabilities.
    """

    def pairs() -> Iterator[Tuple[str, Tuple[str, Context]]]:
        for value, context in items:
            text, status = text_status(value)
            yield text, (status, context)

    for doc, (status, context) in nlp.pipe(pairs(), as_tuples=True, batch_size=batch_size):
        ok = status == "ok"
        added: Dict[str, Any] = {
            PROB_PREFIX + label: _float32(doc.cats[label]) if ok else None for label in labels
        }
        if thresholds is not None:
            added[LABELS_COLUMN] = (
                [label for label in labels if doc.cats[label] >= thresholds[label]] if ok else None
            )
        added[STATUS_COLUMN] = status
        yield context, added


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


class _Writer:
    """Writes rows of a fixed set of columns to ``path`` in format ``fmt``."""

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


# ---------------------------------------------------------------------------- command


def classify_file(
    nlp: Any,
    input_path: Path,
    output_path: Path,
    text_column: str,
    *,
    thresholds: Optional[Dict[str, float]] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Any = None,
) -> Counts:
    """Classify every row of ``input_path`` and write them to ``output_path``.

    progress: a progress bar (``tqdm``): its ``total`` is set when the input knows its
    row count, and ``update(1)`` is called per row written.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    fmt = file_format(output_path)
    if output_path.resolve() == input_path.resolve():
        raise ClassifyError(f"OUTPUT is the INPUT file ({input_path}): choose another path.")
    labels = cats_labels(nlp)
    added = output_columns(labels, thresholds is not None)
    counts = Counts()
    start = time.perf_counter()
    source = open_source(input_path, counts)
    check_columns(source.columns, text_column, added, str(input_path))
    if progress is not None and source.total is not None:
        progress.total = source.total
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    writer = _Writer(partial, fmt, source.columns + added, source, added)
    try:
        rows = _counted(source.rows, counts)
        items = ((row.get(text_column), row) for row in rows)
        for row, columns in predict_rows(nlp, items, labels, thresholds, batch_size):
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
    os.replace(partial, output_path)
    return counts


def _counted(rows: Iterator[Dict[str, Any]], counts: Counts) -> Iterator[Dict[str, Any]]:
    for row in rows:
        counts.rows_in += 1
        yield row


def print_statuses(statuses: Dict[str, int]) -> None:
    msg.info(
        f"Texts classified: {statuses['ok']}; empty: {statuses['empty']}; missing: "
        f"{statuses['missing']} (kept, null probabilities, see column {STATUS_COLUMN})."
    )


def print_summary(counts: Counts, output: Path) -> None:
    rate = counts.rows_out / counts.seconds if counts.seconds else 0.0
    msg.good(
        f"Wrote {counts.rows_out} rows to {output} ({counts.rows_in} read) in "
        f"{counts.seconds:.1f} s, {rate:.1f} docs/s."
    )
    print_statuses(counts.statuses)
    if counts.blank_lines:
        msg.info(f"Blank lines skipped (not rows): {counts.blank_lines}.")
    if counts.short_rows:
        msg.warn(f"Rows with fewer fields than the header (cells left null): {counts.short_rows}.")


def classify_command(
    model: str,
    input: Path,
    output: Path,
    text_column: Optional[str] = None,
    threshold: Optional[float] = None,
    thresholds: Optional[Path] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bucket_window: Optional[int] = None,
    gpu_id: int = -1,
    progress: bool = True,
    ray: bool = False,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    ray_address: Optional[str] = None,
) -> None:
    """Add a probability column per label to every row of a CSV, TSV, JSONL or Parquet file.

    MODEL: a saved pipeline (folder or package name).
    INPUT: a CSV, TSV, JSONL or Parquet file (with --ray, also a folder of them).
    OUTPUT: a file whose suffix names its format (with --ray, a folder for Parquet).

    --text-column NAME (required): the column holding the text.
    --threshold X: add a labels column, the labels with probability >= X.
    --thresholds FILE: per-label thresholds, a JSON object {"label": threshold}.
    --batch-size N: docs per batch; --bucket-window N: docs sorted by length at once.
    --gpu-id N: GPU to run on (-1: CPU).
    --ray: run on Ray Data (the ray extra): --workers actors, --gpus-per-worker each,
    on the cluster at --ray-address (default: a local Ray).
    """
    # A plain signature, so this module needs no typer: the core package stays lean, and
    # typer turns the parameters into the options above when the command is registered.
    if not text_column:
        msg.fail("Missing option --text-column: the column that holds the text.", exits=1)
    if batch_size < 1:
        msg.fail("--batch-size must be at least 1.", exits=1)
    try:
        if ray:
            _run_ray(
                model,
                input,
                output,
                text_column,
                threshold,
                thresholds,
                batch_size,
                bucket_window,
                workers,
                gpus_per_worker,
                ray_address,
            )
        else:
            _run_local(
                model,
                input,
                output,
                text_column,
                threshold,
                thresholds,
                batch_size,
                bucket_window,
                gpu_id,
                progress,
            )
    except (ClassifyError, OSError) as error:
        msg.fail(str(error), exits=1)


def _run_local(
    model: str,
    input_path: Path,
    output_path: Path,
    text_column: str,
    threshold: Optional[float],
    thresholds_path: Optional[Path],
    batch_size: int,
    bucket_window: Optional[int],
    gpu_id: int,
    progress: bool,
) -> None:
    import spacy
    from tqdm import tqdm

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    if bucket_window is not None:
        set_bucket_window(nlp, bucket_window)
    thresholds = load_thresholds(thresholds_path, cats_labels(nlp), threshold)
    bar = tqdm(unit=" docs", disable=not progress, file=sys.stderr, mininterval=1.0, delay=1.0)
    with bar:
        counts = classify_file(
            nlp,
            input_path,
            output_path,
            text_column,
            thresholds=thresholds,
            batch_size=batch_size,
            progress=bar,
        )
    print_summary(counts, output_path)


def _run_ray(
    model: str,
    input_path: Path,
    output_dir: Path,
    text_column: str,
    threshold: Optional[float],
    thresholds_path: Optional[Path],
    batch_size: int,
    bucket_window: Optional[int],
    workers: int,
    gpus_per_worker: float,
    ray_address: Optional[str],
) -> None:
    try:
        import ray
    except ImportError as error:
        raise ClassifyError("--ray needs Ray: pip install 'spacy-dallmi[ray]'.") from error
    from .ray import classify_with_ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, include_dashboard=False)
    try:
        summary = classify_with_ray(
            model,
            [input_path],
            output_dir,
            text_column,
            workers,
            num_gpus_per_worker=gpus_per_worker,
            batch_size=batch_size,
            threshold=threshold,
            thresholds_path=thresholds_path,
            bucket_window=bucket_window,
        )
    finally:
        if started:
            ray.shutdown()
    msg.good(
        f"Wrote {summary.rows} rows as {len(summary.files)} Parquet file(s) to {output_dir} "
        f"in {summary.seconds:.1f} s."
    )
    print_statuses(summary.statuses)

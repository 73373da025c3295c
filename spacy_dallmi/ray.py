"""Classify files on Ray: one pipeline per actor, on CPUs or GPUs.

One process is the anchor (``classify``); past one machine, or past one GPU, a corpus
needs a scheduler. Ray Data already reads CSV, JSONL and Parquet in blocks, streams them
through a pool of actors with backpressure, places actors on GPUs (``num_gpus``) and runs
the same code on a laptop or a cluster, so this module only says what an actor does: load
the pipeline once, then add the same columns as ``classify`` to each batch
(:func:`spacy_dallmi.prediction.predict_rows`), so both paths give the same values.

Two outputs. One file, in the format of its suffix (:func:`classify_file_with_ray`, what
``classify --ray OUT.csv`` runs): this process reads and writes with ``classify``'s own
readers and writer, and the actors only predict, so the file is the one-process file row
by row. A folder of Parquet part files (:func:`classify_with_ray`, ``classify --ray OUT/``):
Ray Data reads, classifies and writes in parallel, nothing passing through this process.
Either is written under a temporary name next to OUTPUT and renamed when complete.

Needs the extra: ``pip install 'spacy-dallmi[ray]'``. The caller owns the Ray session:
``ray.init()`` locally, ``ray.init(address="auto")`` on a cluster, where the model path must
be readable on every node.
"""

import shutil
import time
from collections import Counter, deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow
import pyarrow.csv
import pyarrow.parquet
import ray

from .prediction import (
    DEFAULT_BATCH_SIZE,
    cats_labels,
    load_pipeline,
    load_thresholds,
    predict_rows,
    set_bucket_window,
)
from .tables import (
    LABELS_COLUMN,
    STATUS_COLUMN,
    STATUSES,
    ClassifyError,
    Counts,
    check_columns,
    check_output_folder,
    file_format,
    not_utf8,
    output_columns,
    publish,
    temporary_output,
    write_classified,
)

PathLike = Union[str, Path]


@dataclass
class RaySummary:
    """What ``classify_with_ray`` wrote: rows, text statuses, wall time and files."""

    rows: int
    statuses: Dict[str, int]
    seconds: float
    files: List[str]


class PipelineActor:
    """``map_batches`` callable class: loads the pipeline once per actor (worker).

    ``num_threads`` torch threads per actor: each actor is one copy of the model, so
    actors times threads should not exceed the node's cores.
    """

    def __init__(
        self,
        model_path: str,
        text_column: str,
        thresholds: Optional[Dict[str, float]],
        batch_size: int,
        num_threads: int,
        use_gpu: bool,
        bucket_window: Optional[int],
    ) -> None:
        import spacy
        import torch

        torch.set_num_threads(num_threads)
        if use_gpu:
            # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU, which torch sees as device 0.
            spacy.require_gpu(0)
        self.nlp = spacy.load(model_path)
        if bucket_window is not None:
            set_bucket_window(self.nlp, bucket_window)
        self.labels = cats_labels(self.nlp)
        self.text_column = text_column
        self.thresholds = thresholds
        self.batch_size = batch_size
        self.fields = added_fields(self.labels, thresholds is not None)

    def predict(self, values: List[Any]) -> List[Dict[str, Any]]:
        """The columns ``classify`` adds, for each text value, in order."""
        items = ((value, None) for value in values)
        rows = [
            added
            for _, added in predict_rows(
                self.nlp, items, self.labels, self.thresholds, self.batch_size
            )
        ]
        if len(rows) != len(values):
            raise ClassifyError(
                f"A batch of {len(values)} rows came back with {len(rows)}: a component's "
                "error handler dropped documents."
            )
        return rows

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        rows = self.predict(batch.column(self.text_column).to_pylist())
        for column in self.fields:
            values = pyarrow.array([row[column.name] for row in rows], type=column.type)
            batch = batch.append_column(column, values)
        return batch


def added_fields(labels: List[str], with_labels: bool) -> List[pyarrow.Field]:
    """Arrow fields of the columns ``classify`` adds (same names and types as its Parquet)."""
    types = {LABELS_COLUMN: pyarrow.list_(pyarrow.string()), STATUS_COLUMN: pyarrow.string()}
    return [
        pyarrow.field(name, types.get(name, pyarrow.float32()))
        for name in output_columns(labels, with_labels)
    ]


def expand_inputs(input_paths: Sequence[PathLike]) -> List[str]:
    """Files from files and folders (a folder's files with a known suffix), one format."""
    files: List[Path] = []
    for entry in map(Path, input_paths):
        if entry.is_dir():
            files += sorted(p for p in entry.iterdir() if p.is_file() and _known(p))
        elif entry.is_file():
            files.append(entry)
        else:
            raise ClassifyError(f"Input not found: {entry}")
    if not files:
        raise ClassifyError(f"No CSV, TSV, JSONL or Parquet files in {list(input_paths)}.")
    formats = {file_format(path) for path in files}
    if len(formats) > 1:
        raise ClassifyError(f"Inputs mix formats {sorted(formats)}: pass one format per run.")
    return [str(path) for path in files]


def _known(path: Path) -> bool:
    try:
        file_format(path)
    except ClassifyError:
        return False
    return True


def read_dataset(files: List[str], text_column: str, concurrency: int) -> "ray.data.Dataset":
    """A Ray Dataset of the files. CSV/TSV text columns are read as strings.

    Read tasks reserve no CPU: Ray Data starts the actors first, and when they hold every
    CPU a read that waits for one never runs (ray-project/ray#44687). Reading is light next
    to the model; ``concurrency`` caps the reads running at once.
    """
    fmt = file_format(Path(files[0]))
    io = {"num_cpus": 0, "concurrency": concurrency}
    if fmt == "parquet":
        return ray.data.read_parquet(files, **io)
    if fmt == "jsonl":
        return ray.data.read_json(files, lines=True, file_extensions=["jsonl"], **io)
    return ray.data.read_csv(
        files,
        **io,
        file_extensions=[fmt],
        parse_options=pyarrow.csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
        convert_options=pyarrow.csv.ConvertOptions(column_types={text_column: pyarrow.string()}),
    )


def classify_with_ray(
    model_path: PathLike,
    input_paths: Sequence[PathLike],
    output_dir: PathLike,
    text_column: str,
    workers: int,
    num_gpus_per_worker: float = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    threshold: Optional[float] = None,
    thresholds_path: Optional[PathLike] = None,
    num_cpus_per_worker: float = 1,
    rows_per_call: int = 1024,
    bucket_window: Optional[int] = None,
    overwrite: bool = False,
) -> RaySummary:
    """Classify CSV/TSV/JSONL/Parquet files with ``workers`` actors; write Parquet parts.

    Ray Data reads, classifies and writes in parallel, so nothing passes through this
    process; for one output file in the format of its suffix, see
    :func:`classify_file_with_ray`.

    The output rows are the input rows, in input order, plus the columns of ``classify``
    (``prob_<label>``, ``labels`` with a threshold, ``text_status``).

    model_path: a saved pipeline, readable at this path by every worker.
    input_paths: files, or folders of files, of one format.
    output_dir: a new or empty folder for the Parquet files (with ``overwrite``, a full
        one is replaced). They are written to a temporary folder next to it, renamed to
        ``output_dir`` when complete.
    workers: actors, each holding one copy of the pipeline.
    num_gpus_per_worker: GPUs per actor (e.g. 1, or 0.5 to put two on a GPU); 0 for CPU.
    batch_size: docs per forward pass inside an actor.
    threshold, thresholds_path: as ``classify --threshold/--thresholds``.
    num_cpus_per_worker: CPUs reserved per actor; also its torch threads.
    rows_per_call: rows handed to an actor at a time (its length-bucketing window is
        at most this).
    bucket_window: override the pipeline's ``bucket_window``.
    """
    _require_ray()
    output_dir = Path(output_dir)
    check_output_folder(output_dir, overwrite)
    model_path = _model_path(model_path)
    labels = cats_labels(load_pipeline(model_path))
    thresholds = load_thresholds(
        Path(thresholds_path) if thresholds_path else None, labels, threshold
    )
    start = time.perf_counter()
    files = expand_inputs(input_paths)
    check_text_files(files)
    dataset = read_dataset(files, text_column, max(1, min(workers, len(files))))
    try:
        columns = dataset.schema().names
    except (ray.exceptions.RayError, pyarrow.ArrowException) as error:
        raise _ray_data_error(files, error) from None
    check_columns(columns, text_column, output_columns(labels, thresholds is not None), "Input")
    dataset.context.execution_options.preserve_order = True
    classified = dataset.map_batches(
        PipelineActor,
        fn_constructor_kwargs={
            "model_path": model_path,
            "text_column": text_column,
            "thresholds": thresholds,
            "batch_size": batch_size,
            "num_threads": max(1, int(num_cpus_per_worker)),
            "use_gpu": num_gpus_per_worker > 0,
            "bucket_window": bucket_window,
        },
        batch_size=rows_per_call,
        batch_format="pyarrow",
        # One task in flight per actor: with more, the first actor to finish loading the
        # pipeline is handed the queued bundles while the others still load, and a small
        # input runs on one actor (measured: 2 actors 0.87x one process on 4,000 tweets).
        compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        num_cpus=num_cpus_per_worker,
        num_gpus=num_gpus_per_worker,
        udf_modifying_row_count=False,
    )
    temporary = temporary_output(output_dir, folder=True)
    try:
        classified.write_parquet(str(temporary), ray_remote_args={"num_cpus": 0})
        publish(temporary, output_dir, overwrite)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        if isinstance(error, (ray.exceptions.RayError, pyarrow.ArrowException)):
            raise _ray_data_error(files, error) from None
        raise
    seconds = time.perf_counter() - start
    files = sorted(str(path) for path in output_dir.glob("*.parquet"))
    statuses: Counter = Counter(dict.fromkeys(STATUSES, 0))
    rows = 0
    for path in files:
        column = pyarrow.parquet.read_table(path, columns=[STATUS_COLUMN]).column(0)
        statuses.update(column.to_pylist())
        rows += len(column)
    return RaySummary(rows=rows, statuses=dict(statuses), seconds=seconds, files=files)


def classify_file_with_ray(
    model_path: PathLike,
    input_paths: Sequence[PathLike],
    output_path: PathLike,
    text_column: str,
    workers: int,
    num_gpus_per_worker: float = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    threshold: Optional[float] = None,
    thresholds_path: Optional[PathLike] = None,
    num_cpus_per_worker: float = 1,
    rows_per_call: int = 1024,
    bucket_window: Optional[int] = None,
    overwrite: bool = False,
    progress: Any = None,
) -> Counts:
    """Classify files with ``workers`` actors into ONE file, the format of its suffix.

    This process reads the rows and writes OUTPUT with the readers and the writer of
    ``classify`` (:func:`spacy_dallmi.tables.write_classified`), and the actors only
    predict, ``rows_per_call`` texts at a time (rounded up to whole length-sorting windows,
    so the batches are those of one process): the file is the one ``classify`` writes
    without Ray, row by row, with the same errors. At most two calls per actor are in
    flight, so memory stays bounded. Arguments as :func:`classify_with_ray`; ``progress``
    as :func:`spacy_dallmi.classify.classify_file`.
    """
    from .inference import BucketedPipeMixin

    _require_ray()
    model_path = _model_path(model_path)
    nlp = load_pipeline(model_path)
    if bucket_window is not None:
        set_bucket_window(nlp, bucket_window)
    labels = cats_labels(nlp)
    thresholds = load_thresholds(
        Path(thresholds_path) if thresholds_path else None, labels, threshold
    )
    # Whole length-sorting windows per call: the actors then form the batches that one
    # process forms, and give the same probabilities, not ones within float rounding.
    windows = [pipe.cfg.get("bucket_window") or 0 for _, pipe in nlp.pipeline]
    window = max(
        [batch_size]
        + [w for (_, pipe), w in zip(nlp.pipeline, windows) if isinstance(pipe, BucketedPipeMixin)]
    )
    del nlp
    chunk_rows = -(-max(1, rows_per_call) // window) * window
    files = [Path(path) for path in expand_inputs(input_paths)]
    actor_class = ray.remote(num_cpus=num_cpus_per_worker, num_gpus=num_gpus_per_worker)(
        PipelineActor
    )
    options = {
        "model_path": model_path,
        "text_column": text_column,
        "thresholds": thresholds,
        "batch_size": batch_size,
        "num_threads": max(1, int(num_cpus_per_worker)),
        "use_gpu": num_gpus_per_worker > 0,
        "bucket_window": bucket_window,
    }

    def predict(items: Iterable[Tuple[Any, Any]]) -> Iterator[Tuple[Any, Dict[str, Any]]]:
        # A generator: the actors start when the first row is read, after OUTPUT and the
        # columns have been checked.
        actors = [actor_class.remote(**options) for _ in range(max(1, workers))]
        pending: Deque[Tuple[List[Any], Any]] = deque()
        try:
            for index, chunk in enumerate(_chunks(items, chunk_rows)):
                if len(pending) >= 2 * len(actors):
                    yield from _collect(*pending.popleft())
                values = [value for value, _ in chunk]
                call = actors[index % len(actors)].predict.remote(values)
                pending.append(([context for _, context in chunk], call))
            while pending:
                yield from _collect(*pending.popleft())
        finally:
            for actor in actors:
                ray.kill(actor)

    added = output_columns(labels, thresholds is not None)
    return write_classified(
        files, Path(output_path), text_column, added, predict, progress, overwrite
    )


def check_text_files(files: List[str]) -> None:
    """Before Ray Data reads them: CSV, TSV and JSONL files must be UTF-8, and a JSONL file
    must not start with a byte order mark (Ray Data's JSON reader fails on one, deep in a
    task). One pass over the bytes, fast next to the model; the error names file and line."""
    import codecs

    for name in files:
        path = Path(name)
        if file_format(path) == "parquet":
            continue
        decoder = codecs.getincrementaldecoder("utf-8")()
        with path.open("rb") as handle:
            head = handle.read(3)
            if head == codecs.BOM_UTF8 and file_format(path) == "jsonl":
                raise ClassifyError(
                    f"{path} starts with a UTF-8 byte order mark, which Ray Data's JSON "
                    "reader cannot read: write one OUTPUT file (no trailing / or --parts), "
                    "which reads it, or save the file without the mark."
                )
            try:
                chunk = head
                while chunk:
                    decoder.decode(chunk)
                    chunk = handle.read(1 << 20)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as error:
                raise not_utf8(path, error) from None


def _ray_data_error(files: List[str], error: BaseException) -> ClassifyError:
    return ClassifyError(
        f"Ray Data could not classify {', '.join(files)}: {_first_line(error)} Run without "
        "--parts (one OUTPUT file) for a message that names the row."
    )


def _chunks(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _collect(contexts: List[Any], call: Any) -> Iterator[Tuple[Any, Dict[str, Any]]]:
    """The rows of one actor call, with their columns; a failure as one line."""
    try:
        added = ray.get(call)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, ClassifyError):
            raise ClassifyError(str(cause)) from None
        raise ClassifyError(f"A Ray worker failed: {_first_line(cause)}") from None
    except ray.exceptions.RayError as error:
        raise ClassifyError(f"A Ray worker failed: {_first_line(error)}") from None
    yield from zip(contexts, added)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _require_ray() -> None:
    if not ray.is_initialized():
        raise ClassifyError(
            "Start Ray first: ray.init() locally, ray.init(address=...) on a cluster."
        )


def _model_path(model_path: PathLike) -> str:
    """An absolute path for a model folder (actors may run elsewhere), else the name."""
    return str(Path(model_path).resolve()) if Path(model_path).exists() else str(model_path)

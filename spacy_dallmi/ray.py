"""Classify files on Ray Data: one pipeline per actor, on CPUs or GPUs, Parquet out.

One process is the anchor (``classify``); past one machine, or past one GPU, a corpus
needs a scheduler. Ray Data already reads CSV, JSONL and Parquet in blocks, streams them
through a pool of actors with backpressure, places actors on GPUs (``num_gpus``) and runs
the same code on a laptop or a cluster, so this module only says what an actor does: load
the pipeline once, then add the same columns as ``classify`` to each batch
(:func:`spacy_dallmi.prediction.predict_rows`), so both paths give the same values.

Needs the extra: ``pip install 'spacy-dallmi[ray]'``. The caller owns the Ray session:
``ray.init()`` locally, ``ray.init(address="auto")`` on a cluster, where the model path must
be readable on every node.
"""

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import pyarrow
import pyarrow.csv
import pyarrow.parquet
import ray

from .prediction import (
    DEFAULT_BATCH_SIZE,
    cats_labels,
    load_thresholds,
    predict_rows,
    set_bucket_window,
)
from .tables import (
    LABELS_COLUMN,
    STATUS_COLUMN,
    STATUSES,
    ClassifyError,
    check_columns,
    file_format,
    output_columns,
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

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        values = batch.column(self.text_column).to_pylist()
        items = ((value, None) for value in values)
        rows = [
            added
            for _, added in predict_rows(
                self.nlp, items, self.labels, self.thresholds, self.batch_size
            )
        ]
        if len(rows) != batch.num_rows:
            raise ClassifyError(
                f"A batch of {batch.num_rows} rows came back with {len(rows)}: a component's "
                "error handler dropped documents."
            )
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
) -> RaySummary:
    """Classify CSV/TSV/JSONL/Parquet files with ``workers`` actors; write Parquet.

    The output rows are the input rows, in input order, plus the columns of ``classify``
    (``prob_<label>``, ``labels`` with a threshold, ``text_status``).

    model_path: a saved pipeline, readable at this path by every worker.
    input_paths: files, or folders of files, of one format.
    output_dir: a new or empty folder for the Parquet files.
    workers: actors, each holding one copy of the pipeline.
    num_gpus_per_worker: GPUs per actor (e.g. 1, or 0.5 to put two on a GPU); 0 for CPU.
    batch_size: docs per forward pass inside an actor.
    threshold, thresholds_path: as ``classify --threshold/--thresholds``.
    num_cpus_per_worker: CPUs reserved per actor; also its torch threads.
    rows_per_call: rows handed to an actor at a time (its length-bucketing window is
        at most this).
    bucket_window: override the pipeline's ``bucket_window``.
    """
    import spacy

    if not ray.is_initialized():
        raise ClassifyError(
            "Start Ray first: ray.init() locally, ray.init(address=...) on a cluster."
        )
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ClassifyError(f"Output folder {output_dir} is not empty: choose a new one.")
    model_path = str(Path(model_path).resolve()) if Path(model_path).exists() else str(model_path)
    labels = cats_labels(spacy.load(model_path))
    thresholds = load_thresholds(
        Path(thresholds_path) if thresholds_path else None, labels, threshold
    )
    start = time.perf_counter()
    files = expand_inputs(input_paths)
    dataset = read_dataset(files, text_column, max(1, min(workers, len(files))))
    columns = dataset.schema().names
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
    classified.write_parquet(str(output_dir), ray_remote_args={"num_cpus": 0})
    seconds = time.perf_counter() - start
    files = sorted(str(path) for path in output_dir.glob("*.parquet"))
    statuses: Counter = Counter(dict.fromkeys(STATUSES, 0))
    rows = 0
    for path in files:
        column = pyarrow.parquet.read_table(path, columns=[STATUS_COLUMN]).column(0)
        statuses.update(column.to_pylist())
        rows += len(column)
    return RaySummary(rows=rows, statuses=dict(statuses), seconds=seconds, files=files)

"""``classify``: label a corpus file with a saved pipeline, from the command line.

An adapted classifier exists to label a target corpus, and its users should not have to
write Python to do that. ``python -m spacy_dallmi classify MODEL INPUT OUTPUT --text-column
NAME`` reads CSV, TSV, JSONL or Parquet, and writes the same rows, in the same order, with
one ``prob_<label>`` column per label, optionally a ``labels`` column (labels at or over a
threshold) and a ``text_status`` column.

It streams: rows are read lazily (``spacy_dallmi.tables``), go through one ``nlp.pipe``
with their row as context (``spacy_dallmi.prediction``), and are written as they come back,
so memory does not grow with the file. Each run writes to a temporary file of its own
next to OUTPUT (``.OUTPUT.<random>.partial``), renamed to OUTPUT only when complete, so a
failed run never leaves a file that looks finished and two runs on one OUTPUT never mix
rows. An existing OUTPUT is refused unless ``--overwrite``. Rows read and rows written are
counted and must match; null and empty texts, blank lines and short rows are counted and
reported. A problem with the input, the output or the model ends the command with one line
that names the file (``ClassifyError``), not a traceback.

This module is the command: the run of one file and its summary, the options, and the
hand-over to Ray (``spacy_dallmi.ray``). spaCy, torch and pyarrow are imported when a
command runs, not when this module is, so ``--help`` stays fast; the command has a plain
signature that typer turns into options, so this core module does not import typer.
"""

import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from wasabi import msg

from .prediction import (
    DEFAULT_BATCH_SIZE,
    cats_labels,
    load_pipeline,
    load_thresholds,
    predict_rows,
    set_bucket_window,
)
from .tables import (
    STATUS_COLUMN,
    ClassifyError,
    Counts,
    check_output,
    check_output_folder,
    file_format,
    output_columns,
    parts_output,
    write_classified,
)


def classify_file(
    nlp: Any,
    input_path: Path,
    output_path: Path,
    text_column: str,
    *,
    thresholds: Optional[Dict[str, float]] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Any = None,
    overwrite: bool = False,
) -> Counts:
    """Classify every row of ``input_path`` and write them to ``output_path``.

    progress: a progress bar (``tqdm``): its ``total`` is set when the input knows its
    row count, and ``update(1)`` is called per row written.
    overwrite: replace an existing ``output_path`` (else it is an error).
    """
    labels = cats_labels(nlp)

    def predict(items: Iterable[Tuple[Any, Dict[str, Any]]]) -> Iterator[Any]:
        return predict_rows(nlp, items, labels, thresholds, batch_size)

    added = output_columns(labels, thresholds is not None)
    return write_classified(
        [input_path], output_path, text_column, added, predict, progress, overwrite
    )


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
    output: str,
    text_column: Optional[str] = None,
    threshold: Optional[float] = None,
    thresholds: Optional[Path] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    bucket_window: Optional[int] = None,
    gpu_id: int = -1,
    progress: bool = True,
    overwrite: bool = False,
    ray: bool = False,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    ray_address: Optional[str] = None,
    parts: bool = False,
) -> None:
    """Add a probability column per label to every row of a CSV, TSV, JSONL or Parquet file.

    MODEL: a saved pipeline (folder or package name).
    INPUT: a CSV, TSV, JSONL or Parquet file (with --ray, also a folder of them).
    OUTPUT: a file whose suffix names its format (.csv, .tsv, .jsonl, .parquet); with --ray,
    a path ending in / (or --parts) is a folder of Parquet part files.

    --text-column NAME (required): the column holding the text.
    --threshold X: add a labels column, the labels with probability >= X.
    --thresholds FILE: per-label thresholds, a JSON object {"label": threshold}.
    --batch-size N: docs per batch; --bucket-window N: docs sorted by length at once.
    --gpu-id N: GPU to run on (-1: CPU).
    --overwrite: replace OUTPUT if it exists (else the run is refused).
    --ray: run on Ray (the ray extra): --workers actors, --gpus-per-worker each, on the
    cluster at --ray-address (default: a local Ray); --parts: write a folder of Parquet
    part files with Ray Data instead of one file.
    """
    # A plain signature, so this module needs no typer: the core package stays lean, and
    # typer turns the parameters into the options above when the command is registered.
    if not text_column:
        msg.fail("Missing option --text-column: the column that holds the text.", exits=1)
    if batch_size < 1:
        msg.fail("--batch-size must be at least 1.", exits=1)
    parts = parts or parts_output(str(output))
    if parts and not ray:
        fail("A folder of part files (--parts, or OUTPUT ending in /) needs --ray.")
    try:
        if ray:
            _run_ray(
                model,
                input,
                Path(output),
                text_column,
                threshold,
                thresholds,
                batch_size,
                bucket_window,
                workers,
                gpus_per_worker,
                ray_address,
                overwrite,
                parts,
                progress,
            )
        else:
            _run_local(
                model,
                input,
                Path(output),
                text_column,
                threshold,
                thresholds,
                batch_size,
                bucket_window,
                gpu_id,
                progress,
                overwrite,
            )
    except (ClassifyError, OSError) as error:
        fail(str(error))


def fail(message: str) -> None:
    """Print ``message`` as one line (wasabi's ``fail`` wraps at 80 columns) and exit 1."""
    from wasabi.util import color, locale_escape

    line = " ".join(message.splitlines())
    if msg.pretty:
        line = locale_escape(f"{msg.icons['fail']} {line}")
        if msg.show_color:
            line = color(line, fg="red")
    print(line, flush=True)
    sys.exit(1)


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
    overwrite: bool,
) -> None:
    import spacy

    # Refuse a taken OUTPUT before the model loads, not after (the run checks again).
    check_output(output_path, overwrite, [input_path])
    file_format(output_path)
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = load_pipeline(model)
    if bucket_window is not None:
        set_bucket_window(nlp, bucket_window)
    thresholds = load_thresholds(thresholds_path, cats_labels(nlp), threshold)
    with progress_bar(progress) as bar:
        counts = classify_file(
            nlp,
            input_path,
            output_path,
            text_column,
            thresholds=thresholds,
            batch_size=batch_size,
            progress=bar,
            overwrite=overwrite,
        )
    print_summary(counts, output_path)


def progress_bar(enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(unit=" docs", disable=not enabled, file=sys.stderr, mininterval=1.0, delay=1.0)


def _run_ray(
    model: str,
    input_path: Path,
    output_path: Path,
    text_column: str,
    threshold: Optional[float],
    thresholds_path: Optional[Path],
    batch_size: int,
    bucket_window: Optional[int],
    workers: int,
    gpus_per_worker: float,
    ray_address: Optional[str],
    overwrite: bool,
    parts: bool,
    progress: bool,
) -> None:
    try:
        import ray
    except ImportError as error:
        raise ClassifyError("--ray needs Ray: pip install 'spacy-dallmi[ray]'.") from error
    from .ray import classify_file_with_ray, classify_with_ray

    if parts:
        check_output_folder(output_path, overwrite)
    else:
        check_output(output_path, overwrite, [input_path])
        file_format(output_path)
    options: Dict[str, Any] = dict(
        num_gpus_per_worker=gpus_per_worker,
        batch_size=batch_size,
        threshold=threshold,
        thresholds_path=thresholds_path,
        bucket_window=bucket_window,
        overwrite=overwrite,
    )
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, include_dashboard=False)
    try:
        if parts:
            summary = classify_with_ray(
                model, [input_path], output_path, text_column, workers, **options
            )
        else:
            with progress_bar(progress) as bar:
                counts = classify_file_with_ray(
                    model, [input_path], output_path, text_column, workers, **options, progress=bar
                )
    finally:
        if started:
            ray.shutdown()
    if not parts:
        print_summary(counts, output_path)
        return
    msg.good(
        f"Wrote {summary.rows} rows as {len(summary.files)} Parquet file(s) to {output_path} "
        f"in {summary.seconds:.1f} s."
    )
    print_statuses(summary.statuses)

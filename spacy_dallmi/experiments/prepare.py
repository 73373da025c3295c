"""Entry points of data preparation: the built-in datasets, and users' own files.

Both read their input into a :class:`~.readers.DomainPair` and hand it to
:func:`~.corpus.prepare_domains`. Users' files get one more check: when more than a set share
of a file's rows cannot be used, the preparation fails and names the reasons, because a result
built from the few rows that happened to parse (say, labels spelled ``Y``/``N``) is worse than
no result. Only rows with empty text or an unreadable label value are ever left out: a blank
label cell is a row with no known positive (see :func:`read_files`).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .corpus import prepare_domains
from .datasets import load_dataset
from .protocol import PrepareSettings, check_ratio
from .readers import (
    DEFAULT_ENCODING,
    SKIP_REASONS,
    Corpus,
    DataPreparationError,
    DomainPair,
    PathLike,
    ReadReport,
    read_table,
)

#: The share of a file's rows that may be left out before prepare-files refuses to go on.
MAX_DROP_SHARE = 0.1


def check_drop_share(report: ReadReport, max_drop_share: float) -> None:
    """Raise when more than ``max_drop_share`` of the rows of a read were left out."""
    dropped = report.rows - report.kept
    if report.rows and dropped / report.rows <= max_drop_share:
        return
    reasons = "; ".join(
        f"{count} x {reason} ({SKIP_REASONS.get(reason, reason)}; e.g. "
        f"{', '.join(report.skipped[reason][:3])})"
        for reason, count in report.skipped_counts.items()
    )
    raise DataPreparationError(
        f"{report.origin}: {dropped} of {report.rows} rows could not be used, more than the "
        f"allowed share of {max_drop_share:g}. Reasons: {reasons or 'the file has no rows'}. "
        "Fix those rows, or raise --max-drop-share (max_drop_share) if dropping them is right."
    )


def read_files(
    source_path: PathLike,
    target_path: PathLike,
    *,
    text_column: str,
    label_columns: Optional[Sequence[str]] = None,
    labels_column: Optional[str] = None,
    target_text_column: Optional[str] = None,
    target_label_columns: Optional[Sequence[str]] = None,
    target_labels_column: Optional[str] = None,
    target_test_path: Optional[PathLike] = None,
    file_format: Optional[str] = None,
    encoding: str = DEFAULT_ENCODING,
    ratio: float = 0.0,
    max_drop_share: float = MAX_DROP_SHARE,
) -> Dict[str, Corpus]:
    """Read a user's source, target and optional target test file: ``{"source", "target"[,
    "target_test"]}``, each checked against ``max_drop_share``.

    A blank label cell (empty, whitespace-only, JSON null, ``[]``, ``""``) is a row with no
    known positive: unlabeled in a target at ``ratio`` 0 (partially labelled), all-negative in
    the source, a target test file or a target at ``ratio`` > 0 (fully labelled). With
    ``label_columns`` a fully labelled file must say 0 or 1 in every cell, so a blank cell
    there is an error naming the file, line and column. An unreadable label value in the
    source is an error too (every source row trains the source model); in the target files
    it leaves its row out, counted. The target columns default to the source's, as in
    :func:`prepare_files`.
    """
    if not 0.0 <= max_drop_share <= 1.0:
        raise DataPreparationError(f"max_drop_share must be in [0, 1], got {max_drop_share!r}")
    common = {"file_format": file_format, "encoding": encoding}
    source = read_table(
        source_path,
        text_column=text_column,
        label_columns=label_columns,
        labels_column=labels_column,
        strict=True,
        **common,
    )
    target_columns = {
        "text_column": target_text_column or text_column,
        "label_columns": target_label_columns,
        "labels_column": target_labels_column,
    }
    if target_label_columns is None and target_labels_column is None:
        target_columns["label_columns"] = label_columns
        target_columns["labels_column"] = labels_column
    reads = {
        "source": source,
        "target": read_table(target_path, partial=ratio == 0, **target_columns, **common),
    }
    if target_test_path is not None:
        reads["target_test"] = read_table(target_test_path, **target_columns, **common)
    for corpus in reads.values():
        check_drop_share(corpus.report, max_drop_share)
    return reads


def read_warnings(reads: Mapping[str, Corpus]) -> List[str]:
    """The warnings that the files alone decide (no split): source labels with few positives,
    target labels without a known positive, and texts repeated in the source."""
    from .datachecks import duplicate_texts, rare_source_labels, unadaptable_labels, warn_lines

    source, target = reads["source"], reads["target"]
    target_positives = {label: target.report.positives.get(label, 0) for label in source.labels}
    repeated = duplicate_texts(source.texts)
    lines = [
        rare_source_labels(source.report.positives, f"source ({source.report.origin})"),
        unadaptable_labels(target_positives, f"target ({target.report.origin})"),
    ]
    if repeated["texts"]:
        lines.append(
            f"source ({source.report.origin}): {repeated['texts']} text(s) occur more than "
            f"once ({repeated['rows']} rows). `prepare` keeps every copy on the side of the "
            "split its first copy is on, so none is in both source train and test; "
            "deduplicate the file if the copies are not meant to count twice."
        )
    return warn_lines(lines)


def settings_of(name: str, arguments: Mapping[str, Any]) -> PrepareSettings:
    """The :class:`PrepareSettings` of a ``prepare_*`` call, from its arguments."""
    names = [field.name for field in dataclasses.fields(PrepareSettings)][1:]
    return PrepareSettings(name, **{key: arguments[key] for key in names})


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
    max_source_docs: Optional[int] = None,
    max_target_docs: Optional[int] = None,
    max_target_test_docs: Optional[int] = None,
    target_test_fraction: Optional[float] = None,
    valid_fraction: Optional[float] = None,
) -> Dict[str, Any]:
    """Build the corpora of a built-in layout (``emotions`` or ``pubmed``) from ``data_dir``.

    ``data_dir`` holds ``goemotions/``, ``semeval2018_ec/`` and ``pubmed/`` as described in the
    datasets README. The built-in targets are fully labelled, so ``ratio`` must be in (0, 1).
    The per-domain caps and ``valid_fraction`` are :class:`PrepareSettings`'. Settings are
    checked before anything is read. Returns the stats also written to
    ``output_dir/stats.json``.
    """
    check_ratio(ratio)
    settings = settings_of(dataset, locals())
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
    target_test_path: Optional[PathLike] = None,
    file_format: Optional[str] = None,
    encoding: str = DEFAULT_ENCODING,
    ratio: float = 0.0,
    removal: str = "per_sample",
    seed: int = 0,
    max_docs: Optional[int] = None,
    test_fraction: float = 0.2,
    max_source_docs: Optional[int] = None,
    max_target_docs: Optional[int] = None,
    max_target_test_docs: Optional[int] = None,
    target_test_fraction: Optional[float] = None,
    max_drop_share: float = MAX_DROP_SHARE,
    quiet: bool = False,
    valid_fraction: Optional[float] = None,
) -> Dict[str, Any]:
    """Build the corpora from a user's own source and target files (CSV, TSV or JSONL).

    ``ratio`` 0 (the default) takes the target's labels as they are: partial, a 1 is a known
    positive and everything else unlabeled. Nothing is hidden, and the target is not split; a
    fully labelled target test set can be given as ``target_test_path`` (same columns as the
    target). ``ratio`` in (0, 1) treats the target as fully labelled and hides that share of its
    positives, for studies.

    Column options describe the source file; the target files use the same names unless the
    ``target_*`` options say otherwise. In label-columns mode the target's label columns
    default to the source's, renamed back through ``label_map`` (target name -> source name),
    so a map ``{"happiness": "joy"}`` reads the target's ``happiness`` column as ``joy``.
    ``labels`` restricts both domains to a subset of the source labels (the rest are dropped
    and counted). A read that loses more than ``max_drop_share`` of its rows is an error.
    How blank and unreadable label cells are read is :func:`read_files`'s.
    """
    settings = settings_of("files", locals())
    if target_label_columns is None and target_labels_column is None:
        if label_columns is not None:
            source_name = {value: key for key, value in (label_map or {}).items()}
            target_label_columns = [source_name.get(c, c) for c in label_columns]
        else:
            target_labels_column = labels_column
    reads = read_files(
        source_path,
        target_path,
        text_column=text_column,
        label_columns=label_columns,
        labels_column=labels_column,
        target_text_column=target_text_column,
        target_label_columns=target_label_columns,
        target_labels_column=target_labels_column,
        target_test_path=target_test_path,
        file_format=file_format,
        encoding=encoding,
        ratio=ratio,
        max_drop_share=max_drop_share,
    )
    source, target = reads["source"], reads["target"]
    target_columns = {"text_column": target_text_column or text_column}
    pair = DomainPair(source, target, {"source": source.report, "target": target.report})
    inputs = {
        "source": str(source_path),
        "target": str(target_path),
        "target_test": str(target_test_path) if target_test_path is not None else None,
        "text_column": text_column,
        "label_columns": list(label_columns) if label_columns is not None else None,
        "labels_column": labels_column,
        "target_text_column": target_columns["text_column"],
        "target_label_columns": (
            list(target_label_columns) if target_label_columns is not None else None
        ),
        "target_labels_column": target_labels_column,
        "file_format": file_format,
        "encoding": encoding,
        "max_drop_share": max_drop_share,
    }
    return prepare_domains(
        pair,
        output_dir,
        settings,
        label_map=label_map,
        labels=labels,
        target_test=reads.get("target_test"),
        inputs=inputs,
        quiet=quiet,
    )

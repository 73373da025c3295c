"""Data preparation: read a source/target pair, then split, cap, hide and write it as corpora.

:func:`prepare_dataset` (built-in pairs) and :func:`prepare_files` (users' files) read the
input; :func:`prepare_domains` writes the ``DocBin`` files of :data:`OUTPUT_FILES`: the
source splits, partially labelled target train and its validation slice (the same docs at
every ratio), with hidden labels the same docs fully labelled (``*_full``), and a fully
labelled target test split; ``stats.json`` says what was dropped or changed and why. Users'
files keep every copy of a text on one side of a split; the built-in studies keep their plain
seeded split, so the published benchmarks stay reproducible.
"""

import dataclasses
import hashlib
import inspect
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy
import spacy
import srsly
from spacy.tokens import DocBin

from .datasets import load_dataset
from .protocol import (
    PrepareSettings,
    align_domains,
    cap_indices,
    check_ratio,
    hide_labels,
    keep_duplicates_together,
    split_train_test,
)
from .protocol import stream as random_stream
from .readers import (
    DEFAULT_ENCODING,
    SKIP_REASONS,
    Corpus,
    DataPreparationError,
    DomainPair,
    PathLike,
    read_table,
)
from .summary import describe_changes, duplicate_texts, print_summary, split_warnings

#: Split name -> DocBin file name, in the order they are written and reported.
OUTPUT_FILES = {
    name: f"{name}.spacy"
    for name in ("source_train", "source_test", "target_train", "target_valid")
    + ("target_train_full", "target_valid_full", "target_test")
}
#: The partially labelled target splits, each with the hiding stream of its own.
PARTIAL_SPLITS = {"target_train": "hiding", "target_valid": "valid_hiding"}
#: The share of a file's rows that may be left out before prepare-files refuses to go on.
MAX_DROP_SHARE = 0.1
NO_POSITIVE = (
    "has no known positive for any label: DALLMi learns from known positives, so there is "
    "nothing to adapt to"
)


def check_known_positives(target: Corpus) -> None:
    if not target.matrix.any():
        raise DataPreparationError(
            f"The target data ({target.report.origin}) {NO_POSITIVE}. Mark the positives you "
            "know (a 1, or the label's name in the labels column)."
        )


# -- reading ---------------------------------------------------------------------------------


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
    "target_test"]}``, each failing if it loses more than ``max_drop_share`` of its rows.

    The target is partially labelled at ``ratio`` 0, else fully; an unreadable label value is
    an error in the source, a counted row in the target. Target columns default to the source's.
    """
    if not 0.0 <= max_drop_share <= 1.0:
        raise DataPreparationError(f"max_drop_share must be in [0, 1], got {max_drop_share!r}")
    common = {"file_format": file_format, "encoding": encoding}
    columns = {"label_columns": label_columns, "labels_column": labels_column}
    source = read_table(source_path, text_column=text_column, strict=True, **columns, **common)
    if target_label_columns is None and target_labels_column is None:
        target_label_columns, target_labels_column = label_columns, labels_column
    common.update(
        text_column=target_text_column or text_column,
        label_columns=target_label_columns,
        labels_column=target_labels_column,
    )
    reads = {"source": source, "target": read_table(target_path, partial=ratio == 0, **common)}
    if target_test_path is not None:
        reads["target_test"] = read_table(target_test_path, **common)
    for corpus in reads.values():
        report = corpus.report
        dropped = report.rows - report.kept
        if report.rows and dropped / report.rows <= max_drop_share:
            continue
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
    return reads


def _settings(dataset: str, options: Dict[str, Any]) -> PrepareSettings:
    """Take the :class:`PrepareSettings` out of ``options``, checked before anything is read."""
    names = [field.name for field in dataclasses.fields(PrepareSettings)][1:]
    return PrepareSettings(
        dataset, **{name: options.pop(name) for name in names if name in options}
    )


def prepare_dataset(
    dataset: str, data_dir: PathLike, output_dir: PathLike, *, quiet: bool = False, **settings: Any
) -> Dict[str, Any]:
    """Build the corpora of ``emotions`` or ``pubmed`` from ``data_dir`` (holding
    ``goemotions/``, ``semeval2018_ec/``, ``pubmed/``); ``settings`` are
    :class:`PrepareSettings`', with ``ratio`` in (0, 1). Returns the stats (``stats.json``)."""
    check_ratio(settings.get("ratio"))
    prepared = _settings(dataset, settings)
    if settings:
        raise TypeError(f"prepare_dataset() got unexpected keyword argument(s) {list(settings)}")
    pair = load_dataset(dataset, data_dir, seed=prepared.seed)
    inputs = {"data_dir": str(data_dir)}
    return prepare_domains(pair, output_dir, prepared, inputs=inputs, quiet=quiet)


def prepare_files(
    source_path: PathLike, target_path: PathLike, output_dir: PathLike, **options: Any
) -> Dict[str, Any]:
    """Build the corpora from a user's own source and target files (CSV, TSV or JSONL).

    ``options``: ``label_map``, ``labels``, ``quiet``, :func:`read_files`' and
    :class:`PrepareSettings`'. ``ratio`` 0 (default) takes the target's labels as given (1 =
    known positive, else unlabeled) and does not split it (give ``target_test_path``); ``ratio``
    in (0, 1) hides that share of a fully labelled target's positives, for studies.

    The target's label columns default to the source's, renamed back through ``label_map``
    (target -> source name: ``{"happiness": "joy"}`` reads column ``happiness`` as ``joy``).
    ``labels`` keeps a subset of the source labels (the rest are dropped and counted).
    """
    label_map, labels = options.pop("label_map", None), options.pop("labels", None)
    quiet = options.pop("quiet", False)
    settings = _settings("files", {"ratio": 0.0, **options})
    read = {key: value for key, value in options.items() if key not in settings.to_dict()}
    if read.get("target_label_columns") is None and read.get("target_labels_column") is None:
        if read.get("label_columns") is not None:
            source_name = {value: key for key, value in (label_map or {}).items()}
            read["target_label_columns"] = [source_name.get(c, c) for c in read["label_columns"]]
        else:
            read["target_labels_column"] = read.get("labels_column")
    bound = inspect.signature(read_files).bind(
        source_path, target_path, ratio=settings.ratio, **read
    )
    bound.apply_defaults()
    reads = read_files(*bound.args, **bound.kwargs)
    source, target = reads["source"], reads["target"]
    pair = DomainPair(source, target, {"source": source.report, "target": target.report})
    given, test = bound.arguments, bound.arguments["target_test_path"]
    inputs = {"source": str(source_path), "target": str(target_path)}
    inputs["target_test"] = None if test is None else str(test)
    names = ("text_column", "label_columns", "labels_column", "target_text_column")
    names += ("target_label_columns", "target_labels_column", "file_format", "encoding")
    inputs.update({name: given[name] for name in (*names, "max_drop_share")})
    inputs["target_text_column"] = given["target_text_column"] or given["text_column"]
    for name in ("label_columns", "target_label_columns"):
        inputs[name] = None if given[name] is None else list(given[name])
    options = dict(label_map=label_map, labels=labels, target_test=reads.get("target_test"))
    return prepare_domains(pair, output_dir, settings, inputs=inputs, quiet=quiet, **options)


# -- splitting, hiding and writing -----------------------------------------------------------


def _split(
    corpus: Corpus, fraction: float, rng: numpy.random.Generator, together: bool
) -> Tuple[numpy.ndarray, numpy.ndarray, int]:
    """A seeded train/test split, with repeated texts kept on one side when ``together``;
    the third value is how many docs were moved for that (-1: they could not be)."""
    train, test = split_train_test(len(corpus), fraction, rng)
    if not together:
        return train, test, 0
    return keep_duplicates_together(train, test, corpus.texts)


def _split_domains(
    pair: DomainPair, settings: PrepareSettings, target_test: Optional[Corpus]
) -> Tuple[Dict[str, Corpus], Dict[str, int], Dict[str, Dict[str, Any]]]:
    """The capped splits by name, how many docs each cap left out, and the domain sizes. The
    target is split only when its labels are complete and no test file is given: a test split
    of partially labelled docs would score hidden positives as negatives."""
    seed, together = settings.seed, settings.dataset == "files"
    parts: Dict[str, Tuple[Corpus, numpy.ndarray]] = {}
    domains: Dict[str, Dict[str, Any]] = {}
    for side, corpus in (("source", pair.source), ("target", pair.target)):
        if side == "source" or (settings.hides and target_test is None):
            rng = random_stream(seed, f"{side}_split")
            train, test, moved = _split(corpus, settings.split_fraction(side), rng, together)
            parts[f"{side}_test"] = (corpus, test)
        else:
            train, test, moved = numpy.arange(len(corpus)), numpy.arange(0), 0
        parts[f"{side}_train"] = (corpus, train)
        repeated = {**duplicate_texts(corpus.texts), "moved_to_keep_together": moved}
        domains[side] = {"docs": len(corpus), "train": len(train), "test": len(test)}
        domains[side]["repeated_texts"] = repeated
    if target_test is not None:
        parts["target_test"] = (target_test, numpy.arange(len(target_test)))
        domains["target"]["test_file_docs"] = len(target_test)
    splits: Dict[str, Corpus] = {}
    capped: Dict[str, int] = {}
    for name, (corpus, indices) in parts.items():
        kept = cap_indices(indices, settings.cap(name), random_stream(seed, f"{name}_cap"))
        splits[name] = corpus.subset(kept)
        capped[name] = len(indices) - len(kept)
    if settings.valid_fraction is not None:
        train = splits["target_train"]
        if len(train) < 2:
            raise DataPreparationError(
                f"The target train split has {len(train)} document(s) (from "
                f"{train.report.origin}): at least 2 are needed to carve a validation slice "
                "(valid_fraction)."
            )
        rng = random_stream(seed, "target_valid")
        fit, valid, _ = _split(train, settings.valid_fraction, rng, together)
        splits["target_train"], splits["target_valid"] = train.subset(fit), train.subset(valid)
        capped["target_valid"] = 0
    return splits, capped, domains


def prepare_domains(
    pair: DomainPair,
    output_dir: PathLike,
    settings: PrepareSettings,
    *,
    label_map: Optional[Mapping[str, str]] = None,
    labels: Optional[Sequence[str]] = None,
    target_test: Optional[Corpus] = None,
    inputs: Optional[Mapping[str, Any]] = None,
    quiet: bool = False,
) -> Dict[str, Any]:
    """Align, split, cap, hide and write one source/target pair; return the stats written.
    ``target_test``: a fully labelled target test corpus; ``inputs`` go into ``settings``."""
    pair, label_info = align_domains(pair, label_map, labels)
    if target_test is not None:
        test_pair = DomainPair(pair.source, target_test, {})
        target_test = align_domains(test_pair, label_map, labels)[0].target
        pair.reports["target_test"] = target_test.report
    for side, corpus in (("source", pair.source), ("target", pair.target)):
        need = 2 if side == "source" or (settings.hides and target_test is None) else 1
        if len(corpus) < need:
            raise DataPreparationError(
                f"The {side} domain has {len(corpus)} usable document(s) (from "
                f"{corpus.report.origin}); at least {need} are needed."
            )
    check_known_positives(pair.target)
    splits, capped, domains = _split_domains(pair, settings, target_test)
    label_names = list(pair.source.labels)
    target_positives = dict(zip(label_names, map(int, pair.target.matrix.sum(axis=0))))
    domains["target"].update(label_info, positives=target_positives)
    matrices = {name: corpus.matrix for name, corpus in splits.items()}
    hidings: Dict[str, Any] = {}
    for name, stream_name in PARTIAL_SPLITS.items():
        if settings.hides and name in splits:
            rng = random_stream(settings.seed, stream_name)
            hidings[name] = hide_labels(splits[name].matrix, settings.ratio, settings.removal, rng)
            matrices[name] = hidings[name].partial
            matrices[f"{name}_full"] = splits[name].matrix
            splits[f"{name}_full"] = splits[name]
            capped[f"{name}_full"] = capped[name]
    train = splits["target_train"]
    if not settings.hides and not train.matrix.any():
        raise DataPreparationError(f"The target data ({train.report.origin}) {NO_POSITIVE}.")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [name for name in OUTPUT_FILES if name in matrices]
    # Output files of an earlier run that this run does not write are deleted, so that a
    # stale target_test.spacy is never taken for this run's.
    removed = [f for n, f in OUTPUT_FILES.items() if n not in written and (out / f).exists()]
    for filename in removed:
        (out / filename).unlink()
    nlp = spacy.blank("en")
    split_stats: Dict[str, Dict[str, Any]] = {}
    checksums: Dict[str, str] = {}
    for name in written:
        path, matrix = out / OUTPUT_FILES[name], matrices[name]
        docbin = DocBin(store_user_data=False)
        for text, row in zip(splits[name].texts, matrix):
            doc = nlp.make_doc(text)
            doc.cats = {label: float(value) for label, value in zip(label_names, row)}
            docbin.add(doc)
        docbin.to_disk(path)
        checksums[OUTPUT_FILES[name]] = hashlib.md5(path.read_bytes()).hexdigest()
        split_stats[name] = {
            "docs": int(matrix.shape[0]),
            "positives": {label: int(n) for label, n in zip(label_names, matrix.sum(axis=0))},
            "docs_without_positives": int((~matrix.any(axis=1)).sum()),
            "capped": capped[name],
            "cap": settings.cap(name),
        }
    for name, hiding in hidings.items():
        split_stats[name]["hidden"] = dict(zip(label_names, hiding.hidden_per_label.tolist()))
        split_stats[name]["restored"] = dict(zip(label_names, hiding.restored_per_label.tolist()))
    hiding = hidings.get("target_train")
    test_origin = "carved from the target" if settings.hides else None
    stats: Dict[str, Any] = {
        "settings": {
            **settings.to_dict(),
            "label_map": dict(label_map or {}),
            "labels": list(labels) if labels is not None else None,
            "inputs": dict(inputs or {}),
        },
        "labels": label_names,
        "files": {
            **{name: OUTPUT_FILES[name] for name in written},
            "labels": "labels.json",
            "stats": "stats.json",
        },
        "checksums": checksums,
        "removed_stale_files": removed,
        "target_labels": "hidden by ratio" if settings.hides else "partial as given",
        "target_test": test_origin if target_test is None else f"file: {target_test.report.origin}",
        "splits": split_stats,
        "hiding": None if hiding is None else {
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
    }  # fmt: skip
    source_positives = split_stats["source_train"]["positives"]
    own_files = settings.dataset == "files"
    stats["warnings"] = split_warnings(pair, splits, source_positives, own_files)
    stats["changes"] = describe_changes(stats)
    srsly.write_json(out / "labels.json", label_names)
    srsly.write_json(out / "stats.json", stats)
    print_summary(stats, out, quiet=quiet)
    return stats

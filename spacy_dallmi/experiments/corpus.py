"""Split, cap, hide and write one source/target pair as spaCy corpora, with ``stats.json``.

:func:`prepare_domains` is the one place where the protocol (:mod:`.protocol`) is applied and
its outcome written, for the built-in datasets and users' files alike. It writes up to five
``DocBin`` files (``doc.cats`` holds every label, ``1.0`` or ``0.0``):

- ``source_train.spacy`` / ``source_test.spacy``: the labelled source domain;
- ``target_train.spacy``: the target train split, partially labelled (``0.0`` = unlabeled),
  either because a share of its positives was hidden (``ratio`` > 0, a study) or because the
  data came that way (``ratio`` 0, the real use case);
- ``target_train_full.spacy``: the same documents with all labels, only when labels were
  hidden (the upper-bound baseline needs them);
- ``target_test.spacy``: fully labelled target docs for evaluation, carved from the target
  when its labels are complete, or read from a separate file; absent otherwise;
- with ``valid_fraction`` set: ``target_valid.spacy``, a seeded slice carved out of target
  train for label-free model selection. It is labelled like target train (hidden by the same
  protocol, or partial as given), so selecting on it needs no true target label; and
  ``target_valid_full.spacy``, the slice with all labels, when labels were hidden. The slice is
  drawn from its own stream, so it is the same documents at every ratio, and the test split
  never moves.

plus ``labels.json`` and ``stats.json`` (counts per split, the MD5 of every file written,
everything dropped or changed and why, the warnings of :mod:`.datachecks`, and the settings
used).

Users' own files (dataset ``files``) are split with repeated texts kept together: every copy
of a text goes to the side of the split its first copy (in file order) is on, so no text is
both trained and tested on. The built-in studies keep their plain seeded split, so that the
published benchmarks stay reproducible; a text they have on both sides is a warning.
"""

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import DocBin

from .datachecks import (
    duplicate_texts,
    leak_warning,
    rare_source_labels,
    shared_texts,
    unadaptable_labels,
    warn_lines,
)
from .protocol import (
    PrepareSettings,
    align_domains,
    cap_indices,
    hide_labels,
    keep_duplicates_together,
    split_train_test,
)
from .protocol import stream as random_stream
from .readers import Corpus, DataPreparationError, DomainPair, PathLike
from .summary import describe_changes, print_summary

#: Split name -> DocBin file name, in the order they are written and reported.
OUTPUT_FILES = {
    "source_train": "source_train.spacy",
    "source_test": "source_test.spacy",
    "target_train": "target_train.spacy",
    "target_valid": "target_valid.spacy",
    "target_train_full": "target_train_full.spacy",
    "target_valid_full": "target_valid_full.spacy",
    "target_test": "target_test.spacy",
}
#: Split pairs that must not share a text: (trained on, scored on).
LEAK_PAIRS = (
    ("source_train", "source_test"),
    ("target_train", "target_test"),
    ("target_train", "target_valid"),
)
#: The partially labelled target splits, each with the hiding stream of its own.
PARTIAL_SPLITS = {"target_train": "hiding", "target_valid": "valid_hiding"}
LABELS_FILE = "labels.json"
STATS_FILE = "stats.json"


def _docbin(nlp: Language, corpus: Corpus, matrix: numpy.ndarray) -> DocBin:
    """Docs whose ``cats`` hold every label, 1.0 or 0.0, so no label is "missing" to spaCy."""
    docbin = DocBin(store_user_data=False)
    for text, row in zip(corpus.texts, matrix):
        doc = nlp.make_doc(text)
        doc.cats = {label: float(value) for label, value in zip(corpus.labels, row)}
        docbin.add(doc)
    return docbin


def _split_stats(
    matrix: numpy.ndarray, labels: List[str], capped: int, cap: Optional[int]
) -> Dict[str, Any]:
    return {
        "docs": int(matrix.shape[0]),
        "positives": {label: int(n) for label, n in zip(labels, matrix.sum(axis=0))},
        "docs_without_positives": int((~matrix.any(axis=1)).sum()),
        "capped": capped,
        "cap": cap,
    }


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
    """The capped splits by name, how many docs each cap left out, and the domain sizes.

    The target is split only when its labels are complete and no separate test file is given:
    a test split of partially labelled docs would score hidden positives as negatives.
    """
    seed = settings.seed
    carve_target = settings.hides and target_test is None
    parts: Dict[str, Tuple[Corpus, numpy.ndarray]] = {}
    domains: Dict[str, Dict[str, Any]] = {}
    for side, corpus in (("source", pair.source), ("target", pair.target)):
        if side == "source" or carve_target:
            fraction = settings.split_fraction(side)
            rng = random_stream(seed, f"{side}_split")
            train, test, moved = _split(corpus, fraction, rng, settings.dataset == "files")
            parts[f"{side}_test"] = (corpus, test)
        else:
            train, test, moved = numpy.arange(len(corpus)), numpy.arange(0), 0
        parts[f"{side}_train"] = (corpus, train)
        domains[side] = {"docs": len(corpus), "train": len(train), "test": len(test)}
        domains[side]["repeated_texts"] = duplicate_texts(corpus.texts)
        domains[side]["repeated_texts"]["moved_to_keep_together"] = moved
    if target_test is not None:
        parts["target_test"] = (target_test, numpy.arange(len(target_test)))
        domains["target"]["test_file_docs"] = len(target_test)
    splits: Dict[str, Corpus] = {}
    capped: Dict[str, int] = {}
    for name, (corpus, indices) in parts.items():
        kept = cap_indices(indices, settings.cap(name), random_stream(seed, f"{name}_cap"))
        splits[name] = corpus.subset(kept)
        capped[name] = len(indices) - len(kept)
    return splits, capped, domains


def _carve_valid(
    splits: Dict[str, Corpus],
    capped: Dict[str, int],
    fraction: float,
    seed: int,
    together: bool = False,
) -> None:
    """Move a seeded ``fraction`` of target train into ``target_valid`` (in place).

    The slice is drawn from the target train docs alone, with its own stream, so it does not
    depend on the ratio and leaves the test split where it is.
    """
    train = splits["target_train"]
    if len(train) < 2:
        raise DataPreparationError(
            f"The target train split has {len(train)} document(s) (from {train.report.origin}): "
            "at least 2 are needed to carve a validation slice (valid_fraction)."
        )
    fit, valid, _ = _split(train, fraction, random_stream(seed, "target_valid"), together)
    splits["target_train"] = train.subset(fit)
    splits["target_valid"] = train.subset(valid)
    capped["target_valid"] = 0


def _remove_stale(out: Path, written: Sequence[str]) -> List[str]:
    """Delete output files of an earlier run that this run does not write, so that a stale
    ``target_test.spacy`` is never taken for this run's; return their names."""
    stale = [f for name, f in OUTPUT_FILES.items() if name not in written and (out / f).exists()]
    for filename in stale:
        (out / filename).unlink()
    return stale


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

    ``target_test`` is a separately read, fully labelled target test corpus; it is aligned like
    the target. ``inputs`` (e.g. the column names) is recorded under ``settings``.
    """
    pair, label_info = align_domains(pair, label_map, labels)
    if target_test is not None:
        test_pair = DomainPair(pair.source, target_test, {})
        target_test = align_domains(test_pair, label_map, labels)[0].target
        pair.reports["target_test"] = target_test.report
    carve = settings.hides and target_test is None
    for side, corpus in (("source", pair.source), ("target", pair.target)):
        need = 2 if side == "source" or carve else 1
        if len(corpus) < need:
            raise DataPreparationError(
                f"The {side} domain has {len(corpus)} usable document(s) (from "
                f"{corpus.report.origin}); at least {need} are needed."
            )
    if not pair.target.matrix.any():
        raise DataPreparationError(
            f"The target data ({pair.target.report.origin}) has no known positive for any "
            "label: DALLMi learns from known positives, so there is nothing to adapt to. Mark "
            "the positives you know (a 1, or the label's name in the labels column)."
        )
    splits, capped, domains = _split_domains(pair, settings, target_test)
    domains["target"].update(label_info)
    counts = pair.target.matrix.sum(axis=0).tolist()
    domains["target"]["positives"] = {label: int(n) for label, n in zip(pair.target.labels, counts)}
    if settings.valid_fraction is not None:
        together = settings.dataset == "files"
        _carve_valid(splits, capped, settings.valid_fraction, settings.seed, together)
    label_names = list(pair.source.labels)
    train = splits["target_train"]
    matrices = {name: corpus.matrix for name, corpus in splits.items()}
    hidings: Dict[str, Any] = {}
    if settings.hides:
        for name, stream_name in PARTIAL_SPLITS.items():
            if name not in splits:
                continue
            full = splits[name]
            hidings[name] = hide_labels(
                full.matrix,
                settings.ratio,
                settings.removal,
                random_stream(settings.seed, stream_name),
            )
            matrices[name] = hidings[name].partial
            matrices[f"{name}_full"] = full.matrix
            splits[f"{name}_full"] = full
            capped[f"{name}_full"] = capped[name]
    elif not train.matrix.any():
        raise DataPreparationError(
            f"The target data ({train.report.origin}) has no known positive for any label: "
            "DALLMi learns from known positives, so there is nothing to adapt to."
        )

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [name for name in OUTPUT_FILES if name in matrices]
    removed = _remove_stale(out, written)
    nlp = spacy.blank("en")
    split_stats: Dict[str, Dict[str, Any]] = {}
    checksums: Dict[str, str] = {}
    for name in written:
        path = out / OUTPUT_FILES[name]
        _docbin(nlp, splits[name], matrices[name]).to_disk(path)
        checksums[OUTPUT_FILES[name]] = hashlib.md5(path.read_bytes()).hexdigest()
        split_stats[name] = _split_stats(
            matrices[name], label_names, capped[name], settings.cap(name)
        )
    for name, hiding in hidings.items():
        split_stats[name]["hidden"] = dict(zip(label_names, hiding.hidden_per_label.tolist()))
        split_stats[name]["restored"] = dict(zip(label_names, hiding.restored_per_label.tolist()))
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
            "labels": LABELS_FILE,
            "stats": STATS_FILE,
        },
        "checksums": checksums,
        "removed_stale_files": removed,
        "target_labels": "hidden by ratio" if settings.hides else "partial as given",
        "target_test": _target_test_origin(settings, target_test),
        "splits": split_stats,
        "hiding": _hiding_stats(settings, hidings.get("target_train")),
        "reads": {name: report.to_dict() for name, report in pair.reports.items()},
        "domains": domains,
        "dataset": dict(pair.details),
    }
    stats["warnings"] = _warnings(pair, splits, split_stats, settings.dataset == "files")
    stats["changes"] = describe_changes(stats)
    srsly.write_json(out / LABELS_FILE, label_names)
    srsly.write_json(out / STATS_FILE, stats)
    print_summary(stats, out, quiet=quiet)
    return stats


def _warnings(
    pair: DomainPair,
    splits: Dict[str, Corpus],
    split_stats: Dict[str, Dict[str, Any]],
    own_files: bool,
) -> List[str]:
    """The :mod:`.datachecks` warnings of one preparation, in the order they are printed."""
    counts = pair.target.matrix.sum(axis=0).tolist()
    target_positives = {label: int(n) for label, n in zip(pair.target.labels, counts)}
    lines = [
        rare_source_labels(split_stats["source_train"]["positives"], "source_train"),
        unadaptable_labels(target_positives, f"target ({pair.target.report.origin})"),
    ]
    for first, second in LEAK_PAIRS:
        if first in splits and second in splits:
            shared = shared_texts(splits[first].texts, splits[second].texts)
            if shared:
                fix = (
                    "Deduplicate the files (keep one row per text), and give a target test "
                    "file that holds no target train text."
                )
                if not own_files:
                    fix = (
                        "The built-in studies keep their published seeded split, so that "
                        "their benchmarks stay reproducible; the overlap is part of them."
                    )
                lines.append(leak_warning(first, second, shared, fix))
    return warn_lines(lines)


def _target_test_origin(settings: PrepareSettings, target_test: Optional[Corpus]) -> Optional[str]:
    """Where ``target_test.spacy`` came from, or None when there is none."""
    if target_test is not None:
        return f"file: {target_test.report.origin}"
    return "carved from the target" if settings.hides else None


def _hiding_stats(settings: PrepareSettings, hiding: Any) -> Optional[Dict[str, Any]]:
    if hiding is None:
        return None
    return {
        "removal": settings.removal,
        "requested_ratio": settings.ratio,
        "positives": hiding.n_positives,
        "hidden": hiding.n_hidden,
        "restored": hiding.n_restored,
        # Rounded so that the returned stats equal stats.json (srsly keeps ~10 digits).
        "achieved_ratio": round(hiding.achieved_ratio, 6) if hiding.n_positives else None,
    }

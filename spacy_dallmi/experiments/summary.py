"""What data preparation did, in plain words, and warnings about data that will not do what a
user expects: every row, label or positive left out or changed gets a sentence with its count
and reason (``stats["changes"]``), so nobody has to diff files; warnings stop nothing.
"""

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from wasabi import Printer

from .readers import SKIP_REASONS, Corpus, DomainPair

#: Fewer source positives than this and a label gets a warning.
MIN_SOURCE_POSITIVES = 5
#: Split pairs that must not share a text: (trained on, scored on).
LEAK_PAIRS = (
    ("source_train", "source_test"),
    ("target_train", "target_test"),
    ("target_train", "target_valid"),
)


def rare_source_labels(positives: Mapping[str, int], where: str) -> Optional[str]:
    rare = {label: n for label, n in positives.items() if n < MIN_SOURCE_POSITIVES}
    if not rare:
        return None
    counted = ", ".join(f"'{label}' ({n})" for label, n in rare.items())
    return (
        f"{where}: label(s) {counted} have fewer than {MIN_SOURCE_POSITIVES} positives "
        "(count in brackets): the source model cannot learn them, so adaptation starts from "
        "a model that does not know them. Add source examples of them, or leave them out of "
        "the label set."
    )


def unadaptable_labels(positives: Mapping[str, int], where: str) -> Optional[str]:
    missing = [label for label, n in positives.items() if not n]
    if not missing:
        return None
    return (
        f"{where}: label(s) {', '.join(repr(x) for x in missing)} have no known positive in "
        "the target data, so they cannot be adapted (DALLMi's loss leaves them out). Mark "
        "known positives of them in the target file, if you have any."
    )


def duplicate_texts(texts: Sequence[str]) -> Dict[str, int]:
    """How many distinct texts occur more than once, and in how many rows."""
    repeated = [n for n in Counter(texts).values() if n > 1]
    return {"texts": len(repeated), "rows": int(sum(repeated))}


def split_warnings(
    pair: DomainPair, splits: Mapping[str, Corpus], source: Mapping[str, int], own_files: bool
) -> List[str]:
    """The warnings of one preparation (``source``: source_train's positives), in order."""
    target_positives = dict(zip(pair.target.labels, map(int, pair.target.matrix.sum(axis=0))))
    lines = [
        rare_source_labels(source, "source_train"),
        unadaptable_labels(target_positives, f"target ({pair.target.report.origin})"),
    ]
    fix = (
        "Deduplicate the files (keep one row per text), and give a target test file that "
        "holds no target train text."
        if own_files
        else "The built-in studies keep their published seeded split, so that their "
        "benchmarks stay reproducible; the overlap is part of them."
    )
    for first, second in LEAK_PAIRS:
        if first in splits and second in splits:
            shared = len(set(splits[first].texts) & set(splits[second].texts))
            if shared:
                lines.append(
                    f"{first}/{second}: {shared} text(s) are in both {first} and {second}, so "
                    f"{second} scores are optimistic (the model has seen those texts). {fix}"
                )
    return [line for line in lines if line]


def read_warnings(reads: Mapping[str, Corpus]) -> List[str]:
    """The warnings the files alone decide (before any split), for ``study check``."""
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
    return [line for line in lines if line]


def read_summary(name: str, read: Dict[str, Any]) -> str:
    """One line per file read: rows read and kept, known positives, rows dropped by reason."""
    positives = ", ".join(f"{label} {n}" for label, n in read["positives"].items()) or "none"
    dropped = "; ".join(
        f"{count} x {reason} (e.g. {', '.join(read['skipped_examples'][reason][:3])})"
        for reason, count in read["skipped"].items()
    )
    return (
        f"{name} ({read['origin']}): {read['rows']} rows read, {read['kept']} kept, "
        f"{read['with_known_positive']} with a known positive, "
        f"{read['without_known_positive']} without; positives per label: {positives}; "
        f"dropped: {dropped or 'none'}."
    )


def _read_changes(name: str, read: Dict[str, Any]) -> List[str]:
    lines = []
    for reason, count in read["skipped"].items():
        why = SKIP_REASONS.get(reason, reason)
        first = ", ".join(read["skipped_examples"][reason][:3])
        lines.append(f"{name}: {count} row(s) left out: {why} (reason '{reason}'; e.g. {first}).")
    if read["dropped_labels"]:
        dropped = ", ".join(f"{label} ({n})" for label, n in read["dropped_labels"].items())
        lines.append(
            f"{name}: label(s) outside the label set were dropped, with their positives: {dropped}."
        )
    if read["emptied_docs"]:
        lines.append(
            f"{name}: {read['emptied_docs']} doc(s) had only dropped labels and are kept as "
            f"all-negative examples."
        )
    return lines


def _valid_changes(stats: Dict[str, Any]) -> List[str]:
    valid = stats["splits"].get("target_valid")
    if valid is None:
        return []
    fraction = stats["settings"]["valid_fraction"]
    lines = [
        f"target_valid: {valid['docs']} doc(s) ({fraction:g} of target train) carved out for "
        "label-free model selection; labelled like target_train, so it holds no true label "
        "that training could not see."
    ]
    unknown = [label for label, n in valid["positives"].items() if not n]
    if unknown:
        lines.append(
            f"target_valid: label(s) {', '.join(unknown)} have no known positive in the "
            "validation slice; the selection score leaves them out."
        )
    return lines


def describe_changes(stats: Dict[str, Any]) -> List[str]:
    """One plain sentence per thing that was left out or changed, with its count and reason."""
    lines: List[str] = []
    for name, read in stats["reads"].items():
        lines.extend(_read_changes(name, read))
    details = stats["dataset"]
    if "tagged_both" in details:
        lines.append(
            f"pubmed: {details['tagged_both']} doc(s) tagged both Male and Female were split "
            f"by a seeded coin flip: {details['both_to_source']} to the source, "
            f"{details['both_to_target']} to the target."
        )
    for side, domain in stats["domains"].items():
        repeated = domain["repeated_texts"]
        if repeated["texts"] and repeated["moved_to_keep_together"] >= 0 and domain["test"]:
            lines.append(
                f"{side}: {repeated['texts']} text(s) occur more than once ({repeated['rows']} "
                f"rows); every copy was put on the side of the split its first copy is on "
                f"({repeated['moved_to_keep_together']} doc(s) moved), so none is in both "
                f"{side}_train and {side}_test."
                if stats["settings"]["dataset"] == "files"
                else f"{side}: {repeated['texts']} text(s) occur more than once "
                f"({repeated['rows']} rows)."
            )
    target = stats["domains"]["target"]
    for old, new in target["renamed_target_labels"].items():
        lines.append(f"target: label '{old}' renamed to '{new}' (label_map).")
    missing = target["source_labels_missing_in_target"]
    if missing:
        lines.append(
            f"target: no column for source label(s) {', '.join(missing)}; they are 0.0 "
            f"(unlabeled/negative) in every target doc."
        )
    for split, numbers in stats["splits"].items():
        if numbers["capped"] and not split.endswith("_full"):
            also = " (the same docs in target_train_full)" if split == "target_train" else ""
            lines.append(
                f"{split}: {numbers['capped']} doc(s) left out by a cap of "
                f"{numbers['cap']} docs (a seeded random sample is kept){also}."
            )
    restored = stats["splits"]["target_train"].get("restored", {})
    if any(restored.values()):
        names = ", ".join(label for label, n in restored.items() if n)
        lines.append(
            f"target_train: 1 hidden positive restored for label(s) {names}, so that every "
            f"label keeps at least one known positive."
        )
    lines.extend(_valid_changes(stats))
    if stats["hiding"] is None:
        known = target["positives"]
        unknown = [
            k for k, n in stats["splits"]["target_train"]["positives"].items() if not n and known[k]
        ]
        lines.append(
            "target_train: labels are partial as given (ratio 0): a 1 is a known positive, "
            "everything else is unlabeled; nothing was hidden and there is no "
            "target_train_full.spacy."
        )
        if unknown:
            lines.append(
                f"target_train: label(s) {', '.join(unknown)} have no known positive left in "
                "target_train (the validation slice or a cap took them), so adaptation cannot "
                "learn them."
            )
    if stats["target_test"] is None:
        lines.append(
            "target_test: none. The target's labels are partial and no fully labelled target "
            "test file was given (--target-test), so no test split was carved: metrics that "
            "need true target labels cannot be computed."
        )
    for filename in stats["removed_stale_files"]:
        lines.append(f"{filename}: removed, left over from an earlier run into this folder.")
    return lines


def print_summary(stats: Dict[str, Any], output_dir: Path, *, quiet: bool = False) -> None:
    """Print the reads, split sizes, per-label positives, changes and warnings."""
    msg = Printer(no_print=quiet)
    settings = stats["settings"]
    msg.divider(
        f"DALLMi data: {settings['dataset']} (ratio {settings['ratio']}, {settings['removal']}, "
        f"seed {settings['seed']})"
    )
    for name, read in stats["reads"].items():
        msg.info(read_summary(name, read))
    splits = stats["splits"]
    rows = [
        (name, s["docs"], sum(s["positives"].values()), s["docs_without_positives"])
        + (s["capped"], sum(s.get("hidden", {}).values()))
        for name, s in splits.items()
    ]
    header = ("split", "docs", "positives", "no positive", "capped", "hidden")
    msg.table(rows, header=header, divider=True, aligns=("l", *"rrrrr"))
    hidden = splits["target_train"].get("hidden", {})
    rows = [
        (label, *(split["positives"][label] for split in splits.values()), hidden.get(label, 0))
        for label in stats["labels"]
    ]
    aligns = ("l", *("r" for _ in splits), "r")
    msg.table(rows, header=("label", *splits, "hidden"), divider=True, aligns=aligns)
    hiding = stats["hiding"]
    if hiding is not None:
        msg.info(
            f"Hidden {hiding['hidden']} of {hiding['positives']} target train positives "
            f"(requested {hiding['requested_ratio']}, restored {hiding['restored']})."
        )
    for line in stats["changes"]:
        msg.info(line)
    for line in stats["warnings"]:
        msg.warn(line)
    msg.good(f"Wrote {', '.join(stats['files'].values())} to {output_dir}")

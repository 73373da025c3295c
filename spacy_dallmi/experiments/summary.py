"""Say in plain words what data preparation did: the printed tables and ``stats["changes"]``.

Every row, label or positive that was left out or changed gets one sentence with its count and
reason, so a user never has to diff files to learn what happened to their data.
"""

from pathlib import Path
from typing import Any, Dict, List

from wasabi import Printer

from .readers import SKIP_REASONS


def read_summary(name: str, read: Dict[str, Any]) -> str:
    """One line per file read: rows read and kept, rows with and without a known positive,
    positives per label, and the rows dropped, by reason, with their first row numbers."""
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
    """What carving the validation slice did, and the labels it has no known positive for."""
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
        known = stats["domains"]["target"]["positives"]
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
    """Print split sizes, per-label positives and all changes as wasabi tables."""
    msg = Printer(no_print=quiet)
    settings = stats["settings"]
    msg.divider(
        f"DALLMi data: {settings['dataset']} (ratio {settings['ratio']}, {settings['removal']}, "
        f"seed {settings['seed']})"
    )
    for name, read in stats["reads"].items():
        msg.info(read_summary(name, read))
    splits = stats["splits"]
    msg.table(
        [
            (
                name,
                s["docs"],
                sum(s["positives"].values()),
                s["docs_without_positives"],
                s["capped"],
                sum(s.get("hidden", {}).values()),
            )
            for name, s in splits.items()
        ],
        header=("split", "docs", "positives", "no positive", "capped", "hidden"),
        divider=True,
        aligns=("l", "r", "r", "r", "r", "r"),
    )
    hidden = splits["target_train"].get("hidden", {})
    msg.table(
        [
            (
                label,
                *(split["positives"][label] for split in splits.values()),
                hidden.get(label, 0),
            )
            for label in stats["labels"]
        ],
        header=("label", *splits, "hidden"),
        divider=True,
        aligns=("l", *("r" for _ in splits), "r"),
    )
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

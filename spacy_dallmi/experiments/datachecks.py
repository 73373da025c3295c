"""Warnings about data that can be prepared but will not do what a user expects.

None of these stops preparation; each is one sentence naming the culprit and a count, printed
by ``check`` and ``prepare`` and recorded in ``stats.json`` under ``warnings``:

- a source label with fewer than :data:`MIN_SOURCE_POSITIVES` positives: the source model
  cannot learn it;
- a target label without any known positive: DALLMi cannot adapt it;
- the same text on both sides of a split (a leak that makes test scores optimistic).
"""

from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence

#: Fewer source positives than this and a label gets a warning: the source model cannot learn
#: it from so few examples.
MIN_SOURCE_POSITIVES = 5


def _counted(counts: Mapping[str, int]) -> str:
    return ", ".join(f"'{label}' ({n})" for label, n in counts.items())


def rare_source_labels(positives: Mapping[str, int], where: str) -> Optional[str]:
    """A warning naming the labels with fewer than MIN_SOURCE_POSITIVES positives, or None."""
    rare = {label: n for label, n in positives.items() if n < MIN_SOURCE_POSITIVES}
    if not rare:
        return None
    return (
        f"{where}: label(s) {_counted(rare)} have fewer than {MIN_SOURCE_POSITIVES} positives "
        "(count in brackets): the source model cannot learn them, so adaptation starts from "
        "a model that does not know them. Add source examples of them, or leave them out of "
        "the label set."
    )


def unadaptable_labels(positives: Mapping[str, int], where: str) -> Optional[str]:
    """A warning naming the target labels without any known positive, or None."""
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


def shared_texts(first: Sequence[str], second: Sequence[str]) -> int:
    """How many distinct texts are in both ``first`` and ``second``."""
    return len(set(first) & set(second))


def leak_warning(split_a: str, split_b: str, shared: int, fix: str) -> str:
    return (
        f"{split_a}/{split_b}: {shared} text(s) are in both {split_a} and {split_b}, so "
        f"{split_b} scores are optimistic (the model has seen those texts). {fix}"
    )


def warn_lines(warnings: List[Optional[str]]) -> List[str]:
    return [line for line in warnings if line]

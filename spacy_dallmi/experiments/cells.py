"""How one cell of a table becomes a value: text, a 0/1 flag or a list of label names.

A cell that cannot be used raises :class:`RowProblem` with the reason its row is counted
under (a key of ``SKIP_REASONS``), so the reader can leave the row out without losing track.
"""

import ast
import json
import numbers
import re
from typing import Any, List

_LABEL_SEPARATORS = re.compile(r"[,;|]")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


class RowProblem(Exception):
    """One row cannot be used; ``reason`` (a key of SKIP_REASONS) is what it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def text_value(value: Any) -> str:
    """The text of a cell; raises for missing or blank text, which gives an empty document."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise RowProblem("empty_text")
    return text


def parse_flag(value: Any) -> bool:
    """Parse a 0/1 label cell (also true/false, yes/no, 1.0/0.0); blank means no annotation."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        if value in (0, 1):
            return bool(value)
        raise RowProblem("unparseable_labels")
    if value is None or not str(value).strip():
        raise RowProblem("missing_labels")
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    try:
        number = float(text)
    except ValueError:
        raise RowProblem("unparseable_labels") from None
    if number in (0.0, 1.0):
        return number == 1.0
    raise RowProblem("unparseable_labels")


def parse_literal_list(text: str, reason: str = "unparseable_labels") -> List[Any]:
    """A list written as JSON or as a Python literal (the PubMed CSVs use the latter)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise RowProblem(reason) from None
    if not isinstance(items, list):
        raise RowProblem(reason)
    return items


def parse_label_list(value: Any) -> List[str]:
    """Parse a cell listing label names: a JSON/Python list, or names split on , ; or |.

    A blank cell is an unannotated row (``missing_labels``); an explicit empty list ``[]`` is
    an annotated row with no positive label (an all-negative example).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowProblem("missing_labels")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            items = parse_literal_list(text)
        else:
            items = _LABEL_SEPARATORS.split(text)
            if not any(item.strip() for item in items):
                raise RowProblem("unparseable_labels")
    elif isinstance(value, list):
        items = value
    else:
        raise RowProblem("unparseable_labels")
    if not all(isinstance(item, str) for item in items):
        raise RowProblem("unparseable_labels")
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))

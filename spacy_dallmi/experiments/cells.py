"""How one cell of a table becomes a value: text, a 0/1 flag or a list of label names.

A cell that cannot be used raises :class:`RowProblem` with the reason its row is counted
under (a key of ``SKIP_REASONS``), so the reader can leave the row out without losing track.

A blank label cell is never a problem of its own: an empty or whitespace-only cell, a JSON
``null``, a missing key, ``[]`` and ``""`` all say "no known positive". What that means for the
row depends on the file (see :func:`~.readers.read_table`), so the parsers return it as such:
``None`` from :func:`parse_flag`, ``[]`` from :func:`parse_label_list`.
"""

import ast
import json
import numbers
import re
from typing import Any, List, Optional

_LABEL_SEPARATORS = re.compile(r"[,;|]")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}
#: Cell texts that are an empty value written out: ``""`` or ``''`` (a CSV reader already
#: turns a quoted empty cell into an empty string).
_EMPTY_LITERALS = {'""', "''"}


def is_blank(value: Any) -> bool:
    """Whether a label cell holds no value: None (JSON null, missing key), an empty or
    whitespace-only string, or an empty string written as ``""``."""
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip()
        return not text or text in _EMPTY_LITERALS
    return False


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


def parse_flag(value: Any) -> Optional[bool]:
    """Parse a 0/1 label cell (also true/false, yes/no, 1.0/0.0); None for a blank cell
    (:func:`is_blank`), which the reader takes as unknown or rejects, by file."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        if value in (0, 1):
            return bool(value)
        raise RowProblem("unparseable_labels")
    if is_blank(value):
        return None
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

    A blank cell (:func:`is_blank`) and an empty list ``[]`` are a row with no known positive:
    ``[]`` is returned for both.
    """
    if is_blank(value):
        return []
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

"""The ``python -m spacy_dallmi`` typer app, and the helpers its command modules share.

Every command module (:mod:`.data_commands`, :mod:`.model_commands`, :mod:`.study`)
registers its commands on :data:`app` when it is imported, and :mod:`.cli` imports them all.
The app lives here, in a module that imports none of them, so that the command modules can
import it without importing :mod:`.cli` back: no module of the package is part of an import
cycle.
"""

from typing import Any, List, Optional

import srsly
import typer
from wasabi import msg

from . import INSTALL_HINT

app = typer.Typer(
    name="spacy_dallmi",
    help="DALLMi domain adaptation for spaCy: data preparation, training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
)

#: Written instead of a model into a training output folder when the run cannot be made.
SKIPPED_FILE = "skipped.json"


def _split_names(value: Optional[str]) -> Optional[List[str]]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``, for options that take comma-separated lists."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _build_report() -> Any:
    """The report builder, or a one-line failure naming the extra when matplotlib is missing."""
    try:
        from .report import build_report
    except ImportError as error:
        missing = (error.name or "matplotlib").split(".")[0]
        msg.fail(f"The report needs {missing}: {INSTALL_HINT}", exits=1)
    return build_report


def _var_value(text: str) -> Any:
    """A ``--set`` value as a command line would read it: JSON, else the string."""
    try:
        return srsly.json_loads(text)
    except ValueError:
        return text

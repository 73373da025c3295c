"""Command-line interface of the experiment kit: ``python -m spacy_dallmi COMMAND``.

A thin layer over the kit: each command parses its options, calls one function and turns the
kit's own errors (missing file, wrong column, bad setting, label mismatch, too many dropped
rows) into a one-line failure message and exit code 1 instead of a traceback. Modules that
need torch or matplotlib are imported inside the commands that use them, so ``--help`` and the
data commands stay light, and a missing optional dependency is one clear line.

This module only assembles the app: :data:`app` lives in :mod:`.commands`, and importing the
command modules registers their commands on it, in the order ``--help`` lists them.
"""

from . import data_commands, model_commands, study  # noqa: F401
from .commands import app

__all__ = ["app"]

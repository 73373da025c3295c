"""``python -m spacy_dallmi COMMAND``: the app of :mod:`.commands`, with :mod:`.study`'s
``study`` commands registered on it by importing it."""

from . import study  # noqa: F401
from .commands import app

__all__ = ["app"]

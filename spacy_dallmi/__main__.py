"""Run the command-line interface: ``python -m spacy_dallmi --help``."""

from __future__ import annotations

from spacy_dallmi.cli import app

if __name__ == "__main__":
    app(prog_name="python -m spacy_dallmi")

"""Run the experiment kit's command line: ``python -m spacy_dallmi --help``."""

from spacy_dallmi.experiments.cli import app

if __name__ == "__main__":
    app(prog_name="python -m spacy_dallmi")

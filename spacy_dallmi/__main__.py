"""Run the experiment kit's command line: ``python -m spacy_dallmi --help``."""

from spacy_dallmi.classify import classify_command
from spacy_dallmi.experiments.cli import app

app.command("classify")(classify_command)

if __name__ == "__main__":
    app(prog_name="python -m spacy_dallmi")

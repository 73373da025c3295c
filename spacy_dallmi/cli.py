"""Command-line interface: ``python -m spacy_dallmi COMMAND``.

A thin layer over the library: each command parses its options, calls one function and turns
the library's own errors (missing file, wrong column, bad setting, label mismatch) into a
one-line failure message and exit code 1 instead of a traceback. Other commands (training and
evaluation helpers) are added to the same ``app``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import srsly
import typer
from wasabi import msg

from .data import (
    DATASETS,
    REMOVAL_MODES,
    DataFileNotFoundError,
    DataPreparationError,
    prepare_dataset,
    prepare_files,
)

app = typer.Typer(
    name="spacy_dallmi",
    help="DALLMi domain adaptation for spaCy: data preparation, training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
)

RATIO_HELP = "Share of the target train positives to hide, strictly between 0 and 1."
REMOVAL_HELP = f"How positives are hidden: {' or '.join(REMOVAL_MODES)}."
MAX_DOCS_HELP = "Keep at most this many docs per split (a seeded sample), e.g. for a quick run."


def _split_names(value: Optional[str]) -> Optional[list[str]]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; options take comma-separated lists."""
    if value is None:
        return None
    return [name.strip() for name in value.split(",") if name.strip()]


def _read_label_map(path: Optional[Path]) -> Optional[dict[str, str]]:
    """Load a JSON object mapping target label names to source label names."""
    if path is None:
        return None
    if not path.is_file():
        msg.fail(f"Label map file not found: {path}", exits=1)
    try:
        mapping = srsly.read_json(path)
    except ValueError as error:
        msg.fail(f"{path} is not valid JSON: {error}", exits=1)
    if not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        msg.fail(
            f"{path} must hold a JSON object of target label -> source label names, "
            f'e.g. {{"happy": "joy"}}',
            exits=1,
        )
    return mapping


@app.command("prepare")
def prepare_command(
    dataset: str = typer.Argument(..., help=f"Built-in dataset: {' or '.join(DATASETS)}."),
    data_dir: Path = typer.Argument(
        ..., help="Folder holding goemotions/, semeval2018_ec/ and pubmed/."
    ),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    ratio: float = typer.Option(..., "--ratio", help=RATIO_HELP),
    removal: str = typer.Option("per_sample", "--removal", help=REMOVAL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share per domain."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary."),
) -> None:
    """Write source/target train/test corpora of a built-in dataset, with target labels hidden."""
    try:
        prepare_dataset(
            dataset,
            data_dir,
            output_dir,
            ratio=ratio,
            removal=removal,
            seed=seed,
            max_docs=max_docs,
            test_fraction=test_fraction,
            quiet=quiet,
        )
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)


@app.command("prepare-files")
def prepare_files_command(
    source: Path = typer.Argument(..., help="Source-domain file (CSV, TSV or JSONL)."),
    target: Path = typer.Argument(..., help="Target-domain file (CSV, TSV or JSONL)."),
    output_dir: Path = typer.Argument(..., help="Folder to write the corpora and stats to."),
    text_column: str = typer.Option(..., "--text-column", help="Column holding the text."),
    label_columns: Optional[str] = typer.Option(
        None, "--label-columns", help="Comma-separated 0/1 label columns (e.g. a,b,c)."
    ),
    labels_column: Optional[str] = typer.Option(
        None, "--labels-column", help="Column listing each row's labels (a,b or a JSON list)."
    ),
    label_map: Optional[Path] = typer.Option(
        None, "--label-map", help="JSON file mapping target label names to source names."
    ),
    labels: Optional[str] = typer.Option(
        None, "--labels", help="Comma-separated subset of source labels to keep."
    ),
    target_text_column: Optional[str] = typer.Option(
        None, "--target-text-column", help="Target text column, if named differently."
    ),
    target_label_columns: Optional[str] = typer.Option(
        None, "--target-label-columns", help="Target 0/1 label columns, if different."
    ),
    target_labels_column: Optional[str] = typer.Option(
        None, "--target-labels-column", help="Target label-list column, if different."
    ),
    file_format: Optional[str] = typer.Option(
        None, "--format", help="csv, tsv or jsonl (default: from the file extension)."
    ),
    ratio: float = typer.Option(..., "--ratio", help=RATIO_HELP),
    removal: str = typer.Option("per_sample", "--removal", help=REMOVAL_HELP),
    seed: int = typer.Option(0, "--seed", help="Seed of every random step."),
    max_docs: Optional[int] = typer.Option(None, "--max-docs", help=MAX_DOCS_HELP),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share per domain."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary."),
) -> None:
    """Write source/target train/test corpora from your own files, with target labels hidden."""
    try:
        prepare_files(
            source,
            target,
            output_dir,
            text_column=text_column,
            label_columns=_split_names(label_columns),
            labels_column=labels_column,
            label_map=_read_label_map(label_map),
            labels=_split_names(labels),
            target_text_column=target_text_column,
            target_label_columns=_split_names(target_label_columns),
            target_labels_column=target_labels_column,
            file_format=file_format,
            ratio=ratio,
            removal=removal,
            seed=seed,
            max_docs=max_docs,
            test_fraction=test_fraction,
            quiet=quiet,
        )
    except (DataFileNotFoundError, DataPreparationError) as error:
        msg.fail(str(error), exits=1)

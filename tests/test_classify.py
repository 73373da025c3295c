"""The ``classify`` command: formats, null texts, row accounting, thresholds and errors."""

import csv
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
import typer
from typer.testing import CliRunner

from spacy_dallmi.classify import (
    STATUS_COLUMN,
    ClassifyError,
    classify_command,
    classify_file,
    load_thresholds,
)

from .util import LABELS, save_trained_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:.*were truncated")

ROWS: List[Dict[str, Any]] = [
    {"id": "1", "text": "happy glad day", "note": 'comma, "quote"'},
    {"id": "2", "text": "", "note": "empty"},
    {"id": "3", "text": "rage and tears\nsecond line", "note": "newline"},
    {"id": "4", "text": "   ", "note": "blank"},
    {"id": "5", "text": "scared of the day " * 20, "note": "long"},
    {"id": "6", "text": "smile ü ß 日本", "note": "unicode"},
    {"id": "7", "text": None, "note": "null"},
]
STATUS = ["ok", "empty", "ok", "empty", "ok", "ok", "missing"]
FORMATS = ["csv", "tsv", "jsonl", "parquet"]


@pytest.fixture(scope="module")
def model(tiny_bert, tmp_path_factory) -> Path:
    return save_trained_pipeline(tiny_bert, tmp_path_factory.mktemp("classify") / "model")


@pytest.fixture(scope="module")
def nlp(model):
    return spacy.load(model)


def write(path: Path, rows: List[Dict[str, Any]]) -> Path:
    fmt = path.suffix[1:]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    elif fmt == "parquet":
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    else:
        with path.open("w", newline="", encoding="utf8") as handle:
            writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",")
            writer.writerow(rows[0])
            writer.writerows([["" if v is None else v for v in row.values()] for row in rows])
    return path


def read(path: Path) -> List[Dict[str, Any]]:
    fmt = path.suffix[1:]
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]
    if fmt == "parquet":
        import pyarrow.parquet

        return pyarrow.parquet.read_table(path).to_pylist()
    with path.open(newline="", encoding="utf8") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ","))


def number(value: Any) -> Any:
    return None if value in (None, "") else float(value)


@pytest.mark.parametrize("fmt_out", FORMATS)
@pytest.mark.parametrize("fmt_in", FORMATS)
def test_round_trip(nlp, tmp_path, fmt_in, fmt_out):
    if "parquet" in (fmt_in, fmt_out):
        pytest.importorskip("pyarrow")
    source = write(tmp_path / f"in.{fmt_in}", ROWS)
    output = tmp_path / f"out.{fmt_out}"
    counts = classify_file(nlp, source, output, "text", batch_size=3)
    assert counts.rows_in == counts.rows_out == len(ROWS)
    # CSV cannot tell a null cell from an empty one
    statuses = [s if fmt_in not in ("csv", "tsv") or s != "missing" else "empty" for s in STATUS]
    assert counts.statuses == {s: statuses.count(s) for s in ("ok", "empty", "missing")}
    assert not list(tmp_path.glob("*.partial"))
    rows = read(output)
    assert len(rows) == len(ROWS)
    expected = {doc.text: doc.cats for doc in nlp.pipe([r["text"] for r in ROWS if r["text"]])}
    for row, original, status in zip(rows, ROWS, statuses):
        assert [str(row["id"]), row["note"]] == [original["id"], original["note"]]
        assert row[STATUS_COLUMN] == status
        assert list(row)[-len(LABELS) - 1 :] == [f"prob_{label}" for label in LABELS] + [
            STATUS_COLUMN
        ]
        probs = [number(row[f"prob_{label}"]) for label in LABELS]
        if status == "ok":
            assert row["text"] == original["text"]
            assert probs == pytest.approx([expected[row["text"]][k] for k in LABELS], abs=1e-6)
        else:
            assert probs == [None] * len(LABELS)


def test_missing_text_column_is_named(nlp, tmp_path):
    source = write(tmp_path / "in.csv", [{"id": "1", "body": "hi"}])
    with pytest.raises(ClassifyError, match=r"no column 'text'.*\['id', 'body'\]"):
        classify_file(nlp, source, tmp_path / "out.csv", "text")
    assert not list(tmp_path.glob("out*"))


def test_duplicate_header_and_clashing_columns_are_errors(nlp, tmp_path):
    source = tmp_path / "dup.csv"
    source.write_text("text,id,id\nhi,1,2\n", encoding="utf8")
    with pytest.raises(ClassifyError, match=r"duplicate column names: \['id'\]"):
        classify_file(nlp, source, tmp_path / "out.csv", "text")
    source = write(tmp_path / "clash.jsonl", [{"text": "hi", "prob_joy": 1}])
    with pytest.raises(ClassifyError, match=r"already has column\(s\) \['prob_joy'\]"):
        classify_file(nlp, source, tmp_path / "out.csv", "text")


def test_row_accounting_blank_lines_and_short_rows(nlp, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text,extra\n1,happy,x\n\n2,sad\n3\n4,rage,y\n", encoding="utf8")
    counts = classify_file(nlp, source, tmp_path / "out.jsonl", "text")
    assert (counts.rows_in, counts.rows_out, counts.blank_lines, counts.short_rows) == (4, 4, 1, 2)
    rows = read(tmp_path / "out.jsonl")
    assert [row["id"] for row in rows] == ["1", "2", "3", "4"]
    assert rows[1]["extra"] is None and rows[2][STATUS_COLUMN] == "missing"


def test_bad_row_fails_without_leaving_output(nlp, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,happy\n2,sad,extra\n", encoding="utf8")
    with pytest.raises(ClassifyError, match="line 3: 3 fields, but the header has 2"):
        classify_file(nlp, source, tmp_path / "out.csv", "text")
    assert list(tmp_path.iterdir()) == [source]


def test_jsonl_record_with_new_key_needs_jsonl_output(nlp, tmp_path):
    source = write(tmp_path / "in.jsonl", [{"text": "happy"}, {"text": "sad", "lang": "en"}])
    classify_file(nlp, source, tmp_path / "out.jsonl", "text")
    assert read(tmp_path / "out.jsonl")[1]["lang"] == "en"
    with pytest.raises(ClassifyError, match=r"column\(s\) \['lang'\].*Write JSONL"):
        classify_file(nlp, source, tmp_path / "out.csv", "text")


def test_thresholds(nlp, tmp_path):
    labels = list(LABELS)
    source = write(tmp_path / "in.jsonl", ROWS)
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"joy": 0.0, "anger": 1.0}), encoding="utf8")
    thresholds = load_thresholds(path, labels, 0.5)
    assert thresholds == {"anger": 1.0, "fear": 0.5, "joy": 0.0, "sadness": 0.5}
    classify_file(nlp, source, tmp_path / "out.jsonl", "text", thresholds=thresholds)
    for row in read(tmp_path / "out.jsonl"):
        if row[STATUS_COLUMN] != "ok":
            assert row["labels"] is None
            continue
        over = [k for k in labels if row[f"prob_{k}"] >= thresholds[k]]
        assert row["labels"] == over and "joy" in over and "anger" not in over
    assert load_thresholds(None, labels, None) is None
    assert load_thresholds(None, labels, 0.3) == dict.fromkeys(labels, 0.3)
    with pytest.raises(ClassifyError, match=r"no threshold for label\(s\) \['fear', 'sadness'\]"):
        load_thresholds(path, labels, None)
    path.write_text(json.dumps({"joy": 0.5, "trust": 0.5}), encoding="utf8")
    with pytest.raises(ClassifyError, match=r"label\(s\) \['trust'\] that the model does not"):
        load_thresholds(path, labels, 0.5)
    path.write_text(json.dumps({"joy": 2}), encoding="utf8")
    with pytest.raises(ClassifyError, match=r"'joy' must be a number in \[0, 1\], not 2"):
        load_thresholds(path, labels, 0.5)


def test_command(model, tmp_path):
    app = typer.Typer()
    app.command("classify")(classify_command)
    app.command("other")(lambda: None)  # two commands: typer then expects the command name
    source = write(tmp_path / "in.csv", ROWS)
    output = tmp_path / "out" / "labelled.csv"
    args = ["classify", str(model), str(source), str(output), "--text-column", "text"]
    result = CliRunner().invoke(app, [*args, "--threshold", "0.5", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Wrote 7 rows" in result.output and "empty: 3; missing: 0" in result.output
    rows = read(output)
    assert len(rows) == 7 and json.loads(rows[0]["labels"]) is not None
    args[-1] = "body"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "no column 'body'" in " ".join(result.output.split())
    result = CliRunner().invoke(app, args[:4])
    assert result.exit_code == 1 and "Missing option --text-column" in result.output

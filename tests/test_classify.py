"""The ``classify`` command: formats, null texts, row accounting, thresholds and errors."""

import csv
import json
import os
import shutil
import threading
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
    write_classified,
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


def read(path: Path, fmt: str = "") -> List[Dict[str, Any]]:
    fmt = fmt or path.suffix[1:]
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


def test_blank_cells_past_the_header_are_read(nlp, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,happy,\n2,sad, ,\n", encoding="utf8")
    counts = classify_file(nlp, source, tmp_path / "out.jsonl", "text")
    assert (counts.rows_in, counts.rows_out, counts.short_rows) == (2, 2, 0)
    assert [(row["id"], row["text"]) for row in read(tmp_path / "out.jsonl")] == [
        ("1", "happy"),
        ("2", "sad"),
    ]


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
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 1 and "no column 'body'" in " ".join(result.output.split())
    assert len(read(output)) == 7  # a failed run leaves the previous OUTPUT as it was
    result = CliRunner().invoke(app, args[:4])
    assert result.exit_code == 1 and "Missing option --text-column" in result.output


def cli(*args: str):
    """Run ``classify`` as ``python -m spacy_dallmi classify ...`` does, in this process."""
    app = typer.Typer()
    app.command("classify")(classify_command)
    app.command("other")(lambda: None)
    return CliRunner().invoke(app, ["classify", *map(str, args), "--no-progress"])


def assert_fails_with(result, *parts: str) -> str:
    """One message line naming ``parts``, exit 1, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def test_existing_output_is_refused_unless_overwrite(model, tmp_path):
    source = write(tmp_path / "in.csv", ROWS)
    output = tmp_path / "out.csv"
    output.write_text("keep me\n", encoding="utf8")
    result = cli(model, source, output, "--text-column", "text")
    assert_fails_with(result, str(output), "exists", "--overwrite")
    assert output.read_text(encoding="utf8") == "keep me\n"
    result = cli(model, source, output, "--text-column", "text", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(read(output)) == len(ROWS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    result = cli(model, source, tmp_path, "--text-column", "text")
    assert_fails_with(result, str(tmp_path), "is a folder")
    result = cli(model, source, str(tmp_path / "parts") + "/", "--text-column", "text")
    assert_fails_with(result, "needs --ray")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_that_is_not_utf8_names_file_and_line(model, tmp_path, fmt):
    source = tmp_path / f"latin1.{fmt}"
    lines = ["id,text", "1,happy"] if fmt == "csv" else ['{"id": 1, "text": "happy"}']
    lines.append("2,caf\xe9 sad" if fmt == "csv" else '{"id": 2, "text": "caf\xe9 sad"}')
    source.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    result = cli(model, source, tmp_path / "out.csv", "--text-column", "text")
    line = len(lines)
    assert_fails_with(result, f"{source}, line {line}: not valid UTF-8", "Save the file as UTF-8")
    assert sorted(path.name for path in tmp_path.iterdir()) == [source.name]


def test_mixed_numbers_and_text_for_parquet_names_row_and_column(model, tmp_path):
    pytest.importorskip("pyarrow")
    source = write(tmp_path / "in.jsonl", [{"id": 1, "text": "happy"}, {"id": "b", "text": "sad"}])
    output = tmp_path / "out.parquet"
    result = cli(model, source, output, "--text-column", "text")
    assert_fails_with(result, f"{source}, row 2, column 'id'", "numbers and text", "JSONL")
    assert not output.exists()
    # past the first chunk of rows the Parquet types are set: the row is still named
    rows = [{"id": i, "text": "happy"} for i in range(1100)] + [{"id": "b", "text": "sad"}]
    source = write(tmp_path / "long.jsonl", rows)
    result = cli(model, source, output, "--text-column", "text")
    assert_fails_with(result, f"{source}, row 1101, column 'id'", "value 'b'")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "long.jsonl"]


def test_damaged_weights_file_is_named(model, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(model, damaged)
    weights = damaged / "textcat" / "model"
    weights.write_bytes(weights.read_bytes()[:5000])
    source = write(tmp_path / "in.csv", ROWS)
    result = cli(damaged, source, tmp_path / "out.csv", "--text-column", "text")
    assert_fails_with(result, str(weights), "damaged or incomplete", "save the pipeline again")
    assert not (tmp_path / "out.csv").exists()


def test_a_byte_order_mark_is_read_in_csv_and_jsonl(nlp, tmp_path):
    classify_file(nlp, write(tmp_path / "plain.jsonl", ROWS), tmp_path / "plain_out.jsonl", "text")
    expected = read(tmp_path / "plain_out.jsonl")
    for fmt in ("csv", "jsonl"):
        source = write(tmp_path / f"in.{fmt}", ROWS)
        source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())
        output = tmp_path / f"out_{fmt}.jsonl"
        counts = classify_file(nlp, source, output, "text")
        assert counts.rows_out == len(ROWS)
        rows = read(output)
        assert list(rows[0])[:3] == ["id", "text", "note"]  # no BOM in the first name
        assert [row["prob_joy"] for row in rows[:2]] == [r["prob_joy"] for r in expected[:2]]


def run_racing(tmp_path: Path, overwrite: bool):
    """Two runs on one OUTPUT, overlapping for sure: each writes half its rows, then waits
    until the other has too. Returns each run's rows and error."""
    output = tmp_path / "out.csv"
    meeting = threading.Barrier(2, timeout=60)
    inputs, results = {}, {}
    for name in ("a", "b"):
        rows = [{"id": f"{name}{i}", "text": "happy"} for i in range(3000)]
        inputs[name] = (write(tmp_path / f"{name}.csv", rows), rows)

    def predict(items):
        for index, (_, row) in enumerate(items):
            if index == 1500:
                meeting.wait()
            yield row, {STATUS_COLUMN: "ok"}

    def run(name):
        try:
            write_classified(
                [inputs[name][0]], output, "text", [STATUS_COLUMN], predict, None, overwrite
            )
            results[name] = None
        except ClassifyError as error:
            results[name] = error

    threads = [threading.Thread(target=run, args=(name,)) for name in inputs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return output, inputs, results


def test_two_runs_on_one_output_never_mix_rows(tmp_path):
    output, inputs, results = run_racing(tmp_path, overwrite=False)
    # without --overwrite the first run to finish wins; the other fails, keeps its output
    winners = [name for name, error in results.items() if error is None]
    assert len(winners) == 1, results
    loser = "b" if winners == ["a"] else "a"
    message = str(results[loser])
    assert f"{output} was written by another run" in message and "--overwrite" in message
    kept = Path(message.split("output is at ")[1].split(". Pass")[0])
    assert [row["id"] for row in read(output)] == [row["id"] for row in inputs[winners[0]][1]]
    assert kept.parent == tmp_path and kept.name.startswith(".out.csv.")
    assert [row["id"] for row in read(kept, "csv")] == [row["id"] for row in inputs[loser][1]]


def test_two_runs_with_overwrite_the_last_to_finish_wins(tmp_path):
    output, inputs, results = run_racing(tmp_path, overwrite=True)
    assert results == {"a": None, "b": None}
    ids = [row["id"] for row in read(output)]
    assert ids in ([row["id"] for row in inputs[name][1]] for name in inputs)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.csv", "b.csv", "out.csv"]


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [False, True])
def test_two_commands_on_one_output(model, tmp_path, overwrite):
    """Two ``python -m spacy_dallmi classify`` processes started together on one OUTPUT:
    the file there is one run's complete output, whichever finishes when."""
    import subprocess
    import sys

    output = tmp_path / "out.csv"
    inputs = {}
    for name in ("a", "b"):
        rows = [{"id": f"{name}{i}", "text": f"happy day {i}"} for i in range(4000)]
        inputs[name] = (write(tmp_path / f"{name}.csv", rows), [row["id"] for row in rows])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "spacy_dallmi", "classify", str(model), str(source)]
            + [str(output), "--text-column", "text", "--no-progress"]
            + (["--overwrite"] if overwrite else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for name, (source, _) in inputs.items()
    }
    outputs = {name: process.communicate(timeout=600)[0] for name, process in processes.items()}
    codes = {name: process.returncode for name, process in processes.items()}
    ids = [row["id"] for row in read(output)]
    assert ids in (inputs["a"][1], inputs["b"][1])
    if overwrite:
        assert codes == {"a": 0, "b": 0}, outputs
    else:
        winner = "a" if ids == inputs["a"][1] else "b"
        loser = "b" if winner == "a" else "a"
        assert codes == {winner: 0, loser: 1}, outputs
        assert "Traceback" not in outputs[loser]
        assert "exists" in outputs[loser] or "written by another run" in outputs[loser]

"""How label cells are read from users' files (issue 23) and the problems `prepare` and `check`
no longer pass over in silence (issue 27): a blank cell is a row with no known positive, never a
dropped row; a source cell that is not a label value, a label the source can hardly learn and a
text on both sides of a split are named, with counts, in one message each."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_dallmi.experiments.cli import app
from spacy_dallmi.experiments.corpus import prepare_files
from spacy_dallmi.experiments.protocol import keep_duplicates_together, split_train_test
from spacy_dallmi.experiments.readers import DataPreparationError
from spacy_dallmi.experiments.summary import MIN_SOURCE_POSITIVES

LABELS = ["billing", "delivery", "product"]
BLANK_TEXT = "the row with a blank label cell"
#: Each way of writing "no known positive" in a labels column: (name, file suffix, cell).
#: CSV cells are written as they stand in the file; the JSONL cell is a JSON value.
FORMS = {
    "blank": (".csv", ""),
    "whitespace": (".csv", '"   "'),
    "null": (".jsonl", None),
    "empty list": (".csv", "[]"),
    "empty string": (".csv", '""'),
}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` writes corpus/ and training/ into the working directory."""
    monkeypatch.chdir(tmp_path)


def rows(n: int, seed: int, prefix: str) -> List[List[str]]:
    """``n`` rows whose label lists give every label several positives."""
    rng = numpy.random.default_rng(seed)
    out = []
    for i in range(n):
        names = [label for label in LABELS if rng.random() < 0.5] or [LABELS[i % 3]]
        out.append([f"{prefix} message number {i}", "|".join(names)])
    return out


def write(path: Path, table: List[List[Optional[str]]], header=("text", "labels")) -> Path:
    """A CSV (cells written as they are) or a JSONL file (cells as JSON values)."""
    if path.suffix == ".jsonl":
        lines = [json.dumps(dict(zip(header, row))) for row in table]
    else:
        lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in table]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def docs(path: Path) -> Dict[str, Dict[str, float]]:
    """Text -> cats of every doc in a DocBin."""
    loaded = DocBin().from_disk(path).get_docs(spacy.blank("en").vocab)
    return {doc.text: dict(doc.cats) for doc in loaded}


def run(args: List[object]):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    result.text = " ".join(result.output.split())  # wasabi wraps long messages
    return result


def one_failure(output: str) -> bool:
    """A single failure message (however wasabi wrapped it) and no traceback."""
    return output.count("✘") == 1 and "Traceback" not in output


def files(tmp_path: Path, role: str, form: str) -> Dict[str, Path]:
    """Source, target and target test files; the ``role`` file holds one row whose labels
    cell is written in ``form``."""
    suffix, cell = FORMS[form]
    tables = {
        "source": rows(40, 0, "source"),
        "target": rows(30, 1, "target"),
        "test": rows(15, 2, "test"),
    }
    tables[role].insert(3, [BLANK_TEXT, cell])
    return {
        name: write(tmp_path / f"{name}{suffix if name == role else '.csv'}", table)
        for name, table in tables.items()
    }


# --------------------------------------------------------------------------------------------
# Issue 23: every form of "no known positive", in every kind of file


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("role", ["source", "target", "test"])
def test_a_blank_labels_cell_is_a_kept_row_without_positives(
    tmp_path: Path, role: str, form: str
) -> None:
    paths = files(tmp_path, role, form)
    out = tmp_path / "out"
    stats = prepare_files(
        paths["source"],
        paths["target"],
        out,
        text_column="text",
        labels_column="labels",
        target_test_path=paths["test"],
        quiet=True,
    )
    read = stats["reads"]["target_test" if role == "test" else role]
    assert read["rows"] == read["kept"] and read["skipped"] == {}
    split_files = {
        "source": ["source_train.spacy", "source_test.spacy"],
        "target": ["target_train.spacy"],
        "test": ["target_test.spacy"],
    }[role]
    written = {}
    for filename in split_files:
        written.update(docs(out / filename))
    # the row is there, with every label 0.0: unlabeled in the partial target, negative
    # in the fully labelled source and test file
    assert written[BLANK_TEXT] == {label: 0.0 for label in LABELS}


def test_blank_cells_and_empty_lists_give_the_same_corpus(tmp_path: Path) -> None:
    source = write(tmp_path / "source.csv", rows(40, 0, "source"))
    target_rows = rows(30, 1, "target")
    for i in range(0, 30, 3):
        target_rows[i][1] = "[]"
    with_lists = write(tmp_path / "lists.csv", target_rows)
    with_blanks = write(
        tmp_path / "blanks.csv", [[t, "" if c == "[]" else c] for t, c in target_rows]
    )
    assert "," + "\n" in with_blanks.read_text(encoding="utf8")  # the cells are really empty
    common = {"text_column": "text", "labels_column": "labels", "quiet": True}
    first = prepare_files(source, with_lists, tmp_path / "a", valid_fraction=0.2, **common)
    second = prepare_files(source, with_blanks, tmp_path / "b", valid_fraction=0.2, **common)
    for filename in first["files"].values():
        if filename.endswith(".spacy"):
            assert docs(tmp_path / "a" / filename) == docs(tmp_path / "b" / filename), filename
    assert first["splits"] == second["splits"]
    assert first["reads"]["target"]["without_known_positive"] == 10


def test_label_columns_blank_is_unknown_in_the_target_and_an_error_elsewhere(
    tmp_path: Path,
) -> None:
    header = ("text", *LABELS)
    source = [[f"source {i}", i % 2, (i + 1) % 2, int(i % 3 == 0)] for i in range(30)]
    target = [[f"target {i}", int(i % 4 == 0), int(i % 4 == 1), int(i % 4 == 2)] for i in range(20)]
    target[5] = ["target blank", "", 1, "  "]
    s = write(tmp_path / "s.csv", source, header)
    t = write(tmp_path / "t.csv", target, header)
    out = tmp_path / "out"
    base = [
        "prepare-files",
        s,
        t,
        out,
        "--text-column",
        "text",
        "--label-columns",
        ",".join(LABELS),
    ]
    result = run(base)
    assert result.exit_code == 0, result.output
    assert docs(out / "target_train.spacy")["target blank"] == {
        "billing": 0.0,
        "delivery": 1.0,
        "product": 0.0,
    }
    # the same target as a fully labelled study, and the source itself, must say 0 or 1
    study = run([*base, "--ratio", "0.5"])
    assert study.exit_code == 1 and one_failure(study.output)
    assert f"{t}, line 7, column 'billing': empty label cell" in study.text
    assert "1 more such cell(s) in this file, e.g. line 7, column 'product'" in study.text
    source[2][2] = ""
    write(tmp_path / "s.csv", source, header)
    broken = run(base)
    assert broken.exit_code == 1 and one_failure(broken.output)
    assert f"{s}, line 4, column 'delivery': empty label cell" in broken.text
    assert "Fill in the empty cells" in broken.text


def test_prepare_summary_of_a_target_with_half_its_cells_blank(tmp_path: Path) -> None:
    source = write(tmp_path / "source.csv", rows(40, 0, "source"))
    target_rows = rows(60, 1, "target")
    for i in range(1, 60, 2):
        target_rows[i][1] = ""
    target = write(tmp_path / "target.csv", target_rows)
    result = run(
        ["prepare-files", source, target, tmp_path / "out", "--text-column", "text",
         "--labels-column", "labels"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        f"target ({target}): 60 rows read, 60 kept, 30 with a known positive, 30 without"
        in result.text
    )
    assert "dropped: none" in result.text and "--max-drop-share" not in result.text
    stats = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf8"))
    read = stats["reads"]["target"]
    assert (read["rows"], read["kept"], read["with_known_positive"]) == (60, 60, 30)
    assert read["without_known_positive"] == 30 and sum(read["positives"].values()) > 30


def test_dropped_rows_are_named_with_their_first_row_numbers(tmp_path: Path) -> None:
    source = write(tmp_path / "source.csv", rows(40, 0, "source"))
    target_rows = rows(30, 1, "target")
    target_rows[4][0] = "  "
    target = write(tmp_path / "target.csv", target_rows)
    args = ["prepare-files", source, target, tmp_path / "out", "--text-column", "text"]
    result = run([*args, "--labels-column", "labels"])
    assert result.exit_code == 0, result.output
    assert "30 rows read, 29 kept" in result.text
    assert "dropped: 1 x empty_text (e.g. target.csv:6)" in result.text


def test_a_target_label_without_known_positive_warns_and_none_at_all_fails(
    tmp_path: Path,
) -> None:
    source = write(tmp_path / "source.csv", rows(40, 0, "source"))
    no_product = [[f"target {i}", ["billing", "delivery", ""][i % 3]] for i in range(30)]
    target = write(tmp_path / "target.csv", no_product)
    args = ["--text-column", "text", "--labels-column", "labels"]
    result = run(["prepare-files", source, target, tmp_path / "out", *args])
    assert result.exit_code == 0, result.output
    assert "label(s) 'product' have no known positive in the target data" in result.text
    assert "cannot be adapted" in result.text
    stats = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf8"))
    assert any("'product'" in line for line in stats["warnings"])
    nothing = write(tmp_path / "nothing.csv", [[f"target {i}", ""] for i in range(30)])
    failed = run(["prepare-files", source, nothing, tmp_path / "out", *args])
    assert failed.exit_code == 1 and one_failure(failed.output)
    assert f"The target data ({nothing}) has no known positive for any label" in failed.text
    checked = run(["study", "check", "--source-file", source, "--target-file", nothing,
                   "--labels-column", "labels"])  # fmt: skip
    assert checked.exit_code == 1 and one_failure(checked.output)
    assert "has no known positive for any label" in checked.text


# --------------------------------------------------------------------------------------------
# Issue 27: repeated texts, rare source labels, source cells that are not label values


def test_repeated_source_texts_stay_on_one_side_of_the_split(tmp_path: Path) -> None:
    table = rows(40, 0, "source")
    table += [[text, labels] for text, labels in table[:12]]  # 12 texts twice
    table += [[table[0][0], table[0][1]]]  # one of them three times
    source = write(tmp_path / "source.csv", table)
    target = write(tmp_path / "target.csv", rows(30, 1, "target"))
    out = tmp_path / "out"
    result = run(
        ["prepare-files", source, target, out, "--text-column", "text", "--labels-column",
         "labels", "--test-fraction", "0.3"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    train, test = docs(out / "source_train.spacy"), docs(out / "source_test.spacy")
    assert not set(train) & set(test)
    assert len(train) + len(test) == 40  # docs(): one entry per distinct text
    stats = json.loads((out / "stats.json").read_text(encoding="utf8"))
    repeated = stats["domains"]["source"]["repeated_texts"]
    assert repeated["texts"] == 12 and repeated["rows"] == 25
    assert "source: 12 text(s) occur more than once (25 rows)" in result.text
    assert not any("source_train/source_test" in line for line in stats["warnings"])
    again = prepare_files(
        source, target, tmp_path / "again", text_column="text", labels_column="labels",
        test_fraction=0.3, quiet=True,
    )  # fmt: skip
    assert again["checksums"] == stats["checksums"]  # deterministic
    checked = run(["study", "check", "--source-file", source, "--target-file", target,
                   "--labels-column", "labels"])  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert "12 text(s) occur more than once (25 rows)" in checked.text


def test_keeping_duplicates_together_leaves_a_split_without_them_alone() -> None:
    rng = numpy.random.default_rng(0)
    train, test = split_train_test(50, 0.2, rng)
    texts = [f"t{i}" for i in range(50)]
    same = keep_duplicates_together(train, test, texts)
    assert numpy.array_equal(same[0], train) and numpy.array_equal(same[1], test)
    assert same[2] == 0
    texts[int(test[0])] = texts[int(train[0])]  # a copy of a train text in test
    new_train, new_test, moved = keep_duplicates_together(train, test, texts)
    first = min(int(test[0]), int(train[0]))
    side = new_test if first in test else new_train
    assert {int(test[0]), int(train[0])} <= set(side.tolist()) and moved == 1
    # everything one text: no split can keep it together, the split stays as it was
    kept = keep_duplicates_together(train, test, ["x"] * 50)
    assert kept[2] == -1 and numpy.array_equal(kept[1], test)


def test_a_target_test_file_sharing_texts_with_target_train_warns(tmp_path: Path) -> None:
    source = write(tmp_path / "source.csv", rows(40, 0, "source"))
    target_rows = rows(30, 1, "target")
    test_rows = rows(15, 2, "test") + target_rows[:2]
    target = write(tmp_path / "target.csv", target_rows)
    test = write(tmp_path / "test.csv", test_rows)
    result = run(
        ["prepare-files", source, target, tmp_path / "out", "--target-test", test,
         "--text-column", "text", "--labels-column", "labels"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 text(s) are in both target_train and target_test" in result.text
    assert "Deduplicate the files" in result.text


def test_a_source_label_with_few_positives_is_named_with_its_count(tmp_path: Path) -> None:
    table = rows(40, 0, "source")
    table[7][1] += "|refund"
    table[9][1] += "|refund"
    source = write(tmp_path / "source.csv", table)
    target = write(tmp_path / "target.csv", rows(30, 1, "target") + [["refund please", "refund"]])
    out = tmp_path / "out"
    args = ["--source-file", source, "--target-file", target, "--labels-column", "labels"]
    result = run(["prepare-files", source, target, out, "--text-column", "text", *args[4:]])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text(encoding="utf8"))
    count = stats["splits"]["source_train"]["positives"]["refund"]
    assert count < MIN_SOURCE_POSITIVES
    expected = f"source_train: label(s) 'refund' ({count}) have fewer than {MIN_SOURCE_POSITIVES}"
    assert expected in result.text and "⚠" in result.output
    assert any(line.startswith(expected) for line in stats["warnings"])
    assert "Traceback" not in result.output
    checked = run(["study", "check", *args])
    assert checked.exit_code == 0, checked.output
    assert "label(s) 'refund' (2) have fewer than" in checked.text


def test_a_source_label_value_of_2_is_an_error_naming_file_line_and_column(tmp_path: Path) -> None:
    header = ("text", *LABELS)
    source = [[f"source {i}", i % 2, (i + 1) % 2, int(i % 3 == 0)] for i in range(30)]
    source[6][2] = 2
    source[11][3] = "maybe"
    s = write(tmp_path / "s.csv", source, header)
    t = write(tmp_path / "t.csv", [[f"target {i}", 1, 0, ""] for i in range(10)], header)
    columns = ["--text-column", "text", "--label-columns", ",".join(LABELS)]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "spacy_dallmi", "prepare-files", str(s), str(t), str(out)]
    command += columns
    done = subprocess.run(command, capture_output=True, text=True)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, output
    assert one_failure(output) and "E851" not in output
    assert f"{s}, line 8, column 'delivery': '2' is not a label value" in output
    assert "1 more such cell(s) in this file, e.g. line 13, column 'product'" in output
    assert "holds 0 or 1" in output and "fix these cells" in output
    assert not (out / "stats.json").exists()
    checked = run(["study", "check", "--source-file", s, "--target-file", t, *columns[2:]])
    assert checked.exit_code == 1 and one_failure(checked.output)
    assert "line 8, column 'delivery': '2' is not a label value" in checked.text


def test_a_source_labels_cell_that_is_not_a_list_is_an_error(tmp_path: Path) -> None:
    table = rows(40, 0, "source")
    table[3][1] = '"[billing"'
    source = write(tmp_path / "source.csv", table)
    target = write(tmp_path / "target.csv", rows(30, 1, "target"))
    with pytest.raises(DataPreparationError) as error:
        prepare_files(source, target, tmp_path / "o", text_column="text", labels_column="labels")
    message = str(error.value)
    assert f"{source}, line 5, column 'labels': '[billing' is not a label value" in message
    assert "label names (a|b" in message


@pytest.mark.parametrize("cell", ["", "  ", None, "[]", '""', "''", []])
def test_every_blank_form_parses_to_no_positive(cell) -> None:
    from spacy_dallmi.experiments.readers import parse_flag, parse_label_list

    assert parse_label_list(cell) == []
    if cell != "[]" and cell != []:
        assert parse_flag(cell) is None  # unknown or an error, by file: see read_table

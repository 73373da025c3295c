"""Users' own files: already partial target labels, a separate target test file, and the input
checks that turn silent wrong results into errors (issue 10)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_dallmi.experiments.cli import app
from spacy_dallmi.experiments.corpus import prepare_files
from spacy_dallmi.experiments.readers import DataPreparationError, read_table

LABELS = ["anger", "joy", "fear"]


def write_csv(path: Path, header: List[str], rows: List[List[object]]) -> Path:
    lines = [",".join(header)] + [",".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def domain(path: Path, n: int, seed: int, labels: List[str] = LABELS) -> Path:
    """A CSV in which every label has positives and some rows have none."""
    rng = numpy.random.default_rng(seed)
    matrix = rng.random((n, len(labels))) < 0.4
    matrix[numpy.arange(len(labels)), numpy.arange(len(labels))] = True
    rows = [[f"text {seed} number {i}", *map(int, row)] for i, row in enumerate(matrix)]
    return write_csv(path, ["text", *labels], rows)


def docs(path: Path) -> List[spacy.tokens.Doc]:
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def run(args: List[str]):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    result.text = " ".join(result.output.split())  # wasabi wraps long messages
    return result


def one_message(output: str) -> bool:
    """A single failure message (however wasabi wrapped it) and no traceback."""
    return output.count("✘") == 1 and "Traceback" not in output


# --------------------------------------------------------------------------------------------
# Partially labelled target data, the real use case


def test_partial_target_is_taken_as_given_without_a_test_split(tmp_path: Path) -> None:
    source = domain(tmp_path / "s.csv", 30, 0)
    target = domain(tmp_path / "t.csv", 20, 1)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "target_test.spacy").write_bytes(b"stale")  # from an earlier run into this folder
    stats = prepare_files(source, target, out, text_column="text", label_columns=LABELS, quiet=True)
    written = sorted(path.name for path in out.glob("*.spacy"))
    assert written == ["source_test.spacy", "source_train.spacy", "target_train.spacy"]
    assert stats["target_test"] is None and stats["hiding"] is None
    assert stats["removed_stale_files"] == ["target_test.spacy"]
    assert any("no test split was carved" in line for line in stats["changes"])
    # Every target row is a training doc, with exactly the file's labels.
    expected = read_table(target, text_column="text", label_columns=LABELS)
    train = docs(out / "target_train.spacy")
    assert [doc.text for doc in train] == expected.texts
    got = [[doc.cats[label] == 1.0 for label in LABELS] for doc in train]
    assert got == expected.matrix.tolist()
    assert stats["domains"]["target"]["train"] == 20 and stats["domains"]["target"]["test"] == 0


def test_separate_target_test_file(tmp_path: Path) -> None:
    source = domain(tmp_path / "s.csv", 30, 0)
    target = domain(tmp_path / "t.csv", 20, 1)
    test = domain(tmp_path / "test.csv", 12, 2)
    out = tmp_path / "out"
    result = run(
        ["prepare-files", source, target, out, "--text-column", "text", "--label-columns",
         "anger,joy,fear", "--target-test", test, "--max-target-test-docs", "10",
         "--max-source-docs", "8", "--shared-dir", tmp_path / "shared"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text(encoding="utf8"))
    assert stats["target_test"] == f"file: {test}"
    assert [len(docs(out / f"{n}.spacy")) for n in ("target_train", "target_test")] == [20, 10]
    assert stats["splits"]["target_test"]["capped"] == 2
    assert stats["splits"]["source_train"]["docs"] == 8
    assert stats["splits"]["source_test"]["docs"] == 6  # 20% of 30, under the cap
    test_texts = {doc.text for doc in docs(out / "target_test.spacy")}
    assert test_texts <= set(read_table(test, text_column="text", label_columns=LABELS).texts)
    shared = sorted(path.name for path in (tmp_path / "shared").iterdir())
    assert shared == ["source_test.spacy", "source_train.spacy", "target_test.spacy"]


def test_a_cap_of_0_is_no_cap(tmp_path: Path) -> None:
    source, target = domain(tmp_path / "s.csv", 30, 0), domain(tmp_path / "t.csv", 20, 1)
    out = tmp_path / "out"
    result = run(
        ["prepare-files", source, target, out, "--text-column", "text", "--label-columns",
         "anger,joy,fear", "--max-source-docs", "0", "--max-target-docs", "0"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text(encoding="utf8"))
    assert stats["splits"]["source_train"]["docs"] == 24  # 80% of 30, uncapped


def test_a_target_without_any_known_positive_is_an_error(tmp_path: Path) -> None:
    source = domain(tmp_path / "s.csv", 10, 0)
    target = write_csv(
        tmp_path / "t.csv", ["text", *LABELS], [[f"t{i}", 0, 0, 0] for i in range(5)]
    )
    with pytest.raises(DataPreparationError, match="no known positive"):
        prepare_files(source, target, tmp_path / "o", text_column="text", label_columns=LABELS)


# --------------------------------------------------------------------------------------------
# Input checks


@pytest.mark.parametrize("header", [["text", "joy", "text"], ["text", "joy", "joy"]])
def test_duplicate_column_names_are_an_error_naming_them(tmp_path: Path, header) -> None:
    path = write_csv(tmp_path / "dup.csv", header, [["a", 1, "b"], ["c", 0, "d"]])
    repeated = header[2]
    with pytest.raises(DataPreparationError, match=rf"{path}.*'{repeated}' more than once"):
        read_table(path, text_column="text", label_columns=["joy"])


def test_duplicate_jsonl_keys_are_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"text": "a", "joy": 1}\n{"text": "b", "joy": 0, "joy": 1}\n', "utf8")
    with pytest.raises(DataPreparationError, match=r"dup\.jsonl, line 2: key\(s\) 'joy'"):
        read_table(path, text_column="text", label_columns=["joy"])


def test_too_many_dropped_rows_fail_with_the_reasons(tmp_path: Path) -> None:
    source = domain(tmp_path / "s.csv", 20, 0)
    rows = [[f"t{i}", "Y" if i % 2 else "N", 1, 0] for i in range(54)]
    rows += [[f"u{i}", 1, 1, 0] for i in range(6)]
    target = write_csv(tmp_path / "t.csv", ["text", *LABELS], rows)
    args = ["prepare-files", source, target, tmp_path / "out", "--text-column", "text"]
    args += ["--label-columns", ",".join(LABELS)]
    result = run(args)
    assert result.exit_code == 1
    assert "54 of 60 rows could not be used" in result.text
    assert "54 x unparseable_labels" in result.text and "t.csv:2" in result.text
    assert not (tmp_path / "out" / "stats.json").exists()
    assert run([*args, "--max-drop-share", "0.95"]).exit_code == 0


def test_non_utf8_input_names_file_and_line_and_encoding_fixes_it(tmp_path: Path) -> None:
    source = domain(tmp_path / "s.csv", 20, 0)
    target = tmp_path / "t.csv"
    lines = ["text,anger,joy,fear", "plain,1,0,0", "caf\xe9 cr\xe8me,0,1,0", "more,0,0,1"]
    target.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    args = ["prepare-files", source, target, tmp_path / "out", "--text-column", "text"]
    args += ["--label-columns", ",".join(LABELS), "--max-drop-share", "0.5"]
    result = run(args)
    assert result.exit_code == 1
    assert f"{target}, line 3: not valid utf-8-sig" in result.text
    assert "--encoding" in result.text
    assert run([*args, "--encoding", "latin-1"]).exit_code == 0
    texts = [doc.text for doc in docs(tmp_path / "out" / "target_train.spacy")]
    assert "café crème" in texts


def test_label_columns_with_commas_by_repeated_option_or_file(tmp_path: Path) -> None:
    names = ["anger, rage", "joy"]
    rows = [[f"t{i}", i % 2, 1 - i % 2] for i in range(12)]
    for side in ("s", "t"):
        path = tmp_path / f"{side}.csv"
        lines = ['text,"anger, rage",joy'] + [",".join(map(str, row)) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf8")
    listing = tmp_path / "columns.txt"
    listing.write_text("anger, rage\njoy\n", encoding="utf8")
    base = ["prepare-files", tmp_path / "s.csv", tmp_path / "t.csv"]
    for i, columns in enumerate(
        (
            ["--label-column", names[0], "--label-column", names[1]],
            ["--label-columns-file", listing],
        )
    ):
        out = tmp_path / f"out{i}"
        result = run([*base, out, "--text-column", "text", *columns])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "labels.json").read_text(encoding="utf8")) == names
    both = run([*base, tmp_path / "x", "--text-column", "text", "--label-column", "joy",
                "--label-columns", "joy"])  # fmt: skip
    assert both.exit_code == 1 and "one way" in both.text


# --------------------------------------------------------------------------------------------
# Commands that need the extra, or fail part-way


def test_report_without_matplotlib_is_one_clear_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from spacy_dallmi.experiments.study import Study, report\n"
        "report(Study(data_name='toy'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 1
    output = " ".join((done.stdout + done.stderr).split())
    assert one_message(output)
    assert 'The report needs matplotlib: pip install "spacy-dallmi[project]"' in output


def test_table_with_an_unknown_dataset_is_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run(["study", "table", "--dataset", "emotion"])
    assert result.exit_code == 1
    assert "Unknown dataset 'emotion'" in result.text and one_message(result.output)


def test_table_runs_every_seed_and_ratio_then_one_report(tmp_path: Path, monkeypatch) -> None:
    """Seeds form the outer loop; each cell runs adapt and baselines without a report, and
    the report comes once, from every cell's metrics files."""
    import spacy_dallmi.experiments.study as study

    monkeypatch.chdir(tmp_path)
    cells = []

    def fake(cell, with_report=True):
        assert not with_report
        cells.append((cell.seed, cell.ratio))
        folder = tmp_path / "metrics" / "emotions" / f"s{cell.seed}_{cell.ratio}"
        folder.mkdir(parents=True, exist_ok=True)
        for method, value in (("ft_partial", 0.5), ("ft_full", 0.7), ("dallmi", 0.6)):
            metrics = {"cats_macro_ap": value, "cats_macro_ap_rounded": value}
            metrics.update(cats_ap_per_type={"a": value}, cats_ap_skipped_labels=[])
            srsly.write_json(folder / f"{method}.json", {
                "method": method, "settings": {"ratio": cell.ratio, "seed": cell.seed},
                "n_docs": 10, "wall_seconds": 1.0, "epochs": [], "metrics": metrics})  # fmt: skip

    monkeypatch.setattr(study, "check", lambda found: [])
    monkeypatch.setattr(study, "run_adapt", fake)
    monkeypatch.setattr(study, "run_baselines", lambda cell, with_report: None)
    result = run(["study", "table", "--dataset", "emotions", "--options", "ratios=0.5,0.7"])
    assert result.exit_code == 0, result.output
    assert cells == [(0, 0.5), (0, 0.7), (1, 0.5), (1, 0.7)]
    report = (tmp_path / "reports" / "emotions.md").read_text(encoding="utf8")
    assert "| `dallmi` | – | 50.0% | – | 50.0% |" in report
    assert str(tmp_path) not in report

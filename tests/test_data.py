"""Tests of the data preparation: readers, label hiding, label sets, output files, CLI.

The built-in layouts are checked on the real data in ``../shared/datasets`` (relative to the
repository), with a small ``max_docs`` to stay fast; those tests are skipped when it is absent.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_dallmi.experiments.cli import app
from spacy_dallmi.experiments.corpus import OUTPUT_FILES, prepare_dataset, prepare_files
from spacy_dallmi.experiments.datasets import EMOTION_LABELS, MESH_ROOTS
from spacy_dallmi.experiments.protocol import (
    PrepareSettings,
    check_label_sets,
    hide_labels,
    split_train_test,
)
from spacy_dallmi.experiments.readers import (
    DataFileNotFoundError,
    DataPreparationError,
    LabelSetError,
    MissingColumnError,
    read_table,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(),
    reason=f"real datasets not found at {DATA_DIR} (fetch them with `spacy project assets`)",
)


def _write_rows(path: Path, header: list[str], rows: list[list[Any]], delimiter: str) -> Path:
    with path.open("w", encoding="utf8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
        encoding="utf8",
    )
    return path


def _write_domain(path: Path, labels: list[str], n: int, seed: int, prefix: str) -> Path:
    """A small synthetic domain in which every label has positives."""
    rng = np.random.default_rng(seed)
    matrix = rng.random((n, len(labels))) < 0.4
    matrix[np.arange(len(labels)), np.arange(len(labels))] = True
    rows = [[f"{prefix} text number {i}", *map(int, row)] for i, row in enumerate(matrix)]
    return _write_rows(path, ["text", *labels], rows, ",")


# --------------------------------------------------------------------------------------------
# Readers


def test_csv_label_columns_counts_skipped_rows(tmp_path: Path) -> None:
    path = _write_rows(
        tmp_path / "data.csv",
        ["id", "text", "a", "b"],
        [
            [1, "good one", 1, 0],
            [2, "", 1, 1],
            [3, "   ", 0, 1],
            [4, "no label cell", "", 1],
            [5, "bad label", "maybe", 0],
            [6, "all negative", 0, 0],
            [7, "both, true/false", "true", "1.0"],
        ],
        ",",
    )
    # partially labelled (a target at ratio 0): the blank cell is unknown, its row is kept
    corpus = read_table(path, text_column="text", label_columns=["a", "b"], partial=True)
    assert corpus.labels == ["a", "b"]
    assert corpus.texts == ["good one", "no label cell", "all negative", "both, true/false"]
    assert corpus.matrix.tolist() == [[True, False], [False, True], [False, False], [True, True]]
    report = corpus.report
    assert report.rows == 7 and report.kept == 4 and report.with_positive == 3
    assert report.positives == {"a": 2, "b": 2}
    assert report.skipped_counts == {"empty_text": 2, "unparseable_labels": 1}
    assert report.skipped["unparseable_labels"] == ["data.csv:6"]
    # fully labelled (source, test file): a blank 0/1 cell is an error naming where it is
    with pytest.raises(DataPreparationError, match=r"data\.csv, line 5, column 'a': empty"):
        read_table(path, text_column="text", label_columns=["a", "b"])


def test_tsv_labels_column_parses_all_list_styles(tmp_path: Path) -> None:
    path = _write_rows(
        tmp_path / "data.tsv",
        ["text", "labels"],
        [
            ["comma", "joy, anger"],
            ["semicolon", "fear;joy"],
            ["pipe", "anger|fear"],
            ["json", '["love"]'],
            ["python list", "['joy', 'love']"],
            ["explicit empty list", "[]"],
            ["blank", ""],
            ["broken list", "[joy"],
            ["only separators", ",;"],
            ["", "joy"],
        ],
        "\t",
    )
    corpus = read_table(path, text_column="text", labels_column="labels")
    assert corpus.labels == ["anger", "fear", "joy", "love"]
    positives = [
        sorted(np.asarray(corpus.labels)[row].tolist()) for row in corpus.matrix.astype(bool)
    ]
    assert dict(zip(corpus.texts, positives)) == {
        "comma": ["anger", "joy"],
        "semicolon": ["fear", "joy"],
        "pipe": ["anger", "fear"],
        "json": ["love"],
        "python list": ["joy", "love"],
        "explicit empty list": [],
        "blank": [],
    }
    assert corpus.report.skipped_counts == {"empty_text": 1, "unparseable_labels": 2}


def test_jsonl_with_label_columns_and_with_label_list(tmp_path: Path) -> None:
    columns = _write_jsonl(
        tmp_path / "columns.jsonl",
        [
            {"body": "one", "x": 1, "y": False},
            {"body": "two", "x": 0},
            "{not json",
            {"body": None, "x": 1, "y": 1},
            {"body": "three", "x": 2, "y": 0},
            {"body": "four", "x": 0.0, "y": 1.0},
        ],
    )
    corpus = read_table(columns, text_column="body", label_columns=["x", "y"], partial=True)
    assert corpus.texts == ["one", "two", "four"]
    assert corpus.matrix.tolist() == [[True, False], [False, False], [False, True]]
    assert corpus.report.skipped_counts == {
        "empty_text": 1,
        "invalid_json": 1,
        "unparseable_labels": 1,
    }
    with pytest.raises(DataPreparationError, match=r"columns\.jsonl, line 2, column 'y'"):
        read_table(columns, text_column="body", label_columns=["x", "y"])
    lists = _write_jsonl(
        tmp_path / "lists.jsonl",
        [
            {"text": "a", "tags": ["x", "y"]},
            {"text": "b", "tags": "y"},
            {"text": "c", "tags": [1]},
            {"text": "d"},
        ],
    )
    corpus = read_table(lists, text_column="text", labels_column="tags")
    assert corpus.labels == ["x", "y"] and corpus.texts == ["a", "b", "d"]
    assert corpus.matrix.tolist() == [[True, True], [False, True], [False, False]]
    assert corpus.report.skipped_counts == {"unparseable_labels": 1}


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "data.txt", ["text", "a"], [["t", 1]], "\t")
    with pytest.raises(DataPreparationError, match="format"):
        read_table(path, text_column="text", label_columns=["a"])
    corpus = read_table(path, text_column="text", label_columns=["a"], file_format="tsv")
    assert corpus.texts == ["t"]


def test_wrong_column_lists_columns_found(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "data.csv", ["sentence", "a", "b"], [["t", 1, 0]], ",")
    with pytest.raises(MissingColumnError) as error:
        read_table(path, text_column="text", label_columns=["a", "b"])
    message = str(error.value)
    assert "'text'" in message and str(path) in message
    assert "Columns found: 'sentence', 'a', 'b'" in message
    jsonl = _write_jsonl(tmp_path / "data.jsonl", [{"text": "t", "labels": ["a"]}])
    with pytest.raises(MissingColumnError, match="Columns found: 'text', 'labels'"):
        read_table(jsonl, text_column="text", labels_column="tags")


def test_missing_file_names_path_and_asset(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "data.csv"
    with pytest.raises(FileNotFoundError) as error:
        read_table(path, text_column="t", label_columns=["a"], hint="Fetch asset 'foo'.")
    assert isinstance(error.value, DataFileNotFoundError)
    assert str(path) in str(error.value) and "Fetch asset 'foo'." in str(error.value)
    with pytest.raises(DataFileNotFoundError, match="spacy project assets"):
        prepare_dataset("pubmed", tmp_path, tmp_path / "out", ratio=0.5, quiet=True)


def test_exactly_one_label_source_is_required(tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "d.csv", ["text", "a"], [["t", 1]], ",")
    with pytest.raises(DataPreparationError, match="exactly one"):
        read_table(path, text_column="text")
    with pytest.raises(DataPreparationError, match="exactly one"):
        read_table(path, text_column="text", label_columns=["a"], labels_column="a")


# --------------------------------------------------------------------------------------------
# Label hiding

RATIOS = st.one_of(st.sampled_from([0.5, 0.7, 0.9]), st.floats(0.01, 0.99))
MATRICES = arrays(
    np.int8,
    st.tuples(st.integers(0, 30), st.integers(1, 8)),
    elements=st.integers(0, 1),
)


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _check_hiding(full: np.ndarray, ratio: float, removal: str, seed: int) -> None:
    result = hide_labels(full, ratio, removal, seed)
    positive = full.astype(bool)
    partial = result.partial.astype(bool)
    # Only positives are hidden, nothing new appears, and the masks describe the change.
    assert set(np.unique(result.partial).tolist()) <= {0, 1}
    assert not (partial & ~positive).any()
    assert not (result.hidden & ~positive).any()
    assert not (result.restored & ~positive).any()
    assert not (result.hidden & result.restored).any()
    assert np.array_equal(partial, positive & ~result.hidden)
    # Counts add up.
    assert result.positives_per_label.tolist() == positive.sum(axis=0).tolist()
    known = partial.sum(axis=0)
    assert (known + result.hidden_per_label).tolist() == positive.sum(axis=0).tolist()
    assert result.n_hidden == int(result.hidden_per_label.sum())
    assert result.n_restored == int(result.restored_per_label.sum())
    # Every label with a positive keeps one; a restored one is that label's only known positive.
    had = positive.any(axis=0)
    assert (known[had] >= 1).all()
    assert (result.restored_per_label <= 1).all()
    assert (known[result.restored_per_label == 1] == 1).all()
    # The requested share is met up to rounding and restorations:
    #   per_sample: each doc with k positives draws floor(r*k) or ceil(r*k) (hidden + restored)
    #     and the coupled rounding keeps the total draw D within 1 of r*P, so
    #     -(1 + R) <= H - r*P <= 1 with H = D - R hidden and R restored;
    #   per_label: each label draws round_half_up(r*n) (hidden + restored).
    drawn = result.hidden | result.restored
    total = positive.sum()
    if removal == "per_sample":
        k = positive.sum(axis=1)
        per_doc = drawn.sum(axis=1)
        assert (per_doc >= np.floor(ratio * k - 1e-9)).all()
        assert (per_doc <= np.ceil(ratio * k + 1e-9)).all()
        gap = result.n_hidden - ratio * total
        assert -(1 + result.n_restored) - 1e-9 <= gap <= 1 + 1e-9
    else:
        expected = [_round_half_up(ratio * n) for n in positive.sum(axis=0)]
        assert drawn.sum(axis=0).tolist() == expected
    # Deterministic for a seed, and a Generator works like its seed.
    again = hide_labels(full, ratio, removal, np.random.default_rng(seed))
    assert np.array_equal(again.partial, result.partial)
    assert np.array_equal(again.restored, result.restored)


@settings(max_examples=150, deadline=None)
@given(
    full=MATRICES,
    ratio=RATIOS,
    removal=st.sampled_from(["per_sample", "per_label"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_hiding_invariants(full: np.ndarray, ratio: float, removal: str, seed: int) -> None:
    _check_hiding(full, ratio, removal, seed)


@pytest.mark.parametrize("removal", ["per_sample", "per_label"])
@pytest.mark.parametrize("ratio", [0.5, 0.7, 0.9])
def test_hiding_meets_ratio_on_a_large_matrix(ratio: float, removal: str) -> None:
    rng = np.random.default_rng(1)
    full = (rng.random((2000, 10)) < rng.random(10) * 0.5).astype(np.int8)
    _check_hiding(full, ratio, removal, seed=5)
    result = hide_labels(full, ratio, removal, 5)
    # 10 labels: per_sample is within (1 + R) / P, per_label within (5 + R) / P of the request.
    slack = (1 if removal == "per_sample" else 5) + result.n_restored
    assert abs(result.achieved_ratio - ratio) <= slack / result.n_positives
    other = hide_labels(full, ratio, removal, 6)
    assert not np.array_equal(other.partial, result.partial)


def test_per_sample_hides_each_documents_share() -> None:
    result = hide_labels(np.ones((50, 10), dtype=int), 0.7, "per_sample", 0)
    assert result.hidden.sum(axis=1).tolist() == [7] * 50
    singles = hide_labels(np.ones((100, 1), dtype=int), 0.5, "per_sample", 0)
    assert singles.n_hidden == 50 and singles.n_restored == 0


def test_last_positive_of_a_label_is_restored() -> None:
    full = np.array([[1, 1], [0, 1], [0, 1], [0, 1]])
    result = hide_labels(full, 0.9, "per_sample", 0)
    assert result.partial[0, 0] == 1
    assert result.restored_per_label[0] == 1
    per_label = hide_labels(np.array([[1, 1]] + [[0, 1]] * 9), 0.5, "per_label", 0)
    # Label 0: round(0.5 * 1) = 1 drawn, restored. Label 1: round(0.5 * 10) = 5 hidden.
    assert per_label.hidden_per_label.tolist() == [0, 5]
    assert per_label.restored_per_label.tolist() == [1, 0]


def test_no_positives_means_nothing_to_hide() -> None:
    result = hide_labels(np.zeros((3, 2), dtype=int), 0.5, "per_label", 0)
    assert result.n_hidden == 0 and math.isnan(result.achieved_ratio)


@pytest.mark.parametrize("ratio", [0, 1, 1.0, -0.2, 1.5, float("nan"), True])
def test_bad_ratio_names_the_value(ratio: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(f"got {ratio!r}")):
        hide_labels(np.ones((2, 2)), ratio, "per_sample", 0)
    if ratio == 0:
        # 0 is a setting, not a hiding ratio: the target's labels are already partial.
        assert not PrepareSettings("files", ratio).hides
        with pytest.raises(ValueError, match=re.escape(f"got {ratio!r}")):
            prepare_dataset("emotions", DATA_DIR, "unused", ratio=ratio)
        return
    with pytest.raises(ValueError, match=re.escape(f"got {ratio!r}")):
        PrepareSettings("emotions", ratio)


def test_bad_removal_and_matrix_are_rejected() -> None:
    with pytest.raises(ValueError, match="'randomly'"):
        hide_labels(np.ones((2, 2)), 0.5, "randomly", 0)
    with pytest.raises(ValueError, match="0/1"):
        hide_labels(np.full((2, 2), 2), 0.5, "per_label", 0)


def test_split_is_80_20_and_seeded() -> None:
    train, test = split_train_test(101, 0.2, np.random.default_rng(0))
    assert len(test) == 20 and len(train) == 81
    assert sorted([*train, *test]) == list(range(101))
    again = split_train_test(101, 0.2, np.random.default_rng(0))
    assert np.array_equal(again[1], test)


# --------------------------------------------------------------------------------------------
# Label sets


def test_unknown_target_label_is_named_and_mapping_fixes_it() -> None:
    with pytest.raises(LabelSetError) as error:
        check_label_sets(["anger", "joy"], ["anger", "happiness"])
    assert "happiness" in str(error.value) and "label_map" in str(error.value)
    assert check_label_sets(["anger", "joy"], ["anger", "happiness"], {"happiness": "joy"}) == {
        "happiness": "joy"
    }
    with pytest.raises(LabelSetError, match="mapped to glee"):
        check_label_sets(["anger", "joy"], ["anger", "happiness"], {"happiness": "glee"})
    with pytest.raises(LabelSetError, match="happyness"):
        check_label_sets(["anger", "joy"], ["anger", "joy"], {"happyness": "joy"})
    with pytest.raises(LabelSetError, match="same name: joy"):
        check_label_sets(["joy"], ["glad", "happy"], {"glad": "joy", "happy": "joy"})


def test_prepare_files_label_map_and_restriction(tmp_path: Path) -> None:
    source = _write_domain(tmp_path / "source.csv", ["anger", "joy", "fear"], 40, 0, "reddit")
    target = _write_domain(tmp_path / "target.csv", ["anger", "happiness", "fear"], 40, 1, "tw")
    common = {"text_column": "text", "ratio": 0.5, "quiet": True}
    with pytest.raises(LabelSetError, match="happiness"):
        prepare_files(
            source,
            target,
            tmp_path / "out",
            label_columns=["anger", "joy", "fear"],
            target_label_columns=["anger", "happiness", "fear"],
            **common,
        )
    stats = prepare_files(
        source,
        target,
        tmp_path / "out",
        label_columns=["anger", "joy", "fear"],
        label_map={"happiness": "joy"},
        **common,
    )
    assert stats["labels"] == ["anger", "joy", "fear"]
    assert stats["domains"]["target"]["renamed_target_labels"] == {"happiness": "joy"}
    _check_output(tmp_path / "out", stats)
    restricted = prepare_files(
        source,
        target,
        tmp_path / "restricted",
        label_columns=["anger", "joy", "fear"],
        label_map={"happiness": "joy"},
        labels=["fear", "anger"],
        **common,
    )
    assert restricted["labels"] == ["fear", "anger"]
    dropped = restricted["reads"]["target"]["dropped_labels"]
    assert list(dropped) == ["happiness"] and dropped["happiness"] > 0
    _check_output(tmp_path / "restricted", restricted)


# --------------------------------------------------------------------------------------------
# Output files


@functools.cache
def _vocab() -> spacy.vocab.Vocab:
    return spacy.blank("en").vocab


def _load(path: Path) -> list[spacy.tokens.Doc]:
    return list(DocBin().from_disk(path).get_docs(_vocab()))


def _check_output(out: Path, stats: dict[str, Any]) -> None:
    """DocBins, labels.json and stats.json exist and agree with each other."""
    labels = stats["labels"]
    assert json.loads((out / "labels.json").read_text(encoding="utf8")) == labels
    assert json.loads((out / "stats.json").read_text(encoding="utf8")) == stats
    docs = {
        name: _load(out / filename)
        for name, filename in OUTPUT_FILES.items()
        if name in stats["splits"]
    }
    for name, split_docs in docs.items():
        split = stats["splits"][name]
        assert len(split_docs) == split["docs"]
        for doc in split_docs:
            assert list(doc.cats) == labels
            assert set(doc.cats.values()) <= {0.0, 1.0}
        positives = {label: int(sum(doc.cats[label] for doc in split_docs)) for label in labels}
        assert positives == split["positives"]
    partial, full = docs["target_train"], docs["target_train_full"]
    assert [d.text for d in partial] == [d.text for d in full]
    hidden = stats["splits"]["target_train"]["hidden"]
    for label in labels:
        assert all(p.cats[label] <= f.cats[label] for p, f in zip(partial, full))
        full_count = stats["splits"]["target_train_full"]["positives"][label]
        partial_count = stats["splits"]["target_train"]["positives"][label]
        assert full_count - partial_count == hidden[label]
        assert partial_count >= 1 or full_count == 0
    hiding = stats["hiding"]
    assert hiding["hidden"] == sum(hidden.values())
    assert hiding["positives"] == sum(stats["splits"]["target_train_full"]["positives"].values())
    for side in ("source", "target"):
        domain = stats["domains"][side]
        assert domain["train"] + domain["test"] == domain["docs"]
        for part in ("train", "test"):
            split = stats["splits"][f"{side}_{part}"]
            assert split["docs"] + split["capped"] == domain[part]
    max_docs = stats["settings"]["max_docs"]
    if max_docs is not None:
        assert all(split["docs"] <= max_docs for split in stats["splits"].values())


def test_test_split_does_not_depend_on_ratio_or_removal(tmp_path: Path) -> None:
    source = _write_domain(tmp_path / "s.csv", ["a", "b"], 30, 0, "source")
    target = _write_domain(tmp_path / "t.csv", ["a", "b"], 30, 1, "target")
    texts = []
    for ratio, removal in ((0.5, "per_sample"), (0.9, "per_label")):
        out = tmp_path / f"out_{ratio}"
        stats = prepare_files(
            source,
            target,
            out,
            text_column="text",
            label_columns=["a", "b"],
            ratio=ratio,
            removal=removal,
            seed=3,
            quiet=True,
        )
        _check_output(out, stats)
        assert stats["settings"]["ratio"] == ratio and stats["settings"]["removal"] == removal
        texts.append([d.text for d in _load(out / "target_test.spacy")])
        texts.append([d.text for d in _load(out / "target_train_full.spacy")])
    assert texts[0] == texts[2] and texts[1] == texts[3]


# --------------------------------------------------------------------------------------------
# Built-in layouts on the real data


@needs_data
def test_emotions_on_real_data(tmp_path: Path) -> None:
    stats = prepare_dataset("emotions", DATA_DIR, tmp_path, ratio=0.7, max_docs=40, quiet=True)
    _check_output(tmp_path, stats)
    assert stats["labels"] == list(EMOTION_LABELS)
    source, target = stats["reads"]["source"], stats["reads"]["target"]
    assert source["rows"] == 43410 + 5426 + 5427 and source["kept"] == source["rows"]
    assert target["rows"] == 6838 + 886 and target["kept"] == target["rows"]
    assert set(target["dropped_labels"]) == {"anticipation", "pessimism", "trust"}
    assert len(source["dropped_labels"]) == 20 and "neutral" in source["dropped_labels"]
    assert stats["dataset"]["target_labels_dropped"] == ["anticipation", "pessimism", "trust"]
    target_domain = dict(stats["domains"]["target"])
    assert target_domain.pop("positives")["anger"] == 2859
    assert target_domain.pop("repeated_texts")["texts"] == 0
    assert target_domain == {
        "docs": 7724,
        "train": 6179,
        "test": 1545,
        "renamed_target_labels": {},
        "source_labels_missing_in_target": [],
    }
    # GoEmotions repeats 166 texts (435 rows); the built-in split is kept as published
    repeated = stats["domains"]["source"]["repeated_texts"]
    assert repeated == {"texts": 166, "rows": 435, "moved_to_keep_together": 0}
    assert all(split["docs"] == 40 for split in stats["splits"].values())


@needs_data
def test_pubmed_on_real_data(tmp_path: Path) -> None:
    stats = prepare_dataset(
        "pubmed", DATA_DIR, tmp_path, ratio=0.5, removal="per_label", max_docs=40, quiet=True
    )
    _check_output(tmp_path, stats)
    assert stats["labels"] == list(MESH_ROOTS)
    details, read = stats["dataset"], stats["reads"]["pubmed"]
    assert details["unique_pmids"] == 2600
    assert (details["tagged_male"], details["tagged_female"]) == (1114, 1081)
    assert (details["tagged_both"], details["tagged_neither"]) == (804, 1209)
    assert details["both_to_source"] + details["both_to_target"] == 804
    assert read["rows"] == 3050
    assert read["skipped"] == {"duplicate_pmid": 450, "tagged_neither": 1209}
    source, target = stats["domains"]["source"]["docs"], stats["domains"]["target"]["docs"]
    assert source == 1114 - 804 + details["both_to_source"]
    assert target == 1081 - 804 + details["both_to_target"]
    assert source + target + 1209 == 2600
    assert abs(source - 710) < 50 and abs(target - 680) < 50
    other = prepare_dataset(
        "pubmed", DATA_DIR, tmp_path / "seed1", ratio=0.5, seed=1, max_docs=40, quiet=True
    )
    assert other["dataset"]["both_to_source"] != details["both_to_source"]
    assert other["domains"]["source"]["docs"] + other["domains"]["target"]["docs"] == 1391


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_prepare_files_with_label_map(tmp_path: Path) -> None:
    source = _write_domain(tmp_path / "s.csv", ["anger", "joy"], 20, 0, "source")
    target = _write_domain(tmp_path / "t.csv", ["anger", "happy"], 20, 1, "target")
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"happy": "joy"}), encoding="utf8")
    out = tmp_path / "out"
    args = ["prepare-files", str(source), str(target), str(out), "--text-column", "text"]
    args += ["--label-columns", "anger,joy", "--ratio", "0.5", "--max-docs", "10"]
    result = CliRunner().invoke(app, [*args, "--label-map", str(label_map)])
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text(encoding="utf8"))
    assert stats["labels"] == ["anger", "joy"] and stats["settings"]["max_docs"] == 10
    _check_output(out, stats)
    failed = CliRunner().invoke(app, [*args[:-4], "--ratio", "1.5"])
    assert failed.exit_code == 1 and "got 1.5" in failed.output

"""Ray Data batch inference: two local actors give single-process ``nlp.pipe``'s results."""

import json
import random

import pytest
import spacy
import typer
from typer.testing import CliRunner

from .util import CUES, FILLER, LABELS, save_trained_pipeline

ray = pytest.importorskip("ray")
pyarrow_parquet = pytest.importorskip("pyarrow.parquet")

from spacy_dallmi.classify import STATUS_COLUMN, ClassifyError, classify_command  # noqa: E402
from spacy_dallmi.ray import classify_file_with_ray, classify_with_ray  # noqa: E402

from .test_classify import ROWS, assert_fails_with, cli, read, write  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*were truncated")]

N_ROWS = 120


@pytest.fixture(scope="module")
def ray_session():
    # Workers' own log lines stay out of the driver's stdout: the tests read the command's
    # output, which a forwarded worker warning could otherwise split.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tiny_bert, tmp_path_factory):
    return save_trained_pipeline(tiny_bert, tmp_path_factory.mktemp("ray") / "model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(0)
    words = FILLER + sum(CUES.values(), [])
    rows = []
    for i in range(N_ROWS):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 40)))
        rows.append({"id": i, "text": "" if i % 17 == 5 else text})
    rows[7]["text"] = None
    folder = tmp_path_factory.mktemp("corpus")
    for part in range(2):
        lines = [json.dumps(row) for row in rows[part * 60 : (part + 1) * 60]]
        (folder / f"part{part}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf8")
    return folder, rows


def assert_matches_the_pipeline(model, rows, out, bucket_window=None):
    """Rows in input order, each ok row with the pipeline's own probabilities, others None."""
    assert [row["id"] for row in out] == list(range(N_ROWS))
    nlp = spacy.load(model)
    if bucket_window is not None:
        nlp.get_pipe("textcat").cfg["bucket_window"] = bucket_window
    texts = [row["text"] or "" for row in rows]
    for row, doc in zip(out, nlp.pipe(texts, batch_size=8)):
        probs = [row[f"prob_{label}"] for label in LABELS]
        if row[STATUS_COLUMN] == "ok":
            assert probs == pytest.approx([doc.cats[k] for k in LABELS], abs=1e-6)
        else:
            assert probs == [None] * len(LABELS)


def test_two_actors_equal_single_process(ray_session, model, corpus, tmp_path):
    folder, rows = corpus
    summary = classify_with_ray(
        model, [folder], tmp_path / "out", "text", workers=2, batch_size=8, rows_per_call=16
    )
    assert summary.rows == N_ROWS
    assert summary.statuses == {"ok": N_ROWS - 8, "empty": 7, "missing": 1}
    table = pyarrow_parquet.read_table(tmp_path / "out")
    out = table.to_pylist()
    assert_matches_the_pipeline(model, rows, out)
    assert str(table.schema.field("prob_joy").type) == "float"


def test_errors_name_the_problem(ray_session, model, corpus, tmp_path):
    folder, _ = corpus
    with pytest.raises(ClassifyError, match=r"no column 'body'.*\['id', 'text'\]"):
        classify_with_ray(model, [folder], tmp_path / "out", "body", workers=1)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.parquet").write_text("")
    with pytest.raises(ClassifyError, match="not empty"):
        classify_with_ray(model, [folder], tmp_path / "busy", "text", workers=1)


def test_command_with_ray_and_threshold(ray_session, model, corpus, tmp_path):
    folder, _ = corpus
    app = typer.Typer()
    app.command("classify")(classify_command)
    app.command("other")(lambda: None)
    args = ["classify", str(model), str(folder / "part0.jsonl"), str(tmp_path / "out") + "/"]
    args += ["--text-column", "text", "--ray", "--workers", "2", "--threshold", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = pyarrow_parquet.read_table(tmp_path / "out").to_pylist()
    assert len(out) == 60
    for row in out:
        if row[STATUS_COLUMN] == "ok":
            assert row["labels"] == [k for k in LABELS if row[f"prob_{k}"] >= 0.5]

    result = CliRunner().invoke(app, args)  # the folder exists now
    assert_fails_with(result, "not empty", "--overwrite")
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert len(pyarrow_parquet.read_table(tmp_path / "out").to_pylist()) == 60


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_command_with_ray_writes_one_file_equal_to_one_process(ray_session, model, tmp_path, fmt):
    source = write(tmp_path / "in.jsonl", ROWS)
    local, distributed = tmp_path / f"local.{fmt}", tmp_path / f"ray.{fmt}"
    options = ["--text-column", "text", "--threshold", "0.5"]
    assert cli(model, source, local, *options).exit_code == 0
    result = cli(model, source, distributed, *options, "--ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert f"Wrote {len(ROWS)} rows to {distributed}" in " ".join(result.output.split())
    assert distributed.is_file() and read(distributed) == read(local)
    if fmt != "parquet":
        assert distributed.read_bytes() == local.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["in.jsonl", local.name, distributed.name]
    )
    result = cli(model, source, distributed, *options, "--ray")
    assert_fails_with(result, f"{distributed} exists", "--overwrite")


def test_two_actors_one_file_equal_single_process(ray_session, model, corpus, tmp_path):
    """Many calls on two actors (windows of 8 rows), from a folder of inputs, in order."""
    folder, rows = corpus
    counts = classify_file_with_ray(
        model,
        [folder],
        tmp_path / "out.jsonl",
        "text",
        workers=2,
        batch_size=8,
        rows_per_call=16,
        bucket_window=8,
    )
    assert counts.rows_in == counts.rows_out == N_ROWS
    assert counts.statuses == {"ok": N_ROWS - 8, "empty": 7, "missing": 1}
    out = read(tmp_path / "out.jsonl")
    assert_matches_the_pipeline(model, rows, out, bucket_window=8)


def test_ray_errors_are_the_one_process_errors(ray_session, model, tmp_path):
    source = tmp_path / "latin1.csv"
    source.write_bytes("id,text\n1,happy\n2,caf\xe9\n".encode("latin-1"))
    result = cli(model, source, tmp_path / "out.csv", "--text-column", "text", "--ray")
    assert_fails_with(result, f"{source}, line 3: not valid UTF-8")
    assert sorted(path.name for path in tmp_path.iterdir()) == [source.name]
    parts = str(tmp_path / "parts") + "/"
    result = cli(model, source, parts, "--text-column", "text", "--ray")
    assert_fails_with(result, f"{source}, line 3: not valid UTF-8")
    bom = write(tmp_path / "bom.jsonl", ROWS)
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    result = cli(model, bom, parts, "--text-column", "text", "--ray")
    assert_fails_with(result, f"{bom} starts with a UTF-8 byte order mark", "no trailing /")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bom.jsonl", source.name]
    result = cli(model, bom, tmp_path / "out.jsonl", "--text-column", "text", "--ray")
    assert result.exit_code == 0, result.output
    assert len(read(tmp_path / "out.jsonl")) == len(ROWS)

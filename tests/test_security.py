"""A saved pipeline that carries pickled code is refused, not executed.

spacy-transformers stores the encoder's weights with ``torch.save`` and reads them back
with ``torch.load``; from torch 2.6 (the floor in setup.cfg) ``torch.load`` only unpickles
tensors and plain containers by default. This test plants a payload whose unpickling would
create a file, and checks that ``spacy.load`` fails and the file never appears.
"""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly

from .util import make_examples, make_nlp, toy_texts

REPO = Path(__file__).resolve().parents[1]


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def plant(model_bytes: bytes, payload: bytes) -> bytes:
    """Replace the state of every shim (the HF weights) in a thinc model's bytes."""
    msg = srsly.msgpack_loads(model_bytes)
    planted = 0
    for shim_bytes in msg["shims"]:
        for j, data in enumerate(shim_bytes):
            shim = srsly.msgpack_loads(data)
            if isinstance(shim, dict) and "state" in shim:
                shim["state"] = payload
                shim_bytes[j] = srsly.msgpack_dumps(shim)
                planted += 1
    assert planted, "no transformer weights found in the model bytes"
    return srsly.msgpack_dumps(msg)


def planted_pipeline(tiny_bert, tmp_path):
    """Save a pipeline to tmp_path/pipeline whose weights carry a pickled payload; return the
    path of the file the payload would create if it ran."""
    nlp = make_nlp(tiny_bert)
    examples = make_examples(nlp, toy_texts(8, seed=1))
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    model_file = tmp_path / "pipeline" / "textcat" / "model"
    marker = tmp_path / "payload-ran"
    model_file.write_bytes(plant(model_file.read_bytes(), pickle.dumps(Payload(str(marker)))))
    return marker


def test_a_pipeline_with_a_pickled_payload_is_refused(tiny_bert, tmp_path):
    marker = planted_pipeline(tiny_bert, tmp_path)
    with pytest.raises(pickle.UnpicklingError):
        spacy.load(tmp_path / "pipeline")
    assert not Path(marker).exists()


def test_classify_refuses_the_payload_in_one_line(tiny_bert, tmp_path):
    """As a user types it: one line naming the weights file, exit 1, the payload not run."""
    marker = planted_pipeline(tiny_bert, tmp_path)
    source = tmp_path / "in.csv"
    source.write_text("text\nhappy\n", encoding="utf8")
    output = tmp_path / "out.csv"
    args = [sys.executable, "-m", "spacy_dallmi", "classify", str(tmp_path / "pipeline")]
    args += [str(source), str(output), "--text-column", "text", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    model_file = tmp_path / "pipeline" / "textcat" / "model"
    assert f"Refused to load {model_file}" in lines[0] and "was not run" in lines[0]
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not output.exists()

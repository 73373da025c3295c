"""``nlp.pipe(texts, n_process=2)`` after the parent has used torch's intra-op thread pool.

A forked child inherits that pool in a broken state, and its first parallel op waits forever
(issue 10: 11 minutes at 0% CPU). ``architecture.py`` gives each forked child one torch
thread. The run happens in a subprocess with a time limit, so a regression fails here
instead of hanging the suite.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 300

SCRIPT = """
import json
import sys

import torch

from tests.util import make_examples, make_nlp, toy_texts

nlp = make_nlp(sys.argv[1], max_length=128)
examples = make_examples(nlp, toy_texts(16))
optimizer = nlp.initialize(lambda: examples)
nlp.update(examples, sgd=optimizer)

# Long texts in batches of 16, so the children's forward passes reach torch's parallel ops.
texts = [" ".join([text] * 12) for text, _ in toy_texts(48, seed=1)]
torch.set_num_threads(2)
big = torch.ones(512, 512)
(big @ big).sum().item()  # the parent's intra-op pool now exists
nlp(texts[0])  # and a prediction ran with 2 threads
single = [doc.cats for doc in nlp.pipe(texts, batch_size=16)]
multi = [doc.cats for doc in nlp.pipe(texts, batch_size=16, n_process=2)]
print(json.dumps({"threads": torch.get_num_threads(), "single": single, "multi": multi}))
"""


def test_pipe_with_two_processes_matches_one_process(tiny_bert: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, tiny_bert],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a hang is killed with its workers
    )
    try:
        stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(
            f"nlp.pipe(n_process=2) did not finish within {HANG_GUARD_S} s: the forked workers "
            "hang on torch's inherited intra-op thread pool"
        ) from None
    assert process.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["threads"] == 2, "the parent keeps its own thread setting"
    single, multi = result["single"], result["multi"]
    assert len(multi) == len(single) == 48
    for one, two in zip(single, multi):
        assert one.keys() == two.keys()
        assert max(abs(one[label] - two[label]) for label in one) <= 1e-6

"""The benchmarks' weight average of a run's epochs (SWA), checked weight by weight against a
mean computed here."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spacy_dallmi.interpolation import interpolate_into

from .test_interpolation import pipeline, probabilities, weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from runner import WeightAverage  # noqa: E402


@pytest.fixture(scope="module")
def pair(tiny_bert):
    return pipeline(tiny_bert, 0), pipeline(tiny_bert, 1, noise=0.05)


def test_the_weight_average_is_the_mean_of_the_snapshots_weight_by_weight(tiny_bert, pair):
    snapshots = [pipeline(tiny_bert, 6, noise=0.05), *pair]  # the first is changed below
    average = WeightAverage(pipeline(tiny_bert, 7))
    for nlp in snapshots:
        average.add(nlp)
    assert average.count == 3
    target = average.pipeline
    state, head = weights(target)
    taken = [weights(nlp) for nlp in snapshots]
    for key, value in state.items():
        if value.is_floating_point():
            mean = sum(snapshot[0][key] for snapshot in taken) / 3
            assert torch.allclose(value, mean, atol=1e-6)
        else:
            assert torch.equal(value, taken[0][0][key])
    for name in ("W", "b"):
        assert np.allclose(head[name], sum(t[1][name] for t in taken) / 3, atol=1e-6)
    # the snapshots are copied, not referenced: changing one later changes nothing
    before = probabilities(target)
    interpolate_into(snapshots[0], *pair, 0.5)
    assert np.allclose(probabilities(target), before, atol=1e-6)
    # one snapshot: its own model
    single = WeightAverage(pipeline(tiny_bert, 8))
    single.add(snapshots[1])
    assert np.allclose(probabilities(single.pipeline), probabilities(snapshots[1]), atol=1e-6)

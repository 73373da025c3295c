"""The benchmark tune's coordinate search over DALLMi's settings, on made-up scores.

Training is replaced by a table of validation scores, so the test checks only the search:
which points it runs, in which order, and that each stage starts from the best point so far.
"""

import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from tune import CHOICE, LAMBDAS, LEARN_RATES, search_dallmi  # noqa: E402

from spacy_dallmi.settings import DallmiSettings  # noqa: E402

ONE_EPOCH = 17


def _search(score) -> List[Dict[str, Any]]:
    """Run the search with ``score(lr, settings)`` as each point's validation score."""
    calls: List[Dict[str, Any]] = []

    def run_point(method: str, lr: float, extra: Dict[str, Any]) -> Dict[str, Any]:
        assert method == "dallmi"
        point = {"method": method, "learn_rate": lr, **extra}
        point["scores"] = {CHOICE: {"val": score(lr, extra)}}
        calls.append(point)
        return point

    search_dallmi(run_point, ONE_EPOCH)
    return calls


def _key(point: Dict[str, Any]):
    return (
        point["learn_rate"],
        point["mixup_lambda"],
        point["mixup_warmup_steps"],
        point.get("loss_form"),
    )


@pytest.mark.parametrize("best_lr", LEARN_RATES)
@pytest.mark.parametrize("best_lambda", LAMBDAS)
def test_each_stage_starts_from_the_best_point(best_lr, best_lambda):
    def score(lr, extra):  # peaks at (best_lr, best_lambda, warm-up on, log form)
        value = -abs(lr - best_lr) * 1e3 - abs(extra["mixup_lambda"] - best_lambda)
        value += 0.01 * (extra["mixup_warmup_steps"] > 0) + 0.001 * ("loss_form" in extra)
        return value

    calls = _search(score)
    keys = [_key(p) for p in calls]
    assert len(keys) == len(set(keys)), "a point was trained twice"
    default = DallmiSettings().mixup_lambda
    # Stage 1: every learning rate at the default lambda, no warm-up.
    assert keys[: len(LEARN_RATES)] == [(lr, default, 0, None) for lr in LEARN_RATES]
    rest = keys[len(LEARN_RATES) :]
    # Stage 2: the other lambdas at the chosen learning rate.
    others = [lam for lam in LAMBDAS if lam != default]
    assert rest[: len(others)] == [(best_lr, lam, 0, None) for lam in others]
    rest = rest[len(others) :]
    # Stage 3: warm-up at the chosen lambda, unless it is 0; stage 4: the log loss form.
    warm = ONE_EPOCH if best_lambda > 0 else 0
    expected = [(best_lr, best_lambda, ONE_EPOCH, None)] if best_lambda > 0 else []
    assert rest == [*expected, (best_lr, best_lambda, warm, "log")]


def test_a_worse_warm_up_is_not_carried_into_the_last_stage():
    def score(lr, extra):
        return -abs(lr - LEARN_RATES[1]) - 0.5 * extra["mixup_warmup_steps"]

    last = _search(score)[-1]
    assert last["loss_form"] == "log"
    assert last["mixup_warmup_steps"] == 0
    assert last["learn_rate"] == LEARN_RATES[1]

"""The paper's ablations of DALLMi, as ``benchmarks/ablations.py`` trains them.

:func:`ablation_variants` names the variants of the paper's Tables 3 and 4 relative to DALLMi
as published (``PU_ONLY``); :func:`batcher_config` writes the configs of the batching variants
and :func:`variant_slug` names a variant's runs. The grids and ablations are the paired
benchmarks' (``benchmarks/tune.py``, ``benchmarks/ablations.py``): they run them with paired
seeds and confidence intervals.
"""

import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

from spacy.util import load_config

from ..settings import LOSS_FORMS, MIXUP_LOCATIONS, PU_ONLY, DallmiSettings

#: The config block of DALLMi's settings (the study's run overrides use it too).
SETTINGS = "initialize.before_init.settings"


def ablation_variants(lambdas: List[float]) -> List[Tuple[str, Dict[str, Any]]]:
    """The paper's ablations as (name, settings overrides): MixUp location x loss form
    (Table 3), the positive term, the MixUp weight and the batching (Table 4)."""
    default = DallmiSettings()
    variants: List[Tuple[str, Dict[str, Any]]] = [
        (
            f"default ({default.mixup_location}, {default.loss_form} loss, lambda "
            f"{default.mixup_lambda:g}, cycle batches)",
            {},
        )
    ]
    for location in MIXUP_LOCATIONS:
        for loss in LOSS_FORMS:
            if (location, loss) != (default.mixup_location, default.loss_form):
                settings = {f"{SETTINGS}.mixup_location": location, f"{SETTINGS}.loss_form": loss}
                variants.append((f"mixup at {location}, {loss} loss", settings))
    variants.append(("positive term l2", {f"{SETTINGS}.positive_term": "l2"}))
    for lam in lambdas:
        if lam != default.mixup_lambda:
            variants.append((f"lambda {lam:g}", {f"{SETTINGS}.mixup_lambda": lam}))
    variants.append(("plain shuffled batches", {"batcher": "spacy.batch_by_sequence.v1"}))
    variants.append(
        (
            "reference's positive-per-label sampling",
            {"batcher": "spacy_dallmi.positive_sampling_batcher.v1"},
        )
    )
    # of DALLMi as published: the PU loss on every label, without adapt.cfg's teacher
    pu_only = {f"{SETTINGS}.{key}": value for key, value in PU_ONLY.items()}
    return [(name, {**pu_only, **overrides}) for name, overrides in variants]


def variant_slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_")


def batcher_config(config: Path, folder: Path, batcher: str, batch_size: int, seed: int) -> Path:
    """A copy of ``config`` with another batcher (the blocks' arguments differ, so an
    override cannot swap it)."""
    loaded = load_config(config)
    block: Dict[str, Any] = {"@batchers": batcher, "size": batch_size}
    if batcher == "spacy.batch_by_sequence.v1":
        block["get_length"] = None
    else:
        block["seed"] = seed
    loaded["training"]["batcher"] = block
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"adapt_{batcher.replace('.', '_')}.cfg"
    loaded.to_disk(path)
    return path

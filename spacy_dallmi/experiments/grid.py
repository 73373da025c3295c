"""Many trainings from one source model: the ``tune`` grid and the paper's ablations.

:func:`tune` chooses each method's learning rate (and DALLMi's MixUp weight and warm-up) by
the label-free score on the validation slice, never a test label, with the same learning
rates and epochs for every method; ``tuned=true`` applies ``<output>/<method>.json``.
:func:`ablate` trains the variants of the paper's Tables 3 and 4 relative to DALLMi as
published (``PU_ONLY``). A finished grid point is read back, so an interrupted grid resumes.
"""

import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import srsly
from spacy.util import load_config
from wasabi import MarkdownRenderer, msg

from ..settings import LOSS_FORMS, MIXUP_LOCATIONS, PU_ONLY, DallmiSettings
from .methods import TUNED_METHODS, registered

SETTINGS = "initialize.before_init.settings"
LEARN_RATE = "training.optimizer.learn_rate.initial_rate"
#: Config and fixed overrides of each tuned method (AN-LS and WAN are options of `bce`).
TUNED = registered(
    {
        "dallmi": ("adapt.cfg", {}),
        "ft_partial": ("finetune.cfg", {}),
        "an_ls": ("finetune.cfg", {f"{SETTINGS}.label_smoothing": 0.1}),
        "wan": ("finetune.cfg", {f"{SETTINGS}.negative_weighting": "wan"}),
    },
    exactly=TUNED_METHODS,
)
RUN_FILE = "grid_point.json"


def _numbers(text: str, kind: type = float) -> List[Any]:
    """``"0.1,0.3"`` -> ``[0.1, 0.3]``: a grid option's comma-separated values."""
    return [kind(part) for part in text.split(",") if part.strip()]


def _name(values: Dict[str, Any]) -> str:
    return "_".join(f"{key.rsplit('.', 1)[-1]}{value}" for key, value in values.items()) or "base"


def train_point(
    config: Path, folder: Path, epochs: int, overrides: Dict[str, Any], gpu_id: int
) -> Dict[str, Any]:
    """Train one grid point (or read back its finished run): its dev score and wall time."""
    from ..training import train_epochs

    record = folder / RUN_FILE
    if record.is_file() and srsly.read_json(record)["overrides"] == overrides:
        return srsly.read_json(record)
    start = time.perf_counter()
    train_epochs(config, folder, epochs, overrides=overrides, use_gpu=gpu_id)
    wall = time.perf_counter() - start
    meta = srsly.read_json(folder / "model-best" / "meta.json")
    result = {
        "overrides": overrides,
        "dev_score": meta["selection"]["dev_scores"]["checkpoint"],
        "selected": meta["selection"]["selected"],
        "wall_seconds": round(wall, 1),
        "seconds_per_epoch": round(wall / epochs, 1),
    }
    srsly.write_json(record, result)
    return result


def base_overrides(source: Path, data: Path, seed: int, suffix: str = "") -> Dict[str, Any]:
    """A target run's: the source model, target train and valid (``_full``: all labels)."""
    train, dev = (str(data / f"target_{name}{suffix}.spacy") for name in ("train", "valid"))
    return {
        "paths.source": str(source),
        "paths.train": train,
        "paths.dev": dev,
        "system.seed": seed,
    }


def tune_points(
    method: str, learn_rates: List[float], lambdas: List[float], warmup: List[int]
) -> List[Dict[str, Any]]:
    """The grid of one method, with warm-up in epochs (converted to steps by :func:`tune`)."""
    if method != "dallmi":
        return [{LEARN_RATE: lr} for lr in learn_rates]
    points = []
    for lr in learn_rates:
        for lam in lambdas:
            for epochs in warmup if lam > 0 else [0]:
                points.append(
                    {LEARN_RATE: lr, f"{SETTINGS}.mixup_lambda": lam, "warmup_epochs": epochs}
                )
    return points


def tune(
    source: Path,
    partial: Path,
    output: Path,
    work: Path,
    *,
    learn_rates: str,
    lambdas: str,
    warmup: str,
    **run: Any,
) -> None:
    """Choose each tuned method's settings on the validation slice by the label-free score;
    ``run``: ``epochs``, ``batch_size``, ``seed``, ``gpu_id``, ``configs``, as :func:`ablate`'s."""
    from ..training import batches_per_epoch

    epochs, batch_size, seed = run["epochs"], run["batch_size"], run["seed"]
    gpu_id, configs = run.get("gpu_id", -1), Path(run.get("configs", "configs"))
    lrs, lams, warm = _numbers(learn_rates), _numbers(lambdas), _numbers(warmup, int)
    for path in (source, partial / "target_train.spacy", partial / "target_valid.spacy"):
        if not path.exists():
            msg.fail(f"Not found: {path} (prepare the data and train the source first)", exits=1)
    base = {**base_overrides(source, partial, seed), "training.batcher.size": batch_size}
    output.mkdir(parents=True, exist_ok=True)
    for method in TUNED:
        config_name, fixed = TUNED[method]
        config = configs / config_name
        per_epoch = batches_per_epoch(config, base)
        grid = []
        for point in tune_points(method, lrs, lams, warm):
            chosen = {k: v for k, v in point.items() if k != "warmup_epochs"}
            if method == "dallmi":
                chosen[f"{SETTINGS}.mixup_warmup_steps"] = point["warmup_epochs"] * per_epoch
            folder = work / method / f"{_name(point)}_e{epochs}"
            msg.divider(f"tune {method}: {_name(point)}")
            result = train_point(config, folder, epochs, {**base, **fixed, **chosen}, gpu_id)
            grid.append({"overrides": chosen, "dev_score": result["dev_score"]})
        best = max(grid, key=lambda item: item["dev_score"])
        srsly.write_json(
            output / f"{method}.json",
            {
                "method": method,
                "criterion": "cats_pu_score of the best epoch on the validation slice",
                "overrides": best["overrides"],
                "dev_score": best["dev_score"],
                "epochs": epochs,
                "seed": seed,
                "grid": grid,
            },
        )
        msg.good(f"{method}: chose {best['overrides']} (dev score {best['dev_score']:.4f})")


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


def _test_score(run: Path, test: Path) -> Optional[Dict[str, float]]:
    from .evaluate import evaluate_run

    if not test.is_file():
        return None
    result = evaluate_run(run, test, method="dallmi", settings={})
    return {
        "selected": result["metrics"]["cats_macro_ap"],
        "last": result["metrics_last"]["cats_macro_ap"],
    }


def _points(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def ablate(
    source: Path,
    corpus: Path,
    partial: Path,
    output: Path,
    work: Path,
    *,
    epochs: int,
    batch_size: int,
    learn_rate: float,
    lambdas: str,
    seed: int,
    gpu_id: int = -1,
    configs: Path = Path("configs"),
) -> None:
    """Train the paper's ablations of DALLMi and report them relative to the defaults."""
    base = {**base_overrides(source, partial, seed), "training.batcher.size": batch_size}
    base[LEARN_RATE] = learn_rate
    test = corpus / "target_test.spacy"
    rows = []
    for name, settings in ablation_variants(_numbers(lambdas)):
        config = configs / "adapt.cfg"
        overrides = dict(settings)
        batcher = overrides.pop("batcher", None)
        if batcher:
            config = batcher_config(config, work, batcher, batch_size, seed)
        folder = work / variant_slug(name)
        msg.divider(f"ablation: {name}")
        result = train_point(config, folder, epochs, {**base, **overrides}, gpu_id)
        rows.append((name, result, _test_score(folder, test)))
    md = MarkdownRenderer()
    md.add(md.title(1, "DALLMi ablations"))
    md.add(
        f"{epochs} epochs, batch {batch_size}, lr {learn_rate:g}, seed {seed}; change relative "
        "to default DALLMi. Test macro mAP of the selected model (`model-best`) and the last "
        "epoch; the dev score is the label-free `cats_pu_score` on the validation slice."
    )
    if rows[0][2] is None:
        md.add(
            "No labelled target test set: only the label-free dev score and wall time are "
            "shown; no test metrics are computed."
        )
    default = (rows[0][2] or {}).get("selected")
    table = []
    for name, result, scores in rows:
        selected, last = (scores or {}).get("selected"), (scores or {}).get("last")
        change = (
            "–"
            if selected is None or not default
            else f"{100 * (selected - default) / default:+.1f}%"
        )
        table.append(
            [name, _points(selected), change, _points(last), f"{result['dev_score']:.4f}"]
            + [f"{result['seconds_per_epoch']:.1f}"]
        )
    header = ["variant", "macro mAP", "vs default", "last epoch", "dev score", "wall s / epoch"]
    md.add(md.table(table, header))
    md.add(
        "Batching (Table 4): the default cycle batcher, spaCy's plain shuffled batches, and "
        "the reference code's sampling of one positive per label with replacement "
        "(`spacy_dallmi.positive_sampling_batcher.v1`, which never draws a document without "
        "a known positive); wall s / epoch is each variant's training time per epoch."
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(md.text + "\n", encoding="utf8")
    msg.good(f"{len(rows)} variants -> {output}")

"""Score a saved pipeline on the fully labelled target test split: one metrics file per run.

:func:`evaluate_pipeline` produces the numbers of the results table (the paper's Table 2): it
loads a saved pipeline, predicts the test docs from their texts alone and scores them with
``nlp.evaluate`` and the component's own scorer. Its result is a plain JSON-able dict that
:mod:`.report` aggregates over methods, ratios and seeds.
"""

import copy
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import spacy
import srsly
from spacy.tokens import DocBin

from ..callbacks import check_gold, find_textcat, score_gold_docs
from .readers import PathLike, require_file

#: The four rows of the paper's Table 2, in its order.
METHODS = ("none", "ft_partial", "ft_full", "dallmi")


def _produced_by(command: str) -> str:
    return f"It is written by {command}."


def _check_settings(method: str, settings: Dict[str, Any]) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: use one of {METHODS}.")
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}.")
    try:
        srsly.json_dumps(settings)
    except (TypeError, OverflowError) as error:
        raise ValueError(
            f"settings must be JSON-serialisable (no paths, sets, NaN): {error}"
        ) from error


def evaluate_pipeline(
    model_path: PathLike,
    test_path: PathLike,
    *,
    method: str,
    settings: Dict[str, Any],
    epoch_log: Optional[PathLike] = None,
    batch_size: int = 64,
) -> Dict[str, Any]:
    """Score a saved pipeline on a fully labelled test DocBin and return a JSON-able result.

    model_path: a pipeline folder saved by ``spacy train`` (``model-last`` or ``model-best``).
    test_path: a DocBin whose docs carry complete ``doc.cats`` (e.g. ``target_test.spacy``).
    method: which row of the results table this is: one of :data:`METHODS`.
    settings: the run's settings (dataset, ratio, removal, seed, backbone, ...), copied as they
        are; the report groups runs by ``settings["ratio"]`` and ``settings["seed"]``.
    epoch_log: the JSONL written during training by ``spacy_dallmi.epoch_eval.v1``, if any.
    batch_size: docs per ``nlp.pipe`` batch.

    Returns ``{"method", "settings", "model_path", "test_path", "labels", "threshold",
    "n_docs", "metrics", "epochs", "wall_seconds"}`` where ``metrics`` holds the component
    scorer's ``cats_*`` scores (``cats_macro_ap``, ``cats_micro_ap``, ``cats_macro_auc``,
    ``cats_macro_f``, ``cats_macro_ap_rounded``, ``cats_ap_per_type``,
    ``cats_ap_skipped_labels``, ...), ``epochs`` the per-epoch records (empty without
    `epoch_log`) and ``wall_seconds`` the time this evaluation took (load, predict, score).

    Raises FileNotFoundError for a missing input (naming it and the command that writes it) and
    ValueError for an unknown method, settings that are not JSON-able, or a test split that is
    not fully labelled over the classifier's labels.
    """
    start = time.perf_counter()
    _check_settings(method, settings)
    model_path = Path(model_path)
    test_path = Path(test_path)
    if not model_path.exists():
        raise FileNotFoundError(
            f"Pipeline not found: {model_path}. "
            + _produced_by(
                "`python -m spacy train configs/<config>.cfg --output DIR` (as DIR/model-last), "
                "i.e. the project's train-source, adapt, finetune-partial or finetune-full command"
            )
        )
    if not (model_path / "config.cfg").is_file():
        raise FileNotFoundError(
            f"{model_path} is not a saved spaCy pipeline (it has no config.cfg): pass the "
            "model-last (or model-best) folder inside the `spacy train` output folder."
        )
    require_file(
        test_path,
        _produced_by("`python -m spacy_dallmi prepare` or `prepare-files` (target_test.spacy)"),
        what="Test DocBin",
    )
    epochs: List[Dict[str, Any]] = []
    if epoch_log is not None:
        epoch_log = Path(epoch_log)
        require_file(
            epoch_log,
            _produced_by(
                "`spacy train` with [training.before_update] spacy_dallmi.epoch_eval.v1 (its "
                "`output`), i.e. the project's adapt/finetune commands with paths.curve_output"
            ),
            what="Epoch log",
        )
        epochs = list(srsly.read_jsonl(epoch_log))

    nlp = spacy.load(model_path)
    textcat = find_textcat(nlp)
    labels = list(textcat.labels)
    gold_docs = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    check_gold(gold_docs, labels, test_path)
    return {
        "method": method,
        "settings": copy.deepcopy(settings),
        "model_path": str(model_path),
        "test_path": str(test_path),
        "labels": labels,
        "threshold": textcat.cfg["threshold"],
        "n_docs": len(gold_docs),
        "metrics": score_gold_docs(nlp, gold_docs, batch_size=batch_size),
        "epochs": epochs,
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


def write_metrics(result: Dict[str, Any], output_path: PathLike) -> None:
    """Write an :func:`evaluate_pipeline` result as indented JSON, creating parent folders.

    Indented so that a results folder can be read and diffed by hand.
    """
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output_path, result, indent=2)

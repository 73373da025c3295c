"""Score trained pipelines on the target test split, and record a learning curve during training.

Two entry points, for two different purposes:

- :func:`evaluate_pipeline` produces the numbers of the results table (the paper's Table 2): it
  loads a saved pipeline, predicts the fully labelled target test split from the texts alone and
  scores the predictions with :func:`spacy_dallmi.scorer.score_cats_map`. Its result is a plain
  JSON-able dict (see :func:`evaluate_pipeline` for the schema) that
  :mod:`spacy_dallmi.report` aggregates over methods, ratios and seeds.
- :func:`make_epoch_eval_callback` (``spacy_dallmi.epoch_eval.v1``) is a
  ``[training.before_update]`` callback that scores the model being trained on held-out docs once
  per epoch, for the learning-curve figure (the paper's Fig. 5). It is deliberately not a dev
  evaluation: spaCy's model selection and ``score_weights`` never see it, so pointing it at the
  test split does not leak the test set into training decisions.
"""

import copy
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import registry

from .component import DallmiTextCategorizer
from .scorer import score_cats_map

# The four rows of the paper's Table 2, in its order.
METHODS = ("none", "ft_partial", "ft_full", "dallmi")

# The metrics copied into every per-epoch record of the learning curve.
EPOCH_RECORD_METRICS = ("cats_macro_ap", "cats_macro_ap_rounded", "cats_micro_ap")

PathLike = Union[str, Path]


def find_textcat(nlp: Language) -> DallmiTextCategorizer:
    """Return the pipeline's single ``dallmi_textcat`` component.

    Evaluation needs the component's labels and threshold; looking the component up by type
    rather than by name keeps this working for pipelines that call it something else than
    ``textcat``. Raises ValueError when there is none or more than one, because scoring "the"
    classifier is then ambiguous.
    """
    found = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, DallmiTextCategorizer)]
    if len(found) != 1:
        raise ValueError(
            f"Expected exactly one dallmi_textcat component in the pipeline, found {len(found)} "
            f"(components: {nlp.component_names})."
        )
    return found[0]


def check_gold(docs: Sequence[Doc], labels: Sequence[str], source: PathLike) -> None:
    """Check that every doc of an evaluation set carries a gold value for every label.

    The scorer treats an absent label as missing annotation and leaves that doc out for it,
    which is right for partially annotated training data but would silently shrink a test set
    that is meant to be fully labelled. A gold label the classifier does not know would be
    ignored just as silently, so it is an error as well: it means the test split was made for
    another label set.
    """
    if not docs:
        raise ValueError(f"{source} holds no docs: there is nothing to evaluate on.")
    known = set(labels)
    for i, doc in enumerate(docs):
        missing = [label for label in labels if label not in doc.cats]
        unknown = sorted(set(doc.cats) - known)
        if missing or unknown:
            problem = (
                f"lacks a gold value for {missing}" if missing else f"has unknown labels {unknown}"
            )
            raise ValueError(
                f"Doc {i} of {source} ({doc.text[:60]!r}) {problem}. Evaluation needs a fully "
                f"labelled split over the classifier's labels {list(labels)}, such as the "
                "target_test.spacy written by `python -m spacy_dallmi prepare`."
            )


def score_docs(
    nlp: Language, gold_docs: Sequence[Doc], batch_size: Optional[int] = None
) -> Dict[str, Any]:
    """Predict `gold_docs` from their texts with `nlp` and score the predictions.

    Only the texts go through ``nlp.pipe``, so the predictions are built on fresh docs and can
    never see the gold ``doc.cats``. Scoring uses the component's own labels and threshold, so
    the numbers match what ``nlp.evaluate`` with the component's scorer would report.
    """
    textcat = find_textcat(nlp)
    predicted = nlp.pipe((doc.text for doc in gold_docs), batch_size=batch_size)
    examples = [Example(pred, gold_docs[i]) for i, pred in enumerate(predicted)]
    return score_cats_map(examples, labels=textcat.labels, threshold=textcat.cfg["threshold"])


def _require_file(path: Path, what: str, produced_by: str) -> None:
    """Raise FileNotFoundError naming `path` and the command that writes it."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}. It is written by {produced_by}.")


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
    "n_docs", "metrics", "epochs", "wall_seconds"}`` where ``metrics`` is everything
    :func:`spacy_dallmi.scorer.score_cats_map` returns (``cats_macro_ap``, ``cats_micro_ap``,
    ``cats_macro_auc``, ``cats_macro_f``, ``cats_macro_ap_rounded``, ``cats_ap_per_type``,
    ``cats_ap_skipped_labels``, ...), ``epochs`` is the list of per-epoch records (empty without
    `epoch_log`) and ``wall_seconds`` is the time this evaluation took (load, predict, score).

    Raises FileNotFoundError for a missing input (naming it and the command that writes it) and
    ValueError for an unknown method, settings that are not JSON-able, or a test split that is
    not fully labelled over the classifier's labels.
    """
    start = time.perf_counter()
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
    model_path = Path(model_path)
    test_path = Path(test_path)
    _require_file(
        model_path,
        "Pipeline",
        "`python -m spacy train configs/<config>.cfg --output DIR` (as DIR/model-last), i.e. the "
        "project's train-source, adapt, finetune-partial or finetune-full command",
    )
    if not (model_path / "config.cfg").is_file():
        raise FileNotFoundError(
            f"{model_path} is not a saved spaCy pipeline (it has no config.cfg): pass the "
            "model-last (or model-best) folder inside the `spacy train` output folder."
        )
    _require_file(
        test_path,
        "Test DocBin",
        "`python -m spacy_dallmi prepare` or `prepare-files` (target_test.spacy), i.e. the "
        "project's prepare command",
    )
    epochs: List[Dict[str, Any]] = []
    if epoch_log is not None:
        epoch_log = Path(epoch_log)
        _require_file(
            epoch_log,
            "Epoch log",
            "`spacy train` with [training.before_update] spacy_dallmi.epoch_eval.v1 (its "
            "`output`), i.e. the project's adapt/finetune commands with paths.curve_output set",
        )
        epochs = list(srsly.read_jsonl(epoch_log))

    nlp = spacy.load(model_path)
    textcat = find_textcat(nlp)
    labels = list(textcat.labels)
    gold_docs = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    check_gold(gold_docs, labels, test_path)
    metrics = score_docs(nlp, gold_docs, batch_size=batch_size)
    return {
        "method": method,
        "settings": copy.deepcopy(settings),
        "model_path": str(model_path),
        "test_path": str(test_path),
        "labels": labels,
        "threshold": textcat.cfg["threshold"],
        "n_docs": len(gold_docs),
        "metrics": metrics,
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


@registry.callbacks("spacy_dallmi.epoch_eval.v1")
def make_epoch_eval_callback(
    path: Optional[str] = None, output: Optional[str] = None
) -> Callable[[Language, Dict[str, Any]], None]:
    """``[training.before_update]`` callback recording macro mAP once per epoch.

    FOR THE LEARNING-CURVE FIGURE ONLY (the paper's Fig. 5), NEVER FOR MODEL SELECTION: the
    scores go to a file that spaCy's training loop never reads, so neither ``model-best`` nor
    early stopping depends on them, and `path` may safely be the test split.

    path: a DocBin of fully labelled held-out docs. Empty or null turns the callback into a
        no-op, so a config can always carry the block and a run switches it off with
        ``--paths.curve_docs ""`` (or by leaving the variable null).
    output: the JSONL file to write; truncated when the callback is created, so that it holds
        exactly one training run. Required when `path` is set.

    spaCy calls ``before_update(nlp, {"step": step, "epoch": epoch})`` before every update.
    Whenever the epoch differs from the previous call (including the first call, epoch 0 = the
    model before any update) the model is scored on the docs and one line
    ``{"epoch", "step", "cats_macro_ap", "cats_macro_ap_rounded", "cats_micro_ap"}`` is
    appended, so the record for epoch e describes the model after e full epochs. The model after
    the last epoch gets no record (spaCy calls no hook after the last update); it is the saved
    ``model-last``, which :func:`evaluate_pipeline` scores.

    The DocBin is read once, at the first call (it needs ``nlp.vocab``). spaCy resolves
    ``[training]`` twice before training starts (in ``init_nlp`` and in the training loop), so
    this factory runs twice per ``spacy train``; both runs happen before the first update, and
    loading a trained pipeline with ``spacy.load`` does not run it at all.
    """
    if not path:

        def skip_epoch_eval(nlp: Language, args: Dict[str, Any]) -> None:
            """No held-out docs configured: record nothing."""

        return skip_epoch_eval
    if not output:
        raise ValueError(
            "spacy_dallmi.epoch_eval.v1: `output` (the JSONL file to write) is required when "
            f"`path` is set (path = {path!r})."
        )
    docs_path = Path(path)
    output_path = Path(output)
    _require_file(
        docs_path,
        "spacy_dallmi.epoch_eval.v1: held-out DocBin",
        "`python -m spacy_dallmi prepare` or `prepare-files` (e.g. target_test.spacy)",
    )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text("", encoding="utf8")
    gold_docs: List[Doc] = []
    last_epoch: Optional[int] = None

    def epoch_eval(nlp: Language, args: Dict[str, Any]) -> None:
        """Score `nlp` on the held-out docs when a new epoch starts; append one JSON line."""
        nonlocal last_epoch
        epoch = args["epoch"]
        if epoch == last_epoch:
            return
        last_epoch = epoch
        if not gold_docs:
            gold_docs.extend(DocBin().from_disk(docs_path).get_docs(nlp.vocab))
            check_gold(gold_docs, find_textcat(nlp).labels, docs_path)
        scores = score_docs(nlp, gold_docs)
        record = {"epoch": epoch, "step": args["step"]}
        record.update({key: scores[key] for key in EPOCH_RECORD_METRICS})
        with output_path.open("a", encoding="utf8") as file:
            file.write(srsly.json_dumps(record) + "\n")

    return epoch_eval

"""Prediction for ``classify``: labels, thresholds and the added columns of each row.

Why a module of its own: the command (``spacy_dallmi.classify``) and the Ray actors
(``spacy_dallmi.ray``) must give the same values, so both call :func:`predict_rows` and
:func:`load_thresholds` from here. Rows come in as ``(text value, context)`` and go through
one ``nlp.pipe`` with their context, in order. An empty or whitespace-only text is ``empty``
and a null or absent one ``missing``: such rows are kept with null probabilities.
Probabilities are written at the model's float32 precision.
"""

import json
import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

import numpy
from wasabi import msg

from .tables import LABELS_COLUMN, PROB_PREFIX, STATUS_COLUMN, ClassifyError

DEFAULT_BATCH_SIZE = 64

Context = TypeVar("Context")


def cats_labels(nlp: Any) -> List[str]:
    """Labels of the components that set ``doc.cats``, in pipeline order."""
    names = [name for name in nlp.pipe_names if "doc.cats" in nlp.get_pipe_meta(name).assigns]
    if not names:
        raise ClassifyError(f"The pipeline has no component that sets doc.cats: {nlp.pipe_names}.")
    labels: List[str] = []
    for name in names:
        labels += [label for label in nlp.get_pipe(name).labels if label not in labels]
    return labels


def set_bucket_window(nlp: Any, window: int) -> None:
    """Set ``bucket_window`` on every component with length-bucketed ``pipe``."""
    from .inference import BucketedPipeMixin

    pipes = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, BucketedPipeMixin)]
    if not pipes:
        msg.warn("No component of the pipeline buckets by length; --bucket-window is ignored.")
    for pipe in pipes:
        pipe.cfg["bucket_window"] = window


def load_thresholds(
    path: Optional[Path], labels: List[str], default: Optional[float]
) -> Optional[Dict[str, float]]:
    """Per-label thresholds: a JSON object ``{label: threshold}``, ``default`` for the rest.

    Returns None when neither is given (no ``labels`` column).
    """
    thresholds: Dict[str, float] = {}
    if path is not None:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf8"))
        except (OSError, ValueError) as error:
            raise ClassifyError(f"Cannot read thresholds from {path}: {error}") from error
        if not isinstance(loaded, dict):
            raise ClassifyError(f'{path} must hold a JSON object {{"label": threshold, ...}}.')
        unknown = sorted(set(loaded) - set(labels))
        if unknown:
            raise ClassifyError(
                f"{path} names label(s) {unknown} that the model does not have. Its labels "
                f"are {labels}."
            )
        thresholds = dict(loaded)
    elif default is None:
        return None
    uncovered = [label for label in labels if label not in thresholds]
    if uncovered and default is None:
        raise ClassifyError(
            f"{path} has no threshold for label(s) {uncovered}: add them, or pass --threshold "
            "for the labels it leaves out."
        )
    thresholds.update(dict.fromkeys(uncovered, default))
    for label, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ClassifyError(
                f"Threshold of {label!r} must be a number in [0, 1], not {value!r}."
            )
    return {label: float(thresholds[label]) for label in labels}


def text_status(value: Any) -> Tuple[str, str]:
    """``(text to classify, status)``: null or NaN is ``missing``, blank is ``empty``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", "missing"
    text = value if isinstance(value, str) else str(value)
    return (text, "ok") if text.strip() else ("", "empty")


def _float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (the model's precision)."""
    return float(str(numpy.float32(value)))


def predict_rows(
    nlp: Any,
    items: Iterable[Tuple[Any, Context]],
    labels: List[str],
    thresholds: Optional[Dict[str, float]],
    batch_size: int,
) -> Iterator[Tuple[Context, Dict[str, Any]]]:
    """For each ``(text value, context)``, in order: the context and its added columns.

    Rows without a text go through the pipeline as ``""`` (keeping the stream in order)
    and get null probabilities.
    """

    def pairs() -> Iterator[Tuple[str, Tuple[str, Context]]]:
        for value, context in items:
            text, status = text_status(value)
            yield text, (status, context)

    for doc, (status, context) in nlp.pipe(pairs(), as_tuples=True, batch_size=batch_size):
        ok = status == "ok"
        added: Dict[str, Any] = {
            PROB_PREFIX + label: _float32(doc.cats[label]) if ok else None for label in labels
        }
        if thresholds is not None:
            added[LABELS_COLUMN] = (
                [label for label in labels if doc.cats[label] >= thresholds[label]] if ok else None
            )
        added[STATUS_COLUMN] = status
        yield context, added


def load_pipeline(model: Any) -> Any:
    """``spacy.load(model)``, with a failure told in one line that names the file at fault.

    A weights file that holds pickled objects other than tensors is refused by
    ``torch.load(weights_only=True)`` before anything in it runs; the message says so
    instead of torch's page-long explanation. A truncated or damaged file is named too.
    """
    import spacy

    try:
        with warnings.catch_warnings():
            # torch warns of the pickle protocol just before it refuses the file
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return spacy.load(model)
    except Exception as error:
        raise ClassifyError(load_error_message(model, error)) from None


def load_error_message(model: Any, error: BaseException) -> str:
    root = Path(model).resolve() if Path(model).exists() else None
    culprit = _failing_file(error, root)
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in str(error):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        detail = f" ({found.group(1)})" if found else ""
        return (
            f"Refused to load {culprit or model}: it holds pickled Python objects{detail}, "
            "not only weights, and was not run. Use a pipeline from a source you trust, or "
            "train and save it again."
        )
    if culprit is not None:
        return (
            f"Cannot load the model: {culprit} is damaged or incomplete ({first_line}). "
            "Copy or save the pipeline again."
        )
    return f"Cannot load the model {model}: {first_line}"


def _failing_file(error: BaseException, root: Optional[Path]) -> Optional[Path]:
    """The file being read when ``error`` was raised: the innermost ``Path`` local, inside
    ``root``, of a frame in its traceback. spaCy's compiled loaders show no locals, so for
    a component folder this is its weights file, ``model``."""
    found = None
    frame = error.__traceback__
    while frame is not None:
        for value in list(frame.tb_frame.f_locals.values()):
            if isinstance(value, Path) and value.exists():
                if root is None or root in value.resolve().parents:
                    found = value
        frame = frame.tb_next
    if found is not None and found.is_dir():
        return found / "model" if (found / "model").is_file() else found
    return found

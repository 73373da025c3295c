"""In-process training with an evaluation at every epoch boundary, and the metrics it records.

One process trains dozens of runs, so each run goes through spaCy's own training loop
(:func:`spacy.training.initialize.init_nlp` and :func:`spacy.training.loop.train`, the code
behind ``spacy train``) with the project's configs and overrides: optimiser, schedule, batcher,
dropout and clipping are exactly the configs'. The run length is ``E × batches per epoch``
steps (:func:`spacy_dallmi.training.batches_per_epoch`), as the project's ``train --epochs``
does, so the linear decay ends at the run's end for every method.

Per-epoch scores come from a ``[training.before_update]`` probe (spaCy's hook before each
update), which scores the model when a new epoch starts; the final model is scored after
training. Nothing is saved per epoch: the test split is scored at every epoch too, and
selecting an epoch by a label-free validation score afterwards picks among those records. The
test scores are never an input to training or to the selection.
"""

import io
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import spacy
from spacy.language import Language
from spacy.training import Example
from spacy.training.initialize import init_nlp
from spacy.training.loop import train
from spacy.util import load_config, registry
from splits import RATIOS, SeedCorpora, ratio_name, read_docs
from stats import macro_f1

from spacy_dallmi.callbacks import find_textcat
from spacy_dallmi.experiments.evaluate import expected_calibration_error
from spacy_dallmi.experiments.thresholds import fit_threshold_columns
from spacy_dallmi.scorer import GOLD_POSITIVE_CUTOFF, score_cats_map
from spacy_dallmi.selection import pu_win_rate
from spacy_dallmi.training import batches_per_epoch

PROBE = "paired_benchmark.epoch_probe.v1"
#: spaCy evaluates the dev corpus at step 0 and then every ``eval_frequency`` steps; our probe
#: does the per-epoch evaluation, so spaCy's is pushed past the end of every run.
NO_DEV_EVAL = 10**9
PREDICT_BATCH = 64
TEST_KEYS = {
    "macro_ap": "cats_macro_ap",
    "micro_ap": "cats_micro_ap",
    "macro_f": "cats_macro_f",
    "macro_ap_rounded": "cats_macro_ap_rounded",
    "ap_per_type": "cats_ap_per_type",
}


def predict(nlp: Language, texts: Sequence[str]) -> np.ndarray:
    """Probabilities (docs × labels) of the pipeline's classifier, in the order of ``texts``.

    Batches are made of texts of similar length (a batch is padded to its longest text), which
    changes no probability and saves a good part of the evaluation time.
    """
    textcat = find_textcat(nlp)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    probabilities = np.zeros((len(texts), len(textcat.labels)))
    for start in range(0, len(order), PREDICT_BATCH):
        batch = order[start : start + PREDICT_BATCH]
        docs = [nlp.make_doc(texts[i]) for i in batch]
        probabilities[batch] = textcat.model.ops.to_numpy(textcat.predict(docs))
    return probabilities


class LabelledSet:
    """Texts with one label matrix, scored with the project's scorer from probabilities."""

    def __init__(self, texts: List[str], matrix: np.ndarray, labels: List[str]) -> None:
        self.texts = texts
        self.matrix = matrix
        self.labels = labels
        blank = spacy.blank("en")
        self._examples = []
        for text, row in zip(texts, matrix):
            reference = blank.make_doc(text)
            reference.cats = {label: float(v) for label, v in zip(labels, row)}
            self._examples.append(Example(blank.make_doc(text), reference))

    def score(self, probabilities: np.ndarray) -> Dict[str, Any]:
        for example, row in zip(self._examples, probabilities):
            example.predicted.cats = {label: float(p) for label, p in zip(self.labels, row)}
        with warnings.catch_warnings():
            # A validation slice may lack a known positive of a rare label: the scorer leaves
            # the label out and says so, once per call, which would flood the log every epoch.
            warnings.simplefilter("ignore")
            return score_cats_map(self._examples, labels=self.labels)


def read_set(path, labels: List[str]) -> LabelledSet:
    docs = read_docs(path)
    matrix = np.array([[doc.cats[label] for label in labels] for doc in docs])
    return LabelledSet([doc.text for doc in docs], matrix, labels)


class Evaluator:
    """Scores a pipeline on the validation slice and on the test split.

    Validation: against each ratio's partial labels (``pu_score`` and AP against the known
    positives: the label-free criteria) and against the full labels (for the analysis of how
    well a criterion tracks the truth). Test: macro AP on probabilities (primary), micro AP,
    macro F1 at 0.5, the paper's rounded-prediction AP and the calibration error; and
    macro F1 at per-label thresholds fitted on the validation slice as the ``thresholds``
    project command fits them: ``macro_f_thresholds`` per ratio's partial labels, and
    ``macro_f_full_thresholds`` on the full labels (for the analysis of what the partial
    labels cost; never a choice).
    """

    def __init__(
        self,
        corpora: SeedCorpora,
        ratios: Sequence[float] = RATIOS,
        source: Optional[Language] = None,
    ) -> None:
        labels = corpora.labels
        self.val_full = read_set(corpora.val_full, labels)
        self.val_partial = {}
        for ratio in ratios:
            partial = read_set(corpora.val(ratio), labels)
            if partial.texts != self.val_full.texts:
                raise ValueError(f"validation slices of ratio {ratio} and full labels differ")
            self.val_partial[ratio_name(ratio)] = partial
        self.test = read_set(corpora.test, labels)
        # with the source model, each ratio's ``pu_win``: the share of paired bootstrap
        # resamples of the slice on which a model's PU score beats the source's
        self.source_probs = None if source is None else predict(source, self.val_full.texts)

    def __call__(self, nlp: Language) -> Dict[str, Any]:
        val_probs = predict(nlp, self.val_full.texts)
        val: Dict[str, Any] = {}
        for name, labelled in self.val_partial.items():
            scores = labelled.score(val_probs)
            val[name] = {"pu_score": scores["cats_pu_score"], "partial_ap": scores["cats_macro_ap"]}
            if self.source_probs is not None:
                known = labelled.matrix >= GOLD_POSITIVE_CUTOFF
                val[name]["pu_win"] = pu_win_rate(known, val_probs, self.source_probs)
        val["full"] = {"macro_ap": self.val_full.score(val_probs)["cats_macro_ap"]}
        test_probs = predict(nlp, self.test.texts)
        scores = self.test.score(test_probs)
        test = {key: scores[name] for key, name in TEST_KEYS.items()}
        test["ece"] = expected_calibration_error(test_probs, self.test.matrix)
        test["macro_f_thresholds"] = {
            name: self.thresholded_f1(labelled, val_probs, test_probs)
            for name, labelled in self.val_partial.items()
        }
        test["macro_f_full_thresholds"] = self.thresholded_f1(self.val_full, val_probs, test_probs)
        return {"val": val, "test": test}

    def thresholded_f1(
        self, val: LabelledSet, val_probs: np.ndarray, test_probs: np.ndarray
    ) -> float:
        """Test macro F1 at the per-label thresholds that maximise F1 on ``val``'s labels."""
        fitted = fit_threshold_columns(val.matrix, val_probs, val.labels)
        thresholds = [fitted[label]["threshold"] for label in val.labels]
        return macro_f1(test_probs, self.test.matrix, thresholds)


def effective_settings(config_path: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """The settings a config trains with after overrides, defaults filled in, and its
    learning rate: what a run's result is compared on, so a changed default is noticed."""
    config = load_config(config_path, overrides=overrides, interpolate=True)
    block = config["initialize"]["before_init"]["settings"]
    settings = registry.resolve({"settings": block})["settings"].to_dict()
    settings["learn_rate"] = config["training"]["optimizer"]["learn_rate"]["initial_rate"]
    return settings


def _epoch_probe(
    evaluate: Callable[[Language], Dict[str, Any]], epochs: int, records: List[Dict[str, Any]]
) -> Callable[[Language, Dict[str, Any]], None]:
    """A ``before_update`` hook: when epoch ``e`` (1 ≤ e < epochs) starts, score the model
    that finished epoch ``e``. The last epoch's model is scored after training."""
    seen = {0}

    def probe(nlp: Language, info: Dict[str, Any]) -> None:
        epoch = info["epoch"]
        if epoch in seen or epoch >= epochs:
            return
        seen.add(epoch)
        records.append({"epoch": epoch, "step": info["step"], **evaluate(nlp)})
        test_ap = records[-1]["test"]["macro_ap"]
        print(
            f"  epoch {epoch}, step {info['step']}: test macro AP {100 * test_ap:.1f}", flush=True
        )

    return probe


def train_run(
    config_path: str,
    overrides: Dict[str, Any],
    epochs: int,
    evaluate: Optional[Callable[[Language], Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """Train ``config_path`` for ``epochs`` epochs in this process.

    Returns the trained ``nlp``, the per-epoch records (epochs 1..E, the last one of the final
    model; empty without ``evaluate``), the steps and the training and evaluation seconds:
    wall-clock, and the training's CPU seconds of this process, which other processes on the
    machine do not inflate (with one torch thread, they measure the work itself).
    """
    per_epoch = batches_per_epoch(config_path, overrides)
    overrides = {
        **overrides,
        "training.optimizer.learn_rate.total_steps": epochs * per_epoch,
        "training.max_steps": epochs * per_epoch,
        "training.max_epochs": 0,
        "training.eval_frequency": NO_DEV_EVAL,
    }
    config = load_config(config_path, overrides=overrides, interpolate=False)
    config["training"]["logger"] = {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}
    records: List[Dict[str, Any]] = []
    timed = {"eval": 0.0, "eval_cpu": 0.0}
    if evaluate is not None:

        def timed_evaluate(nlp: Language) -> Dict[str, Any]:
            start, start_cpu = time.perf_counter(), time.process_time()
            result = evaluate(nlp)
            timed["eval"] += time.perf_counter() - start
            timed["eval_cpu"] += time.process_time() - start_cpu
            return result

        probe = _epoch_probe(timed_evaluate, epochs, records)
        registry.callbacks.register(PROBE, func=lambda: probe)
        config["training"]["before_update"] = {"@callbacks": PROBE}
    start, start_cpu = time.perf_counter(), time.process_time()
    nlp = init_nlp(config)
    nlp, _ = train(nlp, None, stdout=io.StringIO(), stderr=io.StringIO())
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - start_cpu
    if evaluate is not None:
        records.append({"epoch": epochs, "step": epochs * per_epoch, **timed_evaluate(nlp)})
    return {
        "nlp": nlp,
        "records": records,
        "overrides": overrides,
        "steps": epochs * per_epoch,
        "batches_per_epoch": per_epoch,
        "train_seconds": seconds - timed["eval"],
        "eval_seconds": timed["eval"],
        "train_cpu_seconds": cpu_seconds - timed["eval_cpu"],
    }

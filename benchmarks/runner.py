"""In-process training with an evaluation at every epoch boundary, and the metrics it records.

A run is spaCy's own training loop (the code behind ``spacy train``) with the project's config
and overrides for ``E × batches per epoch`` steps, as ``train --epochs`` does; a
``before_update`` probe scores each epoch's model on the validation slice and the test split.
The test scores never feed training or selection.
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
from spacy_dallmi.interpolation import interpolate_into
from spacy_dallmi.scorer import GOLD_POSITIVE_CUTOFF, score_cats_map
from spacy_dallmi.selection import pu_win_rate
from spacy_dallmi.training import batches_per_epoch

PROBE = "paired_benchmark.epoch_probe.v1"
NO_DEV_EVAL = 10**9  # spaCy's own dev evaluation, pushed past the end of every run
PREDICT_BATCH = 64
TEST_KEYS = ("macro_ap", "micro_ap", "macro_f", "macro_ap_rounded", "ap_per_type")  # cats_<key>


def predict(nlp: Language, texts: Sequence[str]) -> np.ndarray:
    """Probabilities (docs × labels) of the pipeline's classifier; batched by length."""
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

    def __init__(self, path, labels: List[str]) -> None:
        docs = read_docs(path)
        self.texts = [doc.text for doc in docs]
        self.matrix = np.array([[doc.cats[label] for label in labels] for doc in docs])
        self.labels = labels
        blank = spacy.blank("en")
        self._examples = []
        for text, row in zip(self.texts, self.matrix):
            reference = blank.make_doc(text)
            reference.cats = {label: float(v) for label, v in zip(labels, row)}
            self._examples.append(Example(blank.make_doc(text), reference))

    def score(self, probabilities: np.ndarray) -> Dict[str, Any]:
        for example, row in zip(self._examples, probabilities):
            example.predicted.cats = {label: float(p) for label, p in zip(self.labels, row)}
        with warnings.catch_warnings():
            # a validation slice may lack a known positive of a rare label: the scorer leaves
            # it out and says so, which would flood the log every epoch
            warnings.simplefilter("ignore")
            return score_cats_map(self._examples, labels=self.labels)


class Evaluator:
    """Scores a pipeline on the validation slice, against each ratio's partial labels (the
    label-free criteria; with the ``source`` model, ``pu_win``: the share of resamples on which
    the PU score beats the source's) and the full labels (analysis only), and on the test split
    (macro F1 also at per-label thresholds fitted on each validation labelling)."""

    def __init__(self, corpora: SeedCorpora, source: Optional[Language] = None) -> None:
        self.val_full = LabelledSet(corpora.val_full, corpora.labels)
        self.val_partial = {}
        for ratio in RATIOS:
            partial = LabelledSet(corpora.val(ratio), corpora.labels)
            if partial.texts != self.val_full.texts:
                raise ValueError(f"validation slices of ratio {ratio} and full labels differ")
            self.val_partial[ratio_name(ratio)] = partial
        self.test = LabelledSet(corpora.test, corpora.labels)
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
        test = {key: scores[f"cats_{key}"] for key in TEST_KEYS}
        test["ece"] = expected_calibration_error(test_probs, self.test.matrix)

        def thresholded_f1(val: LabelledSet) -> float:
            fitted = fit_threshold_columns(val.matrix, val_probs, val.labels)
            cuts = [fitted[label]["threshold"] for label in val.labels]
            return macro_f1(test_probs, self.test.matrix, cuts)

        test["macro_f_thresholds"] = {n: thresholded_f1(s) for n, s in self.val_partial.items()}
        test["macro_f_full_thresholds"] = thresholded_f1(self.val_full)
        return {"val": val, "test": test}


class WeightAverage:
    """The running uniform mean of a classifier's weights over the snapshots given to :meth:`add`,
    kept in ``pipeline`` (one of the same architecture, e.g. a copy of the source model).

    Averaging the weights a fine-tuning run passes through (SWA, Izmailov et al. 2018) may land
    in a flatter region than any one of them; snapshots of one run share a basin, so their
    mean is a model of its own. The k-th snapshot is blended in with weight 1/k by the same
    :func:`~spacy_dallmi.interpolation.interpolate_into` as the WiSE-FT blends. The screen of
    ``dallmi_swa`` and ``ft_partial_swa`` (benchmarks/README.md) found no gain, so the
    product does not use it.
    """

    def __init__(self, pipeline: Language) -> None:
        self.pipeline = pipeline
        self.count = 0

    def add(self, nlp: Language) -> None:
        """Fold ``nlp``'s classifier weights into the mean."""
        self.count += 1
        interpolate_into(self.pipeline, self.pipeline, nlp, 1.0 / self.count)


def effective_settings(config_path: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """The settings a config trains with after overrides, defaults filled in, and its
    learning rate: what a run's result is compared on, so a changed default is noticed."""
    config = load_config(config_path, overrides=overrides, interpolate=True)
    block = config["initialize"]["before_init"]["settings"]
    settings = registry.resolve({"settings": block})["settings"].to_dict()
    settings["learn_rate"] = config["training"]["optimizer"]["learn_rate"]["initial_rate"]
    return settings


def train_run(
    config_path: str,
    overrides: Dict[str, Any],
    epochs: int,
    evaluate,
    average_from=(),
    load_pipeline: Optional[Callable[[], Language]] = None,
) -> Dict[str, Any]:
    """Train ``config_path`` for ``epochs`` epochs in this process: the trained ``nlp``, the
    records of epochs 1..E (the last of the final model), the steps, the wall-clock and CPU
    seconds (which other processes do not inflate) of training and of evaluation, and for each
    epoch k of ``average_from`` the mean of the weights at the ends of epochs k..E, kept in a
    pipeline from ``load_pipeline``."""
    per_epoch = batches_per_epoch(config_path, overrides)
    steps = epochs * per_epoch
    overrides = {**overrides, "training.optimizer.learn_rate.total_steps": steps,
                 "training.max_steps": steps, "training.max_epochs": 0,
                 "training.eval_frequency": NO_DEV_EVAL}  # fmt: skip
    config = load_config(config_path, overrides=overrides, interpolate=False)
    config["training"]["logger"] = {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}
    records: List[Dict[str, Any]] = []
    timed = {"eval": 0.0, "eval_cpu": 0.0}
    averages = {first: WeightAverage(load_pipeline()) for first in average_from}

    def record(nlp: Language, epoch: int, step: int) -> None:
        start, start_cpu = time.perf_counter(), time.process_time()
        for first, average in averages.items():
            if epoch >= first:
                average.add(nlp)
        records.append({"epoch": epoch, "step": step, **evaluate(nlp)})
        timed["eval"] += time.perf_counter() - start
        timed["eval_cpu"] += time.process_time() - start_cpu

    def probe(nlp: Language, info: Dict[str, Any]) -> None:
        # when epoch e (1 ≤ e < epochs) starts, score the model that finished epoch e
        if (records[-1]["epoch"] if records else 0) < info["epoch"] < epochs:
            record(nlp, info["epoch"], info["step"])
            test_ap = records[-1]["test"]["macro_ap"]
            print(f"  epoch {info['epoch']}, step {info['step']}: test macro AP "
                  f"{100 * test_ap:.1f}", flush=True)  # fmt: skip

    registry.callbacks.register(PROBE, func=lambda: probe)
    config["training"]["before_update"] = {"@callbacks": PROBE}
    start, start_cpu = time.perf_counter(), time.process_time()
    nlp = init_nlp(config)
    nlp, _ = train(nlp, None, stdout=io.StringIO(), stderr=io.StringIO())
    # training alone: the probes' evaluations so far out, the final one not yet in
    train_seconds = time.perf_counter() - start - timed["eval"]
    train_cpu_seconds = time.process_time() - start_cpu - timed["eval_cpu"]
    record(nlp, epochs, steps)
    return {
        "nlp": nlp,
        "records": records,
        "overrides": overrides,
        "steps": steps,
        "batches_per_epoch": per_epoch,
        "train_seconds": train_seconds,
        "eval_seconds": timed["eval"],
        "train_cpu_seconds": train_cpu_seconds,
        "averages": averages,
    }

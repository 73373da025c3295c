"""The ``dallmi_textcat`` component: a multi-label classifier with two objectives.

``objective = "bce"`` is ordinary supervised training (absent labels are missing and
masked, as in spaCy's ``textcat_multilabel``); it trains the source model and the
fine-tuning baselines. ``objective = "dallmi"`` is positive-unlabeled adaptation: a
label value of exactly 1.0 is a known positive and anything else is unlabeled, and
each update minimises ``sum_l (Lvar_l + lambda * M_l)`` (see ``loss.py`` and
``mixup.py``).

The component owns its transformer (no listener) because MixUp needs the backbone's
embedding lookup inside the same update. Adaptation usually starts from a trained
source pipeline with ``[components.textcat] source = ...``; spaCy then keeps the
source's component settings and skips ``initialize``, so the adaptation settings and
data checks come from the ``spacy_dallmi.adapt_sourced.v1`` callback in
``[initialize.before_init]``.
"""

import math
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy
from spacy.language import Language
from spacy.pipeline.textcat_multilabel import MultiLabel_TextCategorizer
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import registry, resolve_dot_names
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d

from .architecture import tokenize
from .loss import LOSS_FORMS, MixUpConsistency, VariationalPULoss, masked_bce, sigmoid
from .mixup import MIXUP_LOCATIONS, forward_with_mixup, plan_mixup

OBJECTIVES = ("bce", "dallmi")

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_dallmi.TransformerClassifier.v1"
name = "all-MiniLM-L6-v2"
max_length = 128
pooling = "mean"
dropout = 0.1
nO = null
mixed_precision = false
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]


@Language.factory(
    "dallmi_textcat",
    assigns=["doc.cats"],
    default_config={
        "model": DEFAULT_MODEL,
        "threshold": 0.5,
        "objective": "bce",
        "loss_form": "norm",
        "mixup": True,
        "mixup_location": "word_embeddings",
        "mixup_alpha": 0.3,
        "mixup_beta": 0.3,
        "mixup_lambda": 1.0,
        "seed": 0,
        "scorer": {"@scorers": "spacy_dallmi.textcat_map_scorer.v1"},
    },
    default_score_weights={
        "cats_macro_ap": 1.0,
        "cats_micro_ap": 0.0,
        "cats_macro_auc": 0.0,
        "cats_macro_f": 0.0,
        "cats_macro_ap_rounded": 0.0,
        "cats_ap_per_type": None,
        "cats_f_per_type": None,
    },
)
def make_dallmi_textcat(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    threshold: float,
    objective: str,
    loss_form: str,
    mixup: bool,
    mixup_location: str,
    mixup_alpha: float,
    mixup_beta: float,
    mixup_lambda: float,
    seed: int,
    scorer: Optional[Callable],
) -> "DallmiTextCategorizer":
    """Create a ``dallmi_textcat`` component.

    threshold (float): probability at which a label counts as predicted, for F-scores.
    objective (str): ``bce`` (supervised) or ``dallmi`` (positive-unlabeled adaptation).
    loss_form (str): ``norm`` (the paper's Eq. 1) or ``log`` (VPU's original form).
    mixup (bool): add the MixUp consistency term to the ``dallmi`` objective.
    mixup_location (str): ``word_embeddings``, ``encoder`` or ``sentence``.
    mixup_alpha, mixup_beta (float): parameters of the Beta distribution of ``mu``.
    mixup_lambda (float): weight of the MixUp term.
    seed (int): seed of the MixUp pair and weight draws.
    """
    return DallmiTextCategorizer(
        nlp.vocab,
        model,
        name,
        threshold=threshold,
        objective=objective,
        loss_form=loss_form,
        mixup=mixup,
        mixup_location=mixup_location,
        mixup_alpha=mixup_alpha,
        mixup_beta=mixup_beta,
        mixup_lambda=mixup_lambda,
        seed=seed,
        scorer=scorer,
    )


def _validate_settings(settings: Dict[str, Any]) -> None:
    choices = {
        "objective": OBJECTIVES,
        "loss_form": LOSS_FORMS,
        "mixup_location": MIXUP_LOCATIONS,
    }
    for key, allowed in choices.items():
        if settings[key] not in allowed:
            raise ValueError(f"Unknown {key} {settings[key]!r}: use one of {allowed}.")
    for key in ("mixup_alpha", "mixup_beta"):
        if not settings[key] > 0:
            raise ValueError(f"{key} must be > 0 (a Beta parameter), got {settings[key]}.")
    if settings["mixup_lambda"] < 0:
        raise ValueError(f"mixup_lambda must be >= 0, got {settings['mixup_lambda']}.")


class DallmiTextCategorizer(MultiLabel_TextCategorizer):
    """Multi-label text classifier trained with BCE or with DALLMi's PU objective.

    ``doc.cats`` receives one probability per label. Labels, the threshold and the
    training settings live in ``self.cfg``, so they travel with the saved pipeline.
    """

    SETTINGS = (
        "objective",
        "loss_form",
        "mixup",
        "mixup_location",
        "mixup_alpha",
        "mixup_beta",
        "mixup_lambda",
        "seed",
    )

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "dallmi_textcat",
        *,
        threshold: float = 0.5,
        objective: str = "bce",
        loss_form: str = "norm",
        mixup: bool = True,
        mixup_location: str = "word_embeddings",
        mixup_alpha: float = 0.3,
        mixup_beta: float = 0.3,
        mixup_lambda: float = 1.0,
        seed: int = 0,
        scorer: Optional[Callable] = None,
    ) -> None:
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        self._step = 0
        self.configure(
            objective=objective,
            loss_form=loss_form,
            mixup=mixup,
            mixup_location=mixup_location,
            mixup_alpha=mixup_alpha,
            mixup_beta=mixup_beta,
            mixup_lambda=mixup_lambda,
            seed=seed,
        )

    def configure(self, **settings: Any) -> None:
        """Change training settings (e.g. switch a sourced component to ``dallmi``)."""
        unknown = set(settings) - set(self.SETTINGS)
        if unknown:
            raise ValueError(f"Unknown settings {sorted(unknown)}: use {self.SETTINGS}.")
        merged = {key: self.cfg.get(key) for key in self.SETTINGS}
        merged.update(settings)
        _validate_settings(merged)
        self.cfg.update(merged)
        self._rng = numpy.random.default_rng(self.cfg["seed"])

    @property
    def objective(self) -> str:
        return self.cfg["objective"]

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        result = super().from_bytes(bytes_data, exclude=exclude)
        self._rng = numpy.random.default_rng(self.cfg["seed"])
        return result

    def from_disk(self, path, *, exclude=tuple()):
        result = super().from_disk(path, exclude=exclude)
        self._rng = numpy.random.default_rng(self.cfg["seed"])
        return result

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        """Probabilities, one column per label. Empty texts are classified too: the
        encoder sees only its special tokens, so every doc gets ``doc.cats``."""
        docs = list(docs)
        if not docs:
            return self.model.ops.alloc2f(0, len(self.labels))
        return sigmoid(self.model.predict(docs))

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One training step with the configured objective.

        Raises ValueError for a label the component does not know, and for a loss
        that is not finite (naming the step), rather than training on silently.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "DallmiTextCategorizer.update")
        if not examples:
            return losses
        self._check_known_labels(examples)
        self._step += 1
        set_dropout_rate(self.model, drop)
        docs = [eg.predicted for eg in examples]
        if self.objective == "bce":
            loss = self._update_bce(docs, examples)
        else:
            loss = self._update_dallmi(docs, self._positives(examples))
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def _update_bce(self, docs: List[Doc], examples: List[Example]) -> float:
        logits, backprop = self.model.begin_update(docs)
        truths, not_missing = self._examples_to_truth(examples)
        d_logits, loss = masked_bce(logits, truths, self.model.ops.asarray(not_missing))
        self._check_finite(loss)
        backprop(d_logits)
        return loss

    def _update_dallmi(self, docs: List[Doc], positives: numpy.ndarray) -> float:
        cfg = self.cfg
        use_mixup = cfg["mixup"] and cfg["mixup_lambda"] > 0
        if use_mixup:
            plan = plan_mixup(positives, self._rng, cfg["mixup_alpha"], cfg["mixup_beta"])
        else:
            plan = plan_mixup(positives[:, :0], self._rng, 1.0, 1.0)
        tokens = tokenize(self.model, docs)
        location = cfg["mixup_location"]
        logits, mixed_logits, backprop = forward_with_mixup(self.model, tokens, plan, location)
        ops = self.model.ops
        d_logits, loss = VariationalPULoss(cfg["loss_form"])(logits, ops.asarray2f(positives))
        d_mixed = ops.alloc2f(*mixed_logits.shape)
        if len(plan):
            rows = ops.xp.arange(len(plan))
            cols = ops.asarray1i(plan.labels)
            weight = ops.asarray1f(plan.weight)
            p_unlabeled = sigmoid(logits[ops.asarray1i(plan.unlabeled), cols])
            targets = weight + (1.0 - weight) * p_unlabeled
            d_q, mix_loss = MixUpConsistency(cfg["loss_form"])(mixed_logits[rows, cols], targets)
            d_mixed[rows, cols] = cfg["mixup_lambda"] * d_q
            loss += cfg["mixup_lambda"] * mix_loss
        self._check_finite(loss)
        backprop(d_logits, d_mixed)
        return loss

    def _positives(self, examples: List[Example]) -> numpy.ndarray:
        """Known positives (value exactly 1.0) as a 0/1 matrix; all else is unlabeled."""
        positives = numpy.zeros((len(examples), len(self.labels)), dtype="float32")
        for i, eg in enumerate(examples):
            cats = eg.reference.cats
            for j, label in enumerate(self.labels):
                positives[i, j] = cats.get(label) == 1.0
        return positives

    def _check_known_labels(self, examples: Iterable[Example]) -> None:
        known = set(self.labels)
        for i, eg in enumerate(examples):
            unknown = sorted(set(eg.reference.cats) - known)
            if unknown:
                raise ValueError(
                    f"Component '{self.name}' does not know the label(s) {unknown} found in "
                    f"example {i} of the batch ({eg.reference.text[:60]!r}). Its labels are "
                    f"{list(self.labels)}. A sourced component keeps the source pipeline's "
                    "labels: map the data's labels onto them or drop the unknown ones."
                )

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise ValueError(
                f"The {self.objective} loss of component '{self.name}' is {loss} at update "
                f"step {self._step}. Training stopped instead of going on with broken "
                "weights: lower the learning rate, check the data for empty batches, or "
                "turn off mixed precision."
            )

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """Add labels (from ``labels`` or the examples) and initialise the model.

        With the ``dallmi`` objective the training data is checked as well; see
        :meth:`check_training_setup`.
        """
        super().initialize(get_examples, nlp=nlp, labels=labels)
        if self.objective == "dallmi":
            self.check_training_setup(get_examples(), nlp)

    def check_training_setup(
        self, examples: Iterable[Example], nlp: Optional[Language] = None
    ) -> None:
        """Check training data and settings before the first update.

        * a label in the data that the component does not know -> error naming it;
        * a label without any known positive -> warning naming it (the PU loss only
          sees labels with positives, so it is left out);
        * for ``dallmi``, ``[training] accumulate_gradient > 1`` -> error, because it
          splits the cycle batcher's batches and breaks their one-positive-per-label
          guarantee.
        """
        examples = list(examples)
        self._check_known_labels(examples)
        if nlp is not None and self.objective == "dallmi":
            accumulate = nlp.config.get("training", {}).get("accumulate_gradient", 1)
            if accumulate > 1:
                raise ValueError(
                    f"[training] accumulate_gradient = {accumulate} splits each batch into "
                    f"sub-batches, so the cycle batcher's guarantee (a positive of every "
                    f"label per batch) no longer holds for the DALLMi objective of "
                    f"'{self.name}'. Set accumulate_gradient = 1 and pick the batch size "
                    "you want directly (e.g. spacy_dallmi.cycle_batcher.v1 size)."
                )
        positives = self._positives(examples).sum(axis=0)
        missing = [label for label, n in zip(self.labels, positives) if n == 0]
        if missing:
            warnings.warn(
                f"Component '{self.name}': no known positive for label(s) {missing} in the "
                f"{len(examples)} training examples. The PU loss leaves them out; other "
                "objectives only ever see them as negative or missing.",
                stacklevel=2,
            )


@registry.callbacks("spacy_dallmi.adapt_sourced.v1")
def make_adapt_sourced_callback(
    component: str = "textcat",
    objective: str = "dallmi",
    loss_form: str = "norm",
    mixup: bool = True,
    mixup_location: str = "word_embeddings",
    mixup_alpha: float = 0.3,
    mixup_beta: float = 0.3,
    mixup_lambda: float = 1.0,
    seed: int = 0,
) -> Callable[[Language], Language]:
    """``[initialize.before_init]`` callback that prepares a sourced component.

    spaCy copies a sourced component with its source settings and does not call its
    ``initialize``. This callback switches it to the given objective and settings,
    then runs :meth:`DallmiTextCategorizer.check_training_setup` on the training
    corpus named by ``[training] train_corpus``.
    """
    settings = {
        "objective": objective,
        "loss_form": loss_form,
        "mixup": mixup,
        "mixup_location": mixup_location,
        "mixup_alpha": mixup_alpha,
        "mixup_beta": mixup_beta,
        "mixup_lambda": mixup_lambda,
        "seed": seed,
    }
    _validate_settings(settings)

    def adapt_sourced(nlp: Language) -> Language:
        if component not in nlp.component_names:
            raise ValueError(
                f"spacy_dallmi.adapt_sourced.v1: no component '{component}' in the pipeline "
                f"(components: {nlp.component_names}). Set `component` to its name."
            )
        pipe = nlp.get_pipe(component)
        if not isinstance(pipe, DallmiTextCategorizer):
            raise ValueError(
                f"spacy_dallmi.adapt_sourced.v1: component '{component}' is a "
                f"{type(pipe).__name__}, not a dallmi_textcat."
            )
        pipe.configure(**settings)
        config = nlp.config.interpolate()
        (corpus,) = resolve_dot_names(config, [config["training"]["train_corpus"]])
        pipe.check_training_setup(corpus(nlp), nlp)
        return nlp

    return adapt_sourced

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
data checks come from the ``spacy_dallmi.adapt_sourced.v2`` callback in
``[initialize.before_init]``.
"""

import inspect
import math
import warnings
from dataclasses import fields
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline.textcat_multilabel import MultiLabel_TextCategorizer
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import registry, resolve_dot_names
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d
from wasabi import msg

from .architecture import has_transformer, tokenize
from .inference import BucketedPipeMixin
from .loss import VariationalPULoss, largest_losses, masked_bce, sigmoid
from .mixup import forward_with_mixup, mixup_consistency, plan_mixup
from .settings import SETTING_NAMES, DallmiSettings
from .teacher import calibration, mixture_posterior, posterior, unlabeled_shares

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


def _with_settings_parameters(factory: Callable) -> Callable:
    """Declare every :class:`DallmiSettings` field as a keyword argument of ``factory``.

    spaCy builds a factory's config schema from its signature: only a parameter can be
    set flat (``add_pipe(..., config={"mixup_lambda": 0.3})`` or a key of
    ``[components.textcat]``, as for spaCy's own components), checked for its type and
    written to the saved ``config.cfg``. Making the parameters from the dataclass's fields
    keeps their names, types and defaults defined once, in ``settings.py``; ``factory``
    receives them as ``**settings``.
    """
    signature = inspect.signature(factory)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    added = [
        inspect.Parameter(
            field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default, annotation=field.type
        )
        for field in fields(DallmiSettings)
    ]
    factory.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
    return factory


@Language.factory(
    "dallmi_textcat",
    assigns=["doc.cats"],
    default_config={
        "model": DEFAULT_MODEL,
        "threshold": 0.5,
        "bucket_window": 1024,
        **DallmiSettings().to_dict(),
        "scorer": {"@scorers": "spacy_dallmi.textcat_map_scorer.v1"},
    },
    default_score_weights={
        "cats_macro_ap": 1.0,
        "cats_micro_ap": 0.0,
        "cats_macro_auc": 0.0,
        "cats_macro_f": 0.0,
        "cats_macro_ap_rounded": 0.0,
        "cats_pu_score": 0.0,
        "cats_ap_per_type": None,
        "cats_f_per_type": None,
    },
)
@_with_settings_parameters
def make_dallmi_textcat(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    threshold: float,
    bucket_window: int,
    scorer: Optional[Callable],
    **settings: Any,
) -> "DallmiTextCategorizer":
    """Create a ``dallmi_textcat`` component.

    threshold (float): probability at which a label counts as predicted, for F-scores.
    bucket_window (int): ``pipe`` sorts this many docs at a time by length, so batches
        hold texts of similar length (0 = arrival order); see ``inference.py``.
    **settings: how the component trains, flat: every field of :class:`DallmiSettings`
        (documented in ``settings.py``), defaulting to the dataclass's defaults. A value
        of the wrong type is confection's error and a bad value the dataclass's, each
        naming the setting.
    """
    return DallmiTextCategorizer(
        nlp.vocab,
        model,
        name,
        threshold=threshold,
        bucket_window=bucket_window,
        settings=DallmiSettings(**settings),
        scorer=scorer,
    )


class DallmiTextCategorizer(BucketedPipeMixin, MultiLabel_TextCategorizer):
    """Multi-label text classifier trained with BCE or with DALLMi's PU objective.

    ``doc.cats`` receives one probability per label. Labels, the threshold and the
    training settings live in ``self.cfg``, so they travel with the saved pipeline.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "dallmi_textcat",
        *,
        threshold: float = 0.5,
        bucket_window: int = 0,
        settings: Optional[DallmiSettings] = None,
        scorer: Optional[Callable] = None,
    ) -> None:
        super().__init__(vocab, model, name, threshold=threshold, scorer=scorer)
        if isinstance(bucket_window, bool) or not (
            isinstance(bucket_window, int) and bucket_window >= 0
        ):
            raise ValueError(f"bucket_window must be an integer >= 0, got {bucket_window!r}.")
        self.cfg["bucket_window"] = bucket_window
        self._step = 0
        self._teacher: Optional[Dict[str, numpy.ndarray]] = None  # set_teacher, not saved
        self._teacher_examples: List[Example] = []  # set_teacher's, for teacher_refresh_steps
        self._split = numpy.zeros(0, dtype=bool)  # set_teacher: the teacher_split labels
        self.calibration: Optional[float] = None  # set_teacher: the source's, for the split
        self._priors: Optional[numpy.ndarray] = None  # set_teacher: loss_form "nnpu"'s
        self.configure(settings or DallmiSettings())

    def configure(self, settings: Optional[DallmiSettings] = None, **changes: Any) -> None:
        """Replace the training settings, or change some of them by keyword
        (e.g. ``configure(objective="dallmi")`` to adapt a sourced component)."""
        unknown = sorted(set(changes) - set(SETTING_NAMES))
        if unknown:
            raise ValueError(f"Unknown settings {unknown}: use {SETTING_NAMES}.")
        base = settings if settings is not None else self.settings
        merged = DallmiSettings(**{**base.to_dict(), **changes})
        self.cfg.update(merged.to_dict())
        self._rng = numpy.random.default_rng(merged.seed)

    @property
    def settings(self) -> DallmiSettings:
        """The current training settings (stored in ``self.cfg``)."""
        return DallmiSettings.from_dict(self.cfg)

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
        self._require_model()
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

        Raises ValueError for a label the component does not know, a label value the
        objective does not define, and a loss that is not finite (naming the step),
        rather than training on silently. The ``dallmi`` loss's PU term is negative by
        construction in its norm and log forms (``mean_U p - mean_P p``; a teacher BCE adds a
        positive term; ``nnpu``'s risk is not negative): lower is better.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "DallmiTextCategorizer.update")
        if not examples:
            return losses
        self._require_model()
        self._check_known_labels(examples)
        refresh = self.settings.teacher_refresh_steps
        if refresh and self._step and self._step % refresh == 0 and self._teacher_examples:
            self.set_teacher(self._teacher_examples)  # the model trained so far teaches now
        self._step += 1
        set_dropout_rate(self.model, drop)
        docs = [eg.predicted for eg in examples]
        if self.objective == "bce":
            logits, backprop = self.model.begin_update(docs)
            loss, d_logits = self.get_loss(examples, logits)
            self._check_finite(loss)
            backprop(d_logits)
        else:
            loss = self._update_dallmi(docs, self._positives(examples))
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Floats2d) -> Tuple[float, Floats2d]:
        """``(loss, d_scores)`` for the model's output ``scores``, which are LOGITS.

        spaCy's inherited version is a squared error on probabilities; this model
        outputs logits, so the configured objective is computed on them instead: the
        (masked, optionally smoothed, WAN-weighted or with its largest losses rejected) BCE,
        or the variational PU loss without MixUp (which needs its own forward pass, see
        :meth:`update`).
        """
        examples = list(examples)
        ops = self.model.ops
        settings = self.settings
        if self.objective == "dallmi":
            d_scores, loss = self._pu_loss()(scores, ops.asarray2f(self._positives(examples)))
            return loss, d_scores
        truths, observed = self._truths(examples)
        unlabeled = (truths == 0.0) & observed.astype(bool)
        if settings.teacher_weight > 0:
            teacher = self._teacher_targets([eg.predicted.text for eg in examples])
            truths = numpy.where(unlabeled, settings.teacher_weight * teacher, truths)
        smoothing = settings.label_smoothing
        targets = truths * (1.0 - smoothing) + smoothing / 2.0
        if settings.large_loss_rejection > 0:
            rejected = largest_losses(
                scores,
                ops.asarray2f(targets.astype("float32")),
                ops.asarray2f(unlabeled.astype("float32")),
                settings.large_loss_rejection,
            )
            observed = observed * (1.0 - ops.to_numpy(rejected))
        weights = None
        if settings.negative_weighting == "wan" and len(self.labels) > 1:
            weights = ops.asarray2f(
                numpy.where(truths == 1.0, 1.0, 1.0 / (len(self.labels) - 1)).astype("float32")
            )
        d_scores, loss = masked_bce(
            scores, ops.asarray2f(targets), ops.asarray2f(observed), weights
        )
        return loss, d_scores

    def _update_dallmi(self, docs: List[Doc], positives: numpy.ndarray) -> float:
        settings = self.settings
        known, teacher = positives, None
        if settings.teacher_split and settings.teacher_weight > 0:
            teacher = self._teacher_targets([doc.text for doc in docs])
            positives = positives * ~self._split  # the teacher's labels leave PU and MixUp
        weight_now = settings.mixup_weight(self._step)
        if weight_now > 0:
            plan = plan_mixup(
                positives,
                self._rng,
                settings.mixup_alpha,
                settings.mixup_beta,
                pairs=settings.mixup_pairs,
            )
        else:
            plan = plan_mixup(positives[:, :0], self._rng, 1.0, 1.0)
        tokens = tokenize(self.model, docs)
        logits, mixed_logits, backprop = forward_with_mixup(
            self.model, tokens, plan, settings.mixup_location
        )
        ops = self.model.ops
        d_logits, loss = self._pu_loss()(logits, ops.asarray2f(positives))
        mixup_form = "log" if settings.loss_form == "log" else "norm"
        d_mixed, mix_loss = mixup_consistency(
            ops, logits, mixed_logits, plan, mixup_form, weight_now, settings.mixup_pairs
        )
        loss += mix_loss
        if teacher is not None:  # BCE on the teacher's labels, normalised over every entry
            targets = ops.asarray2f(numpy.where(known == 1.0, 1.0, teacher))
            everything = ops.asarray2f(numpy.ones_like(known))
            on_split = ops.asarray2f(numpy.broadcast_to(self._split, known.shape).astype("float32"))
            d_teacher, teacher_loss = masked_bce(logits, targets, everything, on_split)
            d_logits = d_logits + settings.teacher_weight * d_teacher
            loss += settings.teacher_weight * teacher_loss
        elif settings.teacher_weight > 0:
            teacher = ops.asarray2f(self._teacher_targets([doc.text for doc in docs]))
            unlabeled = ops.asarray2f((positives == 0).astype("float32"))
            d_teacher, teacher_loss = masked_bce(logits, teacher, unlabeled)
            d_logits = d_logits + settings.teacher_weight * d_teacher
            loss += settings.teacher_weight * teacher_loss
        self._check_finite(loss)
        backprop(d_logits, d_mixed)
        return loss

    def _pu_loss(self) -> VariationalPULoss:
        settings = self.settings
        if settings.loss_form != "nnpu":
            return VariationalPULoss(settings.loss_form, settings.positive_term)
        if self._priors is None:
            raise ValueError(
                f"loss_form = 'nnpu' of component '{self.name}' needs each label's share of "
                "positives among its unlabeled entries, estimated from the source model's "
                "predictions on the training docs: train a sourced config whose "
                "[initialize.before_init] is spacy_dallmi.adapt_sourced.v2, or use 'norm'."
            )
        return VariationalPULoss("nnpu", settings.positive_term, self._priors)

    def set_teacher(self, examples: Iterable[Example]) -> None:
        """Record the current model's (the source's) targets ``q`` for the training docs'
        unlabeled entries, for ``teacher_weight``: its probabilities, or a posterior made
        from them (``teacher_target``; see :mod:`spacy_dallmi.teacher`), and which labels
        ``teacher_split`` gives the teacher, both with the settings in force: after
        :meth:`configure` changes a teacher setting, call it again. With
        ``teacher_refresh_steps``, :meth:`update` calls it again on the same examples. It
        also estimates ``loss_form = "nnpu"``'s priors from the same predictions (each
        label's share of positives among its unlabeled entries, at least one of them), so a
        refresh re-estimates them from the model being trained.
        """
        examples = list(examples)
        self._teacher_examples = examples if self.settings.teacher_refresh_steps else []
        docs = [eg.predicted for eg in examples]
        batches = [self.predict(docs[i : i + 64]) for i in range(0, len(docs), 64)]
        probabilities = numpy.concatenate([self.model.ops.to_numpy(b) for b in batches])
        target = self.settings.teacher_target
        known = self._positives(examples).astype(bool)
        # teacher_split: the labels on which the source expects at least the known positives,
        # if it is calibrated on these docs at all
        self.calibration = calibration(probabilities, known)
        # nnpu: at least one hidden positive per label, so that its known ones keep a weight
        unlabeled = numpy.maximum((~known).sum(axis=0), 1)
        shares = numpy.maximum(unlabeled_shares(probabilities, known), 1 / unlabeled)
        self._priors = numpy.nan_to_num(shares).astype("float32")
        trusted = not self.calibration < self.settings.teacher_calibration  # nan: no evidence
        self._split = (probabilities.sum(axis=0) >= known.sum(axis=0)) & trusted
        if target != "source":
            make = posterior if target == "posterior" else mixture_posterior
            probabilities = make(probabilities, known)
        self._teacher = {doc.text: row.astype("float32") for doc, row in zip(docs, probabilities)}

    def _teacher_targets(self, texts: List[str]) -> numpy.ndarray:
        teacher = self._teacher
        if teacher is None:
            raise ValueError(
                f"teacher_weight = {self.settings.teacher_weight} of component '{self.name}' "
                "needs the source model's predictions on the training docs: train a sourced "
                "config whose [initialize.before_init] is spacy_dallmi.adapt_sourced.v2, or "
                "set teacher_weight = 0."
            )
        missing = [text for text in texts if text not in teacher]
        if missing:
            raise ValueError(
                f"Component '{self.name}' has no teacher prediction for the training doc "
                f"{missing[0][:60]!r}: the teacher covers the corpus read at initialization."
            )
        return numpy.stack([teacher[text] for text in texts])

    def _label_values(self, examples: List[Example], allowed: Tuple[float, ...]) -> None:
        """Refuse label values that the objective does not define, naming doc and label."""
        for i, eg in enumerate(examples):
            for label, value in eg.reference.cats.items():
                if value not in allowed:
                    raise ValueError(
                        f"Component '{self.name}' ({self.objective} objective): label "
                        f"{label!r} of example {i} ({eg.reference.text[:60]!r}) has the value "
                        f"{value!r}; only {' or '.join(map(str, allowed))} are allowed "
                        "(1.0 = positive, 0.0 = negative for bce or unlabeled for dallmi; "
                        "leave a label out of doc.cats to mark it missing)."
                    )

    def _positives(self, examples: List[Example]) -> numpy.ndarray:
        """Known positives (value 1.0) as a 0/1 matrix; 0.0 or absent is unlabeled."""
        self._label_values(examples, (0.0, 1.0))
        positives = numpy.zeros((len(examples), len(self.labels)), dtype="float32")
        for i, eg in enumerate(examples):
            cats = eg.reference.cats
            for j, label in enumerate(self.labels):
                positives[i, j] = cats.get(label) == 1.0
        return positives

    def _truths(self, examples: List[Example]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """0/1 truths and the mask of observed entries (spaCy's rule: absent = missing)."""
        self._label_values(examples, (0.0, 1.0))
        truths, observed = self._examples_to_truth(examples)
        return self.model.ops.to_numpy(truths), numpy.asarray(observed)

    def _require_model(self) -> None:
        if not has_transformer(self.model):
            raise ValueError(
                f"Component '{self.name}' has no model weights yet: call nlp.initialize() "
                "(or train it with `spacy train`), or load a trained pipeline with "
                "spacy.load(path), before using it."
            )

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
        self.check_training_setup(get_examples(), nlp)

    def check_training_setup(
        self, examples: Iterable[Example], nlp: Optional[Language] = None
    ) -> None:
        """Check training data and settings before the first update.

        * a label in the data that the component does not know -> error naming it;
        * a label value other than 0.0 or 1.0 -> error naming the doc and label;
        * for ``dallmi``: no known positive at all -> error (there is nothing to adapt
          to); a label without any known positive -> warning naming it (the PU loss
          only sees labels with positives, so it is left out);
        * for ``dallmi``, ``[training] accumulate_gradient > 1`` -> error, because it
          splits the cycle batcher's batches and breaks their one-positive-per-label
          guarantee.
        """
        examples = list(examples)
        self._check_known_labels(examples)
        if self.objective == "bce":
            self._truths(examples)
            return
        if nlp is not None:
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
        if not positives.any():
            raise ValueError(
                f"Component '{self.name}': none of the {len(examples)} training examples has "
                "a known positive label (a cats value of 1.0), so DALLMi has nothing to adapt "
                "to. Check that the target data's labels were read (their names must match "
                f"the component's labels {list(self.labels)})."
            )
        missing = [label for label, n in zip(self.labels, positives) if n == 0]
        if missing:
            warnings.warn(
                f"Component '{self.name}': no known positive for label(s) {missing} in the "
                f"{len(examples)} training examples. The PU loss leaves them out (with "
                "teacher_split and a source calibrated on the target, the teacher trains "
                "them).",
                stacklevel=2,
            )


@registry.callbacks("spacy_dallmi.adapt_sourced.v2")
def make_adapt_sourced_callback(
    component: str = "textcat",
    settings: DallmiSettings = DallmiSettings(objective="dallmi"),
) -> Callable[[Language], Language]:
    """``[initialize.before_init]`` callback that prepares a sourced component.

    spaCy copies a sourced component with its source settings and does not call its
    ``initialize``. This callback gives it ``settings`` (a
    ``[initialize.before_init.settings]`` block, ``spacy_dallmi.DallmiSettings.v1``),
    records them in the pipeline's config so that the saved ``config.cfg`` says what
    was trained, then runs :meth:`DallmiTextCategorizer.check_training_setup` on the
    training corpus named by ``[training] train_corpus``.
    """

    def adapt_sourced(nlp: Language) -> Language:
        if component not in nlp.component_names:
            raise ValueError(
                f"spacy_dallmi.adapt_sourced.v2: no component '{component}' in the pipeline "
                f"(components: {nlp.component_names}). Set `component` to its name."
            )
        pipe = nlp.get_pipe(component)
        if not isinstance(pipe, DallmiTextCategorizer):
            raise ValueError(
                f"spacy_dallmi.adapt_sourced.v2: component '{component}' is a "
                f"{type(pipe).__name__}, not a dallmi_textcat."
            )
        pipe.configure(settings)
        # A sourced component's config block is the source's; Language.config is built
        # from these per-component blocks, so update it to the settings now in force.
        nlp._pipe_configs[component].update(settings.to_dict())
        config = nlp.config.interpolate()
        (corpus,) = resolve_dot_names(config, [config["training"]["train_corpus"]])
        pipe.check_training_setup(corpus(nlp), nlp)
        if settings.teacher_weight > 0 or settings.loss_form == "nnpu":
            pipe.set_teacher(corpus(nlp))
            if settings.teacher_split and settings.teacher_weight > 0:
                split = [label for label, on in zip(pipe.labels, pipe._split) if on]
                msg.info(
                    f"teacher_split: the source's calibration on the training docs is "
                    f"{pipe.calibration:.2f} (teacher_calibration {settings.teacher_calibration});"
                    f" the teacher ({settings.teacher_target}) trains {split or 'no label'}, "
                    "the PU loss the others."
                )
        if settings.objective == "dallmi" and settings.loss_form != "nnpu":
            msg.info(
                f"'{component}' adapts with DALLMi: its PU term is negative by construction "
                "(mean_U p - mean_P p per label, plus the MixUp term and any teacher BCE); "
                "lower is better."
            )
        return nlp

    return adapt_sourced

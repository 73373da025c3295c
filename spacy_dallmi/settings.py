"""The training settings of ``dallmi_textcat``: one definition, used everywhere.

The component factory takes these fields flat, as keys of ``[components.textcat]`` (its
parameters and default config are made from them), and builds a :class:`DallmiSettings`;
:meth:`DallmiTextCategorizer.configure` and the ``spacy_dallmi.adapt_sourced.v2`` callback
take one too. The dataclass is registered as ``spacy_dallmi.DallmiSettings.v1`` in
``registry.misc``, so the adaptation configs' ``[initialize.before_init.settings]`` block is
filled with the defaults below by spaCy itself, and the README's settings table is checked
against these fields by a test. Changing a default means changing it here, and nowhere else.

The defaults are not the paper's: they were chosen by measurement (see the README
and ``benchmarks/README.md``). ``PAPER_SETTINGS`` holds the paper's values, and
``configs/adapt_paper.cfg`` applies them.
"""

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Sequence

from spacy.util import registry

from .selection import check_confidence

OBJECTIVES = ("bce", "dallmi")
LOSS_FORMS = ("norm", "log", "nnpu")
POSITIVE_TERMS = ("mean", "l2")
MIXUP_LOCATIONS = ("word_embeddings", "encoder", "sentence")
NEGATIVE_WEIGHTINGS = ("uniform", "wan")
TEACHER_TARGETS = ("source", "posterior", "mixture")
#: Dev scores a shipped candidate may be guarded by ("" = no guard).
SELECTION_GUARDS = ("", "cats_pu_score", "cats_macro_ap")


@dataclass(frozen=True)
class DallmiSettings:
    """How ``dallmi_textcat`` trains; prediction does not depend on any of these.

    objective: ``bce`` (supervised; absent labels are missing) or ``dallmi``
        (positive-unlabeled adaptation: 1.0 is a known positive, anything else unlabeled).
    loss_form: ``norm`` (the paper's Eq. 1), ``log`` (VPU's original form) or ``nnpu``
        (Kiryo et al. 2017's non-negative PU risk with the sigmoid loss, each label's share of
        positives among its unlabeled entries estimated from the source model's scores, at
        least one; sourced runs only; MixUp takes the norm form).
    positive_term: ``mean`` (Eq. 1) or ``l2`` (the reference code's ``||p||_2`` of the
        positives' probabilities; norm form only, for parity experiments).
    mixup: add the MixUp consistency term to the ``dallmi`` objective.
    mixup_location: ``word_embeddings``, ``encoder`` (pooled output) or ``sentence`` (logits).
    mixup_alpha, mixup_beta: ``mu ~ Beta(alpha, beta)``.
    mixup_lambda: weight of the MixUp term. 0 is what the authors' code optimises (its
        MixUp term is a Python float and sends no gradient).
    mixup_warmup_steps: the weight grows linearly from 0 to ``mixup_lambda`` over this
        many updates; 0 applies the full weight from the first update.
    mixup_pairs: positive/unlabeled pairs drawn per label and step, their terms averaged.
    label_smoothing: ``bce`` only: targets ``y (1 - s) + s / 2`` ("assume negative" with
        label smoothing, AN-LS).
    negative_weighting: ``bce`` only: ``uniform``, or ``wan`` (negatives weighted
        ``1 / (L - 1)``, "weak assume negative"; both from Cole et al., CVPR 2021).
    large_loss_rejection: ``bce`` only: in every batch, this share of the unlabeled entries
        (value 0.0; pooled over labels) with the largest loss leaves the loss, which is
        averaged over the rest: the entries "assume negative" gets most wrong are the
        likeliest hidden positives, and a fine-tune that fits them as negatives forgets
        them. A fixed-rate variant of LL-R (Kim et al., CVPR 2022), whose rate grows from 0
        epoch by epoch. 0 = off.
    seed: seed of the MixUp pair and weight draws.
    teacher_weight: sourced runs: weight w of the starting (source) model's predictions on
        unlabeled target entries. ``bce``: an unlabeled entry's target is ``w·q`` instead of
        0; ``dallmi``: ``w ×`` the BCE of the unlabeled entries against ``q`` is added to
        the PU loss. 0 = off.
    teacher_target: ``q`` is the source probability ``p`` (``source``) or the posterior that
        an unlabeled entry is positive: ``(1 − c)·p / (1 − c·p)`` with ``c`` the label's
        share of known positives among its expected positives (``posterior``; Elkan &
        Noto), or estimated from the ranking of ``p`` alone (``mixture``; see
        :mod:`spacy_dallmi.teacher`).
    teacher_split: ``dallmi`` with a teacher (``teacher_weight > 0``; with 0 the PU loss
        trains every label): a label whose source model expects at least its
        known positives on the training docs (``Σ p ≥`` known: the source is consistent with
        the target's labels) is trained by the teacher alone, BCE with targets 1 (known) and
        ``q`` (unlabeled), normalised over all entries as the ``bce`` objective is; the PU loss
        and MixUp train the other labels, where the source under-predicts the target.
    teacher_refresh_steps: sourced runs with a teacher: every this many updates the teacher
        becomes the model being trained (self-training): its targets and ``teacher_split``
        are made again, as at the start, from the model's predictions on the training docs.
        0 = the source stays the teacher.
    teacher_calibration: ``teacher_split``: the least calibration of the source on the
        training docs (its expected positives over those the known positives and the ranking
        of its scores imply, pooled over labels: :func:`spacy_dallmi.teacher.calibration`)
        for any label to go to the teacher; below it the PU loss trains every label. 0 = the
        per-label test alone. With no label that has both known and unlabeled entries there
        is no estimate, and the per-label test decides alone.
    blend_alphas: WiSE-FT weights α tried when a sourced run picks the model it ships:
        ``model-best`` is the best dev score among the starting pipeline, the best
        checkpoint and the blends ``(1 − α)·source + α·model-last``; () = no blends.
    selection_confidence: sourced runs: a candidate replaces the starting pipeline only if
        its PU score beats the pipeline's on at least this share of paired bootstrap
        resamples of the dev documents (:mod:`spacy_dallmi.selection`); 0 = the best dev
        score wins.
    selection_guard: sourced runs: a dev score on which a candidate must score at least the
        starting pipeline to replace it ("" = no guard). With the adaptation configs'
        ``[training.score_weights]`` on ``cats_macro_ap`` (AP against the dev slice's partial
        labels), ``cats_pu_score`` ships the best partial AP among the candidates whose PU
        score is not below the source's (in the paired benchmarks: +1.0 to +1.8 macro AP
        points over the PU score alone on emotions, −0.2 to +2.1 on pubmed).
    """

    objective: str = "bce"
    loss_form: str = "norm"
    positive_term: str = "mean"
    mixup: bool = True
    mixup_location: str = "word_embeddings"
    mixup_alpha: float = 0.3
    mixup_beta: float = 0.3
    mixup_lambda: float = 0.1
    mixup_warmup_steps: int = 0
    mixup_pairs: int = 1
    label_smoothing: float = 0.0
    negative_weighting: str = "uniform"
    large_loss_rejection: float = 0.0
    seed: int = 0
    teacher_weight: float = 0.0
    teacher_target: str = "source"
    teacher_split: bool = False
    teacher_calibration: float = 0.5
    teacher_refresh_steps: int = 0
    blend_alphas: Sequence[float] = (0.25, 0.5, 0.75)
    selection_confidence: float = 0.0
    selection_guard: str = "cats_pu_score"

    def __post_init__(self) -> None:
        alphas = self.blend_alphas
        if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__iter__"):
            raise ValueError(f"blend_alphas must be a list of numbers in [0, 1], got {alphas!r}.")
        for alpha in alphas:
            if (
                isinstance(alpha, bool)
                or not isinstance(alpha, (int, float))
                or not 0 <= alpha <= 1
            ):
                raise ValueError(
                    f"blend_alphas must be numbers in [0, 1] (0 = the source model, 1 = the "
                    f"adapted one), got {alpha!r} in {list(alphas)}."
                )
        object.__setattr__(self, "blend_alphas", tuple(float(a) for a in alphas))
        choices = {
            "objective": OBJECTIVES,
            "loss_form": LOSS_FORMS,
            "positive_term": POSITIVE_TERMS,
            "mixup_location": MIXUP_LOCATIONS,
            "negative_weighting": NEGATIVE_WEIGHTINGS,
            "teacher_target": TEACHER_TARGETS,
            "selection_guard": SELECTION_GUARDS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}: use one of {allowed}.")
        for name in ("mixup_alpha", "mixup_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"{name} must be > 0 (a Beta parameter), got {getattr(self, name)}."
                )
        if not self.mixup_lambda >= 0:
            raise ValueError(f"mixup_lambda must be >= 0, got {self.mixup_lambda}.")
        for name, least, meaning in (
            ("mixup_warmup_steps", 0, "0 = no warm-up"),
            ("mixup_pairs", 1, "pairs per label and step"),
            ("teacher_refresh_steps", 0, "0 = the source stays the teacher"),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int) and value >= least):
                raise ValueError(
                    f"{name} must be a whole number >= {least} ({meaning}), got {value!r}."
                )
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}.")
        if self.teacher_refresh_steps and not self.teacher_weight > 0:
            raise ValueError(
                "teacher_refresh_steps refreshes the teacher: it needs teacher_weight > 0, got "
                f"teacher_weight = {self.teacher_weight}."
            )
        if not 0.0 <= self.teacher_calibration <= 1.0:
            raise ValueError(
                f"teacher_calibration must be in [0, 1], got {self.teacher_calibration}."
            )
        if self.teacher_split and self.objective != "dallmi":
            raise ValueError(
                "teacher_split splits the labels between the PU loss and the teacher: it needs "
                f"objective = 'dallmi', got objective = {self.objective!r}."
            )
        if not 0.0 <= self.large_loss_rejection < 1.0:
            raise ValueError(
                f"large_loss_rejection must be in [0, 1), got {self.large_loss_rejection}."
            )
        if self.large_loss_rejection > 0 and self.objective != "bce":
            raise ValueError(
                "large_loss_rejection leaves the unlabeled entries with the largest BCE out: it "
                f"needs objective = 'bce', got objective = {self.objective!r}."
            )
        check_confidence(self.selection_confidence)
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}.")
        if self.positive_term == "l2" and self.loss_form != "norm":
            raise ValueError(
                "positive_term = 'l2' (the reference code's norm of the positives' "
                "probabilities) is defined for loss_form = 'norm' only."
            )

    def mixup_weight(self, step: int) -> float:
        """The MixUp weight at update ``step`` (1-based), after the linear warm-up."""
        if not self.mixup:
            return 0.0
        if self.mixup_warmup_steps == 0:
            return self.mixup_lambda
        return self.mixup_lambda * min(1.0, step / self.mixup_warmup_steps)

    def to_dict(self) -> Dict[str, Any]:
        """The settings as JSON has them (``blend_alphas`` a list), as a saved cfg reads."""
        values = asdict(self)
        values["blend_alphas"] = list(self.blend_alphas)
        return values

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "DallmiSettings":
        """Build from a mapping that may hold other keys too (e.g. a component's cfg)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


SETTING_NAMES = tuple(f.name for f in fields(DallmiSettings))

#: DALLMi's PU loss and MixUp on every label, without the source teacher that
#: configs/adapt.cfg sets: the method as published (the paper's ablations are of this).
PU_ONLY = {"teacher_weight": 0.0, "teacher_target": "source", "teacher_split": False}

# The paper's settings (section 4 of the paper): the preset of configs/adapt_paper.cfg.
PAPER_SETTINGS = DallmiSettings(objective="dallmi", mixup_lambda=1.0, mixup_warmup_steps=0)
PAPER_TRAINING = {"learn_rate": 5e-5, "epochs": 12, "batch_size": 64, "max_length": 128}


# Registered as it is: confection reads the dataclass's own signature, so a config
# block is validated and filled from the field definitions above.
registry.misc("spacy_dallmi.DallmiSettings.v1")(DallmiSettings)

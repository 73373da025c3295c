"""The one registry of the methods the project compares (study and benchmarks), by the names
their metrics files and report rows use. A list of some kept elsewhere goes through
:func:`registered`, so a misspelt name fails at import. Constants only: no torch import.
"""

from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple, TypeVar

Names = TypeVar("Names", bound=Iterable[str])


@dataclass(frozen=True)
class MethodInfo:
    """A method's line in the report, and the target labels it trains on: ``"partial"`` (a
    ratio's labels with hidden positives, so it runs once per ratio), ``"full"`` or None."""

    description: str
    labels: Optional[str]


#: Every method, in the benchmarks' order.
METHOD_INFO: Dict[str, MethodInfo] = {
    "none": MethodInfo("the source model, no adaptation", None),
    "ft_partial": MethodInfo(
        "BCE fine-tuning on the partial labels (hidden positives count as negatives)", "partial"
    ),
    "ft_full": MethodInfo(
        "BCE fine-tuning on all labels (upper bound; does not depend on the ratio)", "full"
    ),
    "an_ls": MethodInfo(
        "AN-LS: fine-tuning, unlabeled = negative, label smoothing 0.1 (Cole et al. 2021)",
        "partial",
    ),
    "wan": MethodInfo("WAN: fine-tuning, negatives weighted 1/(L-1) (Cole et al. 2021)", "partial"),
    "aad": MethodInfo(
        "AAD: adversarial adaptation with distillation on the target texts, no target label "
        "(Ryu & Lee 2020); run by the benchmarks only",
        None,
    ),
    "dallmi": MethodInfo(
        "DALLMi as adapt ships it (configs/adapt.cfg): the PU loss, MixUp and label-balanced "
        "batches on the labels the source under-predicts, the source's posterior as the target "
        "of the others (teacher_split), if the source is calibrated on the target "
        "(teacher_calibration)",
        "partial",
    ),
    "dallmi_pu": MethodInfo(
        "DALLMi's PU loss and MixUp on every label, no teacher (the method as published, with "
        "this project's defaults); benchmarks only",
        "partial",
    ),
    "dallmi_lambda0": MethodInfo(
        "DALLMi's PU loss on every label without MixUp (lambda = 0: what the reference code "
        "optimises)",
        "partial",
    ),
    "dallmi_paper": MethodInfo(
        "DALLMi with the paper's preset (configs/adapt_paper.cfg)", "partial"
    ),
    "ft_teacher": MethodInfo(
        "fine-tuning with the source model's posterior as the target of unlabeled entries "
        "(teacher_weight 1, teacher_target posterior); benchmarks only",
        "partial",
    ),
    "dallmi_teacher": MethodInfo(
        "DALLMi plus 0.5 x the BCE of unlabeled entries against the source model's "
        "probabilities (teacher_weight 0.5); benchmarks only",
        "partial",
    ),
    "ft_teacher_source": MethodInfo(
        "fine-tuning with the source model's probability as the target of unlabeled entries "
        "(teacher_weight 1, teacher_target source: distillation); benchmarks only",
        "partial",
    ),
    "dallmi_posterior": MethodInfo(
        "DALLMi plus the BCE of unlabeled entries against the source model's posterior "
        "(teacher_weight 1, teacher_target posterior); benchmarks only",
        "partial",
    ),
    "ft_teacher_mixture": MethodInfo(
        "fine-tuning with the posterior estimated from the source's ranking (mixture "
        "proportion and density ratio) as the target of unlabeled entries (teacher_weight 1, "
        "teacher_target mixture); benchmarks only",
        "partial",
    ),
    "ft_llr": MethodInfo(
        "fine-tuning on the partial labels with large-loss rejection: per batch, the 20% of "
        "unlabeled entries with the largest loss leave it (large_loss_rejection 0.2; Kim et "
        "al. 2022); benchmarks only",
        "partial",
    ),
    "dallmi_self": MethodInfo(
        "DALLMi's PU loss on every label plus the BCE of unlabeled entries against a teacher "
        "that becomes the model being trained every 62 updates (self-training; teacher_target "
        "mixture, teacher_refresh_steps 62, about one emotions epoch); benchmarks only",
        "partial",
    ),
    "dallmi_nnpu": MethodInfo(
        "DALLMi as adapt ships it with the non-negative PU risk (loss_form nnpu, priors "
        "estimated from the source's ranking) where the PU loss trains; benchmarks only",
        "partial",
    ),
    "dallmi_split_any": MethodInfo(
        "DALLMi's teacher_split without the calibration test (teacher_calibration 0: the "
        "default before it); benchmarks only",
        "partial",
    ),
    "dallmi_lr1e4": MethodInfo(
        "DALLMi as adapt ships it at learning rate 1e-4 (the rate tuned for ft_partial on "
        "emotions) instead of adapt.cfg's 5e-5; benchmarks only",
        "partial",
    ),
    "dallmi_swa": MethodInfo(
        "DALLMi as adapt ships it, with the mean weights of epochs 1..E and 3..E (SWA) among "
        "the shipped candidates; benchmarks only",
        "partial",
    ),
    "ft_partial_swa": MethodInfo(
        "ft_partial at finetune.cfg's rate (5e-5, not the tuned 1e-4) with the mean weights of "
        "epochs 1..E and 3..E (SWA) among the shipped candidates; benchmarks only",
        "partial",
    ),
    "ft_partial_lr5e5": MethodInfo(
        "ft_partial at learning rate 5e-5 (finetune.cfg's and DALLMi's) instead of the rate "
        "tuned on the earlier, unconverged source models; benchmarks only",
        "partial",
    ),
}


def registered(names: Names, exactly: Optional[Tuple[str, ...]] = None) -> Names:
    """``names`` (method names, or a mapping keyed by them) as given, once each is a method of
    :data:`METHOD_INFO` and, with ``exactly``, they are those methods in that order; raises
    ValueError otherwise, so a list that has drifted stops the module loading."""
    unknown = [name for name in names if name not in METHOD_INFO]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}: the methods are {tuple(METHOD_INFO)}.")
    if exactly is not None and tuple(names) != exactly:
        raise ValueError(f"The methods {tuple(names)} must be {exactly}, in that order.")
    return names


#: Every method the study runs (AAD is benchmarked only), in report order.
ALL_METHODS = registered(
    ("none", "ft_partial", "an_ls", "wan", "ft_full", "dallmi", "dallmi_lambda0", "dallmi_paper")
)
#: Every method in the order ``benchmarks/paired.py`` trains and lists them.
BENCHMARK_METHODS = tuple(METHOD_INFO)
#: Methods of the study that read no hidden-label pattern: one run serves every ratio.
RATIO_FREE_METHODS = tuple(name for name in ALL_METHODS if METHOD_INFO[name].labels != "partial")
#: Methods whose learning rate (and, for DALLMi, settings) ``benchmarks/tune.py`` chooses.
TUNED_METHODS = registered(("dallmi", "ft_partial", "an_ls", "wan"))
METHOD_DESCRIPTIONS = {name: METHOD_INFO[name].description for name in ALL_METHODS}

"""Weight-space interpolation between the source model and the adapted one (WiSE-FT).

Wortsman et al. (2022) fine-tune end to end and then ship ``θ = (1 − α)·θ_source + α·θ_adapted``
with α chosen on held-out data: between a model that knows the source domain and one that has
seen the target, the blend often beats both, and α = 0 *is* the source model, so a selection
whose candidates include α = 0 can never ship something that scores worse on the dev set
than the model it started from. Both models share one architecture and one label set (the
adapted pipeline sources its classifier from the source pipeline), so every weight has a
partner: the transformer's floating-point tensors and the thinc layers' parameters are
blended one by one; integer buffers (position ids) are equal and kept.
"""

from typing import Dict

import torch
from spacy.language import Language
from thinc.api import Model

from .architecture import get_hf_objects
from .callbacks import find_textcat


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float in [0, 1], or a one-line error naming the setting."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"{name} must be a number in [0, 1] (0 = the source model, 1 = the adapted one), "
            f"got {alpha!r}."
        )
    return float(alpha)


def interpolate_into(target: Language, source: Language, adapted: Language, alpha: float) -> None:
    """Set ``target``'s classifier weights to ``(1 − alpha)·source + alpha·adapted``.

    ``target`` is a pipeline of the same architecture (e.g. another copy of ``adapted``); it
    may be ``adapted`` itself. Raises ValueError for an ``alpha`` outside [0, 1] or pipelines
    whose classifiers differ in labels or shapes.
    """
    alpha = check_alpha(alpha)
    models = [find_textcat(nlp) for nlp in (target, source, adapted)]
    if not models[0].labels == models[1].labels == models[2].labels:
        raise ValueError(
            "Interpolation needs the same labels in the source and the adapted classifier, "
            f"got {list(models[1].labels)} and {list(models[2].labels)}."
        )
    into, src, adp = (textcat.model for textcat in models)
    _blend_thinc(into, src, adp, alpha)
    _blend_torch(into, src, adp, alpha)


def _blend_thinc(into: Model, src: Model, adp: Model, alpha: float) -> None:
    for node, node_src, node_adp in zip(into.walk(), src.walk(), adp.walk()):
        for name in node.param_names:
            if not node.has_param(name):
                continue
            a, b = node_src.get_param(name), node_adp.get_param(name)
            if a.shape != b.shape:
                raise ValueError(f"Layer {node.name} param {name}: shapes {a.shape} != {b.shape}.")
            node.set_param(name, (1 - alpha) * a + alpha * b)


def _blend_torch(into: Model, src: Model, adp: Model, alpha: float) -> None:
    source_state = get_hf_objects(src).transformer.state_dict()
    adapted_state = get_hf_objects(adp).transformer.state_dict()
    blended: Dict[str, torch.Tensor] = {}
    for key, value in adapted_state.items():
        other = source_state[key]
        if value.shape != other.shape:
            raise ValueError(f"Transformer weight {key}: shapes {other.shape} != {value.shape}.")
        if value.is_floating_point():
            blended[key] = (1 - alpha) * other.to(value.device) + alpha * value
        else:
            blended[key] = value.clone()
    get_hf_objects(into).transformer.load_state_dict(blended)

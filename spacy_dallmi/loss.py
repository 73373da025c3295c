"""DALLMi's losses: the per-label variational PU loss, MixUp consistency and masked BCE.

Every loss here works on pre-sigmoid logits and returns ``(gradient, value)`` in
thinc's loss convention, with the gradient computed in closed form. Working from
logits keeps the log forms finite (log-sigmoid instead of ``log(sigmoid(z))``) and
lets one array module (NumPy or CuPy) serve CPU and GPU alike.
"""

from typing import Any, Literal, Optional, Tuple

from thinc.api import get_array_module
from thinc.loss import Loss

from .settings import LOSS_FORMS, POSITIVE_TERMS

LossForm = Literal["norm", "log", "nnpu"]
PositiveTerm = Literal["mean", "l2"]


def _check_choice(name: str, value: str, allowed: Tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}: use one of {allowed}.")


def sigmoid(z: Any) -> Any:
    """Numerically stable logistic function for an array of any module."""
    xp = get_array_module(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_sigmoid(z: Any) -> Any:
    """``log(sigmoid(z))`` computed as ``min(z, 0) - log1p(exp(-|z|))``, finite for any z."""
    xp = get_array_module(z)
    return xp.minimum(z, 0.0) - xp.log1p(xp.exp(-xp.abs(z)))


class _FormLoss(Loss):
    """A loss with a ``norm``/``log`` form whose gradient and value come together."""

    def __init__(self, form: LossForm = "norm") -> None:
        _check_choice("loss form", form, LOSS_FORMS)
        self.form = form

    def __call__(self, guesses: Any, truths: Any) -> Tuple[Any, float]:
        return self.get_grad_and_value(guesses, truths)

    def get_grad(self, guesses: Any, truths: Any) -> Any:
        return self.get_grad_and_value(guesses, truths)[0]

    def get_loss(self, guesses: Any, truths: Any) -> float:
        return self.get_grad_and_value(guesses, truths)[1]

    def get_grad_and_value(self, guesses: Any, truths: Any) -> Tuple[Any, float]:
        raise NotImplementedError


class VariationalPULoss(_FormLoss):
    """The variational positive-unlabeled loss of DALLMi, summed over labels.

    For every label ``l`` with at least one positive in the batch, with ``P_l`` its
    positives and ``U_l`` its unlabeled documents:

    * ``norm`` (the paper's Eq. 1): ``mean_{U_l} p - mean_{P_l} p``;
    * ``log`` (VPU's original form): ``log(mean_{U_l} p) - mean_{P_l} log p``.

    An empty ``U_l`` contributes 0 for the first term. Labels without positives
    contribute nothing, so a batch that misses a label simply ignores it.

    * ``nnpu`` (Kiryo et al. 2017, the sigmoid loss): ``π_l·mean_{P_l}(1 − p) +
      max(0, mean_{U_l} p − π_l·mean_{P_l} p)``, with ``π_l`` (``priors``) the share of
      positives among the label's unlabeled entries. The second term estimates the risk of
      the negatives among ``U_l``, which cannot be below 0; when it is, the model has pushed
      hidden positives down, and the label's gradient is that of ``−`` the term alone
      (Kiryo et al.'s step with γ = 1, β = 0), which pushes them back up. An empty ``U_l``
      leaves the first term only.

    ``positive_term = "l2"`` replaces ``mean_{P_l} p`` of the norm form by the reference
    code's ``||p_{P_l}||_2 = sqrt(sum_{P_l} p^2)``, for parity experiments only: it grows
    with the number of positives in the batch, so it is not Eq. 1.
    """

    def __init__(
        self, form: LossForm = "norm", positive_term: PositiveTerm = "mean", priors: Any = None
    ) -> None:
        super().__init__(form)
        _check_choice("positive term", positive_term, POSITIVE_TERMS)
        if positive_term == "l2" and form != "norm":
            raise ValueError("positive_term 'l2' is defined for the norm form only.")
        if (form == "nnpu") != (priors is not None):
            raise ValueError("priors (one per label) are given for, and only for, form 'nnpu'.")
        self.positive_term = positive_term
        self.priors = priors

    def get_grad_and_value(self, logits: Any, positives: Any) -> Tuple[Any, float]:
        """Return ``(d_logits, value)`` for ``(n_docs, n_labels)`` logits and 0/1 positives."""
        if logits.shape != positives.shape or logits.ndim != 2:
            raise ValueError(
                f"logits and positives must be 2D arrays of one shape, got {logits.shape} "
                f"and {positives.shape}."
            )
        xp = get_array_module(logits)
        z = logits
        pos = (positives == 1.0).astype(z.dtype)
        unl = 1.0 - pos
        n_pos = pos.sum(axis=0)
        n_unl = unl.sum(axis=0)
        active = n_pos > 0
        # Per-label normalisers; labels with no member in a set get a zero weight.
        inv_pos = xp.where(active, 1.0 / xp.maximum(n_pos, 1.0), 0.0)
        has_unl = active & (n_unl > 0)
        p = sigmoid(z)
        if self.form == "nnpu":
            prior = xp.asarray(self.priors, dtype=z.dtype)
            if prior.shape != (z.shape[1],) or not bool(((prior >= 0) & (prior <= 1)).all()):
                raise ValueError(
                    f"loss_form = 'nnpu' needs one prior in [0, 1] per label ({z.shape[1]}), "
                    f"got {self.priors!r}."
                )
            inv_unl = xp.where(has_unl, 1.0 / xp.maximum(n_unl, 1.0), 0.0)
            mean_positive = (pos * p).sum(axis=0) * inv_pos
            negative = (unl * p).sum(axis=0) * inv_unl - prior * mean_positive
            value = prior * (1.0 - mean_positive) + xp.maximum(negative, 0.0) * has_unl
            d_negative = (unl * inv_unl - prior * pos * inv_pos) * has_unl
            reversed_ = has_unl & (negative < 0)  # Kiryo's step: -d_negative alone
            dp = xp.where(reversed_, -d_negative, d_negative - prior * pos * inv_pos)
            d_logits = dp * p * (1.0 - p)
        elif self.form == "norm":
            inv_unl = xp.where(has_unl, 1.0 / xp.maximum(n_unl, 1.0), 0.0)
            if self.positive_term == "mean":
                positive_value = (pos * p).sum(axis=0) * inv_pos
                d_positive = pos * inv_pos
            else:
                norm = xp.sqrt((pos * p * p).sum(axis=0))
                positive_value = norm
                d_positive = pos * p / xp.where(active, xp.maximum(norm, 1e-12), 1.0)
            value = (unl * p).sum(axis=0) * inv_unl - positive_value
            dp = unl * inv_unl - d_positive
            d_logits = dp * p * (1.0 - p)
        else:
            log_p = log_sigmoid(z)
            # log(mean_U p) = logsumexp_U(log p) - log|U|, with the max taken over U only.
            masked = xp.where(unl > 0, log_p, -xp.inf)
            peak = xp.where(has_unl, masked.max(axis=0), 0.0)
            weights = xp.where(unl > 0, xp.exp(log_p - peak), 0.0)
            total = weights.sum(axis=0)
            safe_total = xp.where(has_unl, total, 1.0)
            log_mean_unl = xp.where(
                has_unl, peak + xp.log(safe_total) - xp.log(xp.maximum(n_unl, 1.0)), 0.0
            )
            value = log_mean_unl - (pos * log_p).sum(axis=0) * inv_pos
            # d log(sigmoid(z)) / dz = 1 - p; the U term's softmax weights sum to one.
            soft = weights / safe_total * has_unl
            d_logits = (soft - pos * inv_pos) * (1.0 - p)
        value = float((value * active).sum())
        return d_logits.astype(z.dtype), value


class MixUpConsistency(_FormLoss):
    """MixUp consistency ``sum_l M_l`` between targets ``t`` and mixed-input logits.

    ``norm``: ``M = (t - q)^2``; ``log``: ``M = (log t - log q)^2`` with
    ``q = sigmoid(z)``. Targets are constants (they come from the main forward pass),
    so only the mixed logits receive gradient. Inputs are 1D: one entry per label
    that was mixed this step.
    """

    def get_grad_and_value(self, mixed_logits: Any, targets: Any) -> Tuple[Any, float]:
        xp = get_array_module(mixed_logits)
        z = mixed_logits
        t = targets.astype(z.dtype)
        if z.shape != t.shape:
            raise ValueError(f"Shapes differ: logits {z.shape}, targets {t.shape}.")
        q = sigmoid(z)
        if self.form == "norm":
            diff = t - q
            d_logits = -2.0 * diff * q * (1.0 - q)
        else:
            diff = xp.log(xp.maximum(t, 1e-12)) - log_sigmoid(z)
            d_logits = -2.0 * diff * (1.0 - q)
        return d_logits.astype(z.dtype), float((diff**2).sum())


def largest_losses(logits: Any, targets: Any, candidates: Any, share: float) -> Any:
    """0/1 mask of the ``floor(share · n)`` of the ``n`` candidate entries (mask = 1) whose
    BCE of ``logits`` against ``targets`` is largest, pooled over the whole array; ties go
    to the earlier entry in row-major order. Large-loss rejection (:func:`masked_bce`'s
    ``mask`` times ``1 − largest_losses(...)``) leaves them out of the loss."""
    xp = get_array_module(logits)
    z = logits.astype("float64")
    losses = xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z))) - targets * z
    flat_candidates = candidates.reshape(-1) > 0
    count = int(share * int(flat_candidates.sum()))
    rejected = xp.zeros(z.size, dtype=logits.dtype)
    if count > 0:
        ranked = xp.where(flat_candidates, losses.reshape(-1), -xp.inf)
        rejected[xp.argsort(-ranked, kind="stable")[:count]] = 1.0
    return rejected.reshape(logits.shape)


def masked_bce(
    logits: Any, truths: Any, mask: Any, weights: Optional[Any] = None
) -> Tuple[Any, float]:
    """Binary cross-entropy from logits, summed over the observed (mask = 1) entries and
    divided by their number.

    This is the supervised objective: spaCy's rule that an absent label is missing,
    not negative, is expressed by ``mask``. ``truths`` may be soft (label smoothing);
    ``weights`` scale single entries (e.g. WAN's ``1 / (L - 1)`` on negatives) without
    changing the normaliser.
    """
    xp = get_array_module(logits)
    z = logits
    n_observed = max(float(mask.sum()), 1.0)
    scale = mask if weights is None else mask * weights
    # -[y log p + (1 - y) log(1 - p)] = softplus(z) - y z
    softplus = xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))
    value = float(((softplus - truths * z) * scale).sum() / n_observed)
    d_logits = (sigmoid(z) - truths) * scale / n_observed
    return d_logits.astype(z.dtype), value

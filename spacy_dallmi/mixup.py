"""DALLMi's MixUp: one positive/unlabeled pair per label, interpolated in one batch.

For every label with both a known positive ``p`` and an unlabeled document ``u`` in
the batch, one pair and a weight ``mu ~ Beta(alpha, beta)`` are drawn. The mixed
input is ``mu * x_p + (1 - mu) * x_u`` at one of three places (the paper's
Table 3 ablation):

* ``word_embeddings`` (default): the backbone's input word embeddings. The mixed
  rows are appended to the batch, so the whole step is ONE backbone pass over
  ``n_docs + n_labels`` rows (the reference code runs ``2 * L`` passes of batch 1);
* ``encoder``: the pooled encoder output, before dropout and the linear layer;
* ``sentence``: the logits.

The consistency target ``t = mu + (1 - mu) * p_ul`` is read from the batch's own
rows of the same forward pass and treated as a constant; the mixed prediction
``q = sigmoid(z_mix)_l`` receives the gradient, which flows on into the head, the
encoder and (for ``word_embeddings``) the embedding matrix. :func:`mixup_consistency`
computes that term of the loss, and its gradient, from the pass's two outputs.
"""

from dataclasses import dataclass
from typing import Callable, Literal, Tuple

import numpy
from thinc.api import Model, Ops
from thinc.types import Floats2d

from .architecture import Tokens, forward_embeddings, forward_features, forward_head
from .loss import LossForm, MixUpConsistency, sigmoid
from .settings import MIXUP_LOCATIONS

MixUpLocation = Literal["word_embeddings", "encoder", "sentence"]


@dataclass
class MixPlan:
    """The pairs drawn for one step: row ``k`` mixes doc ``positive[k]`` (weight
    ``weight[k]``) with doc ``unlabeled[k]`` and is checked on label ``labels[k]``."""

    labels: numpy.ndarray
    positive: numpy.ndarray
    unlabeled: numpy.ndarray
    weight: numpy.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def plan_mixup(
    positives: numpy.ndarray,
    rng: numpy.random.Generator,
    alpha: float,
    beta: float,
    pairs: int = 1,
) -> MixPlan:
    """Draw ``pairs`` (positive, unlabeled, mu) triples per label that has both in the
    batch (documents drawn uniformly, with replacement across a label's pairs)."""
    labels, firsts, seconds = [], [], []
    for label in range(positives.shape[1]):
        is_positive = positives[:, label] == 1.0
        pos = numpy.flatnonzero(is_positive)
        unl = numpy.flatnonzero(~is_positive)
        if len(pos) and len(unl):
            for _ in range(pairs):
                labels.append(label)
                firsts.append(rng.choice(pos))
                seconds.append(rng.choice(unl))
    weight = rng.beta(alpha, beta, size=len(labels)) if labels else numpy.zeros((0,))
    return MixPlan(
        labels=numpy.asarray(labels, dtype="int64"),
        positive=numpy.asarray(firsts, dtype="int64"),
        unlabeled=numpy.asarray(seconds, dtype="int64"),
        weight=weight.astype("float32"),
    )


def forward_with_mixup(
    model: Model, tokens: Tokens, plan: MixPlan, location: MixUpLocation
) -> Tuple[Floats2d, Floats2d, Callable[[Floats2d, Floats2d], None]]:
    """Training forward pass returning ``(logits, mixed_logits, backprop)``.

    ``logits`` has one row per document; ``mixed_logits`` one row per pair of
    ``plan``. ``backprop(d_logits, d_mixed_logits)`` runs the backward pass once.
    """
    if location not in MIXUP_LOCATIONS:
        raise ValueError(f"Unknown MixUp location {location!r}: use one of {MIXUP_LOCATIONS}.")
    n_docs = tokens.input_ids.shape[0]
    ops = model.ops
    if location == "word_embeddings":
        all_logits, bp_all = forward_embeddings(
            model, tokens, plan.positive, plan.unlabeled, plan.weight
        )

        def backprop_embeddings(d_logits: Floats2d, d_mixed: Floats2d) -> None:
            bp_all(ops.xp.concatenate([d_logits, d_mixed], axis=0))

        return all_logits[:n_docs], all_logits[n_docs:], backprop_embeddings

    weight = ops.asarray1f(plan.weight)[:, None]
    first = ops.asarray1i(plan.positive)
    second = ops.asarray1i(plan.unlabeled)

    def mix(rows: Floats2d) -> Floats2d:
        return weight * rows[first] + (1.0 - weight) * rows[second]

    def unmix(d_rows: Floats2d, d_mixed: Floats2d) -> Floats2d:
        """Add the mixed rows' gradient back onto their two sources, in place."""
        ops.scatter_add(d_rows, first, weight * d_mixed)
        ops.scatter_add(d_rows, second, (1.0 - weight) * d_mixed)
        return d_rows

    pooled, bp_pooled = forward_features(model, tokens)
    if location == "encoder":
        all_logits, bp_head = forward_head(model, ops.xp.concatenate([pooled, mix(pooled)]))

        def backprop_encoder(d_logits: Floats2d, d_mixed: Floats2d) -> None:
            d_features = bp_head(ops.xp.concatenate([d_logits, d_mixed], axis=0))
            bp_pooled(unmix(d_features[:n_docs].copy(), d_features[n_docs:]))

        return all_logits[:n_docs], all_logits[n_docs:], backprop_encoder

    logits, bp_head = forward_head(model, pooled)

    def backprop_sentence(d_logits: Floats2d, d_mixed: Floats2d) -> None:
        bp_pooled(bp_head(unmix(d_logits.copy(), d_mixed)))

    return logits, mix(logits), backprop_sentence


def mixup_consistency(
    ops: Ops,
    logits: Floats2d,
    mixed_logits: Floats2d,
    plan: MixPlan,
    form: LossForm,
    weight: float,
    pairs: int,
) -> Tuple[Floats2d, float]:
    """``(d_mixed_logits, value)`` of the step's MixUp term, ``weight * sum_l mean_k M_lk``.

    ``logits`` and ``mixed_logits`` are the two outputs of :func:`forward_with_mixup`.
    Row ``k`` of ``mixed_logits`` is checked on its own label ``l = plan.labels[k]`` only,
    against ``t = mu + (1 - mu) * p_ul``, where ``p_ul`` is the unlabeled document's
    probability in ``logits``: the target comes from the same pass and is a constant, so
    the gradient is on ``mixed_logits`` alone (zero for the other labels). Each label's
    ``pairs`` pairs are averaged, so the term's size does not grow with ``pairs``; ``weight``
    is λ at this step (:meth:`DallmiSettings.mixup_weight`, after the warm-up). An empty
    plan (MixUp off, or no label with both kinds of document) adds nothing.
    """
    d_mixed = ops.alloc2f(*mixed_logits.shape)
    if not len(plan):
        return d_mixed, 0.0
    rows = ops.xp.arange(len(plan))
    cols = ops.asarray1i(plan.labels)
    mu = ops.asarray1f(plan.weight)
    p_unlabeled = sigmoid(logits[ops.asarray1i(plan.unlabeled), cols])
    targets = mu + (1.0 - mu) * p_unlabeled
    d_q, value = MixUpConsistency(form)(mixed_logits[rows, cols], targets)
    scale = weight / pairs
    d_mixed[rows, cols] = scale * d_q
    return d_mixed, scale * value

"""AAD, the DALLMi paper's unsupervised baseline: adversarial adaptation with distillation.

Ryu & Lee 2020: a copy of the source encoder is trained against a domain discriminator (source
features 1, target features 0; the encoder makes target features look like source ones) while
keeping the frozen source model's predictions on source documents (distillation at temperature
``T``). The source head stays, frozen; only the target texts are read, no target label. It runs
on the torch modules inside a copy of the source pipeline, so the result is scored like every
method. The multi-label head makes the distillation a per-label Bernoulli KL,
``T² · KL(σ(z_src/T) ‖ σ(z/T))``, summed over labels (the KL of the label sets, like the
reference code's ``batchmean``; ``"mean"`` averages instead, which weakens it L-fold: the pubmed
runs from before the setting used it, and it sank emotions seed 0 from 47.6 to 34.1 macro AP).
Settings are the paper's public code's; schedule, epochs and batch size the protocol's. The
whole encoder trains, as in Ryu & Lee (the DALLMi paper froze unnamed layers).
"""

import time
from typing import Any, Callable, Dict, List

import numpy as np
import spacy
import torch
import torch.nn.functional as F
from environment import mean_pool
from splits import SeedCorpora, read_docs
from torch import nn

from spacy_dallmi.architecture import get_hf_objects, tokenize
from spacy_dallmi.callbacks import find_textcat

AAD_SETTINGS: Dict[str, Any] = {
    "learn_rate": 1e-5, "discriminator_learn_rate": 1e-5, "temperature": 20.0,
    "adversarial_weight": 1.0, "distillation_weight": 1.0, "grad_clip": 1.0,
    "discriminator_hidden": 256, "distillation_reduction": "sum",
}  # fmt: skip


class Encoder:
    """The pipeline's encoder with its pooling, and its head as frozen tensors."""

    def __init__(self, nlp: spacy.language.Language) -> None:
        self.nlp = nlp
        self.model = find_textcat(nlp).model
        self.transformer = get_hf_objects(self.model).transformer
        self.pooling = self.model.layers[0].attrs["pooling"]
        head = self.model.layers[2]
        self.weight = torch.tensor(head.get_param("W"), dtype=torch.float32)
        self.bias = torch.tensor(head.get_param("b"), dtype=torch.float32)

    def features(self, texts: List[str]) -> torch.Tensor:
        tokens = tokenize(self.model, [self.nlp.make_doc(text) for text in texts])
        mask = torch.as_tensor(tokens.attention_mask)
        ids = torch.as_tensor(tokens.input_ids)
        hidden = self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, mask)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T + self.bias


def bernoulli_distillation(
    student: torch.Tensor, teacher: torch.Tensor, t: float, reduction: str = "sum"
) -> torch.Tensor:
    """``T² ·`` the per-label ``KL(σ(teacher/T) ‖ σ(student/T))``, summed (``"sum"``) or
    averaged (``"mean"``) over labels, averaged over documents."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"distillation_reduction must be 'sum' or 'mean', not {reduction!r}")
    p = torch.sigmoid(teacher / t)
    entropy = -(p * F.logsigmoid(teacher / t) + (1 - p) * F.logsigmoid(-teacher / t))
    cross = F.binary_cross_entropy_with_logits(student / t, p, reduction="none")
    per_label = cross - entropy
    per_doc = per_label.sum(dim=1) if reduction == "sum" else per_label.mean(dim=1)
    return t * t * per_doc.mean()


def _linear_decay(optimizer: torch.optim.Optimizer, total: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))


def train_aad(
    protocol: Any,
    seed: int,
    corpora: SeedCorpora,
    settings: Dict[str, Any],
    evaluate: Callable[[spacy.language.Language], Dict[str, Any]],
) -> Dict[str, Any]:
    """Adapt a copy of the seed's source pipeline with AAD (``settings`` as in
    :data:`AAD_SETTINGS`); same return value as :func:`runner.train_run`."""
    args = protocol.args
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    nlp = spacy.load(corpora.folder / "source")
    encoder = Encoder(nlp)
    source_texts = [doc.text for doc in read_docs(corpora.source_train)]
    target_texts = [doc.text for doc in read_docs(corpora.fit_full)]  # texts only, no labels
    size, t = args.batch_size, settings["temperature"]
    with torch.no_grad():
        encoder.transformer.eval()
        batches = [source_texts[i : i + size] for i in range(0, len(source_texts), size)]
        teacher = torch.cat([encoder.logits(encoder.features(batch)) for batch in batches])
    width, hidden = encoder.weight.shape[1], settings["discriminator_hidden"]
    discriminator = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    per_epoch = -(-len(target_texts) // size)
    total = args.epochs * per_epoch
    enc_opt = torch.optim.Adam(encoder.transformer.parameters(), lr=settings["learn_rate"])
    disc_opt = torch.optim.Adam(discriminator.parameters(), lr=settings["discriminator_learn_rate"])
    schedulers = [_linear_decay(enc_opt, total), _linear_decay(disc_opt, total)]
    records: List[Dict[str, Any]] = []
    eval_seconds = 0.0
    source_order = rng.permutation(len(source_texts))
    cursor = 0
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        encoder.transformer.train()
        target_order = rng.permutation(len(target_texts))
        for b in range(per_epoch):
            tgt = [target_texts[i] for i in target_order[b * size : (b + 1) * size]]
            if cursor + size > len(source_order):
                source_order, cursor = rng.permutation(len(source_texts)), 0
            src_idx = source_order[cursor : cursor + size]
            cursor += size
            feat_src = encoder.features([source_texts[i] for i in src_idx])
            feat_tgt = encoder.features(tgt)
            # Discriminator: source features are 1, target features 0.
            domain = torch.cat([torch.ones(len(src_idx)), torch.zeros(len(tgt))])
            d_logits = discriminator(torch.cat([feat_src, feat_tgt]).detach()).squeeze(-1)
            disc_opt.zero_grad()
            F.binary_cross_entropy_with_logits(d_logits, domain).backward()
            nn.utils.clip_grad_norm_(discriminator.parameters(), settings["grad_clip"])
            disc_opt.step()
            # Encoder: fool the discriminator on target, keep the teacher's source predictions.
            d_target = discriminator(feat_tgt).squeeze(-1)
            fooled = F.binary_cross_entropy_with_logits(d_target, torch.ones(len(tgt)))
            student, reduction = encoder.logits(feat_src), settings["distillation_reduction"]
            kd = bernoulli_distillation(student, teacher[src_idx], t, reduction)
            loss = settings["adversarial_weight"] * fooled + settings["distillation_weight"] * kd
            enc_opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(encoder.transformer.parameters(), settings["grad_clip"])
            enc_opt.step()
            for scheduler in schedulers:
                scheduler.step()
        tick = time.perf_counter()
        records.append({"epoch": epoch, "step": epoch * per_epoch, **evaluate(nlp)})
        eval_seconds += time.perf_counter() - tick
    return {
        "nlp": nlp,
        "records": records,
        "steps": total,
        "batches_per_epoch": per_epoch,
        "train_seconds": time.perf_counter() - start - eval_seconds,
        "eval_seconds": eval_seconds,
    }

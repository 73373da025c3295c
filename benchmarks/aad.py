"""AAD, the DALLMi paper's unsupervised baseline: adversarial adaptation with distillation.

Ryu & Lee 2020, "Knowledge distillation for BERT unsupervised domain adaptation". The target
encoder starts as a copy of the source encoder and is trained

- against a domain discriminator, which learns to tell the encoder's pooled features of source
  documents (label 1) from those of target documents (label 0), while the encoder learns to
  make target features look like source ones; and
- to keep the source model's predictions on source documents: distillation at temperature
  ``T`` from the frozen source model, whose logits on the source documents are computed once.

The classification head stays the source model's, frozen. No target label is read: only the
texts of the target training documents. It is implemented on the torch modules inside a copy of
the source pipeline (the Hugging Face encoder behind the spaCy model, and the thinc head's
weights as constant tensors), so the adapted weights are the pipeline's and it is scored by the
same code as every other method. The multi-label head makes the distillation a Bernoulli KL
per label, ``T² · KL(σ(z_src/T) ‖ σ(z/T))``, the binary form of the paper's softmax KL. With
independent labels the KL between the teacher's and the student's distributions over label sets
is the sum of the per-label KLs, so ``distillation_reduction`` ``"sum"`` (the default) sums over
labels and averages over documents, like the reference code's ``batchmean``. ``"mean"`` also
averages over labels, which weakens the distillation L-fold against the adversarial term: the
pubmed AAD runs before this setting existed used it, and with it emotions seed 0 fell from
47.6 macro AP (the source model) to 34.1 in six epochs.

Settings are the paper's (its public code's defaults): lr 1e-5 for the encoder and the
discriminator, ``T = 20``, adversarial and distillation weights 1, gradient clip 1.0; the
schedule (linear decay to 0), epochs and batch size are the protocol's, like every method's.
The DALLMi paper instead froze BERT's layers and trained three epochs (its Section 5); it does
not say which layers, so here the whole target encoder trains, as in Ryu & Lee.
"""

import time
from typing import Any, Callable, Dict, List

import numpy as np
import spacy
import torch
import torch.nn.functional as F
from environment import mean_pool
from runner import read_set
from splits import SeedCorpora

from spacy_dallmi.architecture import get_hf_objects, tokenize
from spacy_dallmi.callbacks import find_textcat

AAD_SETTINGS: Dict[str, Any] = {
    "learn_rate": 1e-5,
    "discriminator_learn_rate": 1e-5,
    "temperature": 20.0,
    "adversarial_weight": 1.0,
    "distillation_weight": 1.0,
    "grad_clip": 1.0,
    "discriminator_hidden": 256,
    "distillation_reduction": "sum",
}


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
        hidden = self.transformer(
            input_ids=torch.as_tensor(tokens.input_ids), attention_mask=mask
        ).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return mean_pool(hidden, mask)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weight.T + self.bias


def bernoulli_distillation(
    student: torch.Tensor, teacher: torch.Tensor, t: float, reduction: str = "sum"
) -> torch.Tensor:
    """``T² ·`` the per-label ``KL(σ(teacher/T) ‖ σ(student/T))``, summed over labels
    (``"sum"``: the KL of the label sets) or averaged over them (``"mean"``), then averaged
    over documents."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"distillation_reduction must be 'sum' or 'mean', not {reduction!r}")
    p = torch.sigmoid(teacher / t)
    entropy = -(p * F.logsigmoid(teacher / t) + (1 - p) * F.logsigmoid(-teacher / t))
    cross = F.binary_cross_entropy_with_logits(student / t, p, reduction="none")
    per_label = cross - entropy
    per_doc = per_label.sum(dim=1) if reduction == "sum" else per_label.mean(dim=1)
    return t * t * per_doc.mean()


def _linear_decay(
    optimizer: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
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
    source_texts = read_set(corpora.source_train, corpora.labels).texts
    target_texts = read_set(corpora.fit_full, corpora.labels).texts  # texts only, no labels
    size, t = args.batch_size, settings["temperature"]
    with torch.no_grad():
        encoder.transformer.eval()
        teacher = torch.cat(
            [
                encoder.logits(encoder.features(source_texts[i : i + size]))
                for i in range(0, len(source_texts), size)
            ]
        )
    width = encoder.weight.shape[1]
    hidden = settings["discriminator_hidden"]
    discriminator = torch.nn.Sequential(
        torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
    )
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
            torch.nn.utils.clip_grad_norm_(discriminator.parameters(), settings["grad_clip"])
            disc_opt.step()
            # Encoder: fool the discriminator on target, keep the teacher's source predictions.
            fooled = F.binary_cross_entropy_with_logits(
                discriminator(feat_tgt).squeeze(-1), torch.ones(len(tgt))
            )
            kd = bernoulli_distillation(
                encoder.logits(feat_src), teacher[src_idx], t, settings["distillation_reduction"]
            )
            loss = settings["adversarial_weight"] * fooled + settings["distillation_weight"] * kd
            enc_opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.transformer.parameters(), settings["grad_clip"])
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

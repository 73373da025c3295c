"""The baselines the speed benchmark compares against.

- the reference code's MixUp: per label, two gradient-free forward passes of batch size 1;
- a plain transformers classifier (tokenizer, encoder, mean pooling, the component's head).
"""

from typing import Any, List, Sequence

import numpy
import torch
from spacy.language import Language
from spacy.training import Example
from speed_data import (
    component_model,
)
from speed_harness import (
    Settings,
    torch_device,
)
from thinc.api import xp2torch

from spacy_dallmi.architecture import get_hf_objects, resolve_backbone


def naive_mixup_loop(
    nlp: Language,
    tokens: Any,
    positives: numpy.ndarray,
    rng: numpy.random.Generator,
    alpha: float = 0.3,
    beta: float = 0.3,
) -> float:
    """The authors' MixUp, as a baseline: per label, TWO forward passes of batch size 1.

    For every label with a positive ``p`` and an unlabeled ``u`` in the batch, the
    reference code runs ``Phi(u)`` for the target and ``Phi(mix)`` on interpolated word
    embeddings for the prediction, and turns the squared difference into a Python float,
    so nothing is backpropagated: hence ``torch.no_grad()``. Pooling and the linear head
    are included, as in the reference; the batch's word pieces are reused (tokenising is
    part of the main step). Returns the MixUp value so no pass is optimised away.
    """
    model = component_model(nlp)
    transformer = get_hf_objects(model).transformer
    embedding = transformer.get_input_embeddings()
    device = transformer.device
    ids = torch.as_tensor(tokens.input_ids, device=device)
    mask = torch.as_tensor(tokens.attention_mask, device=device)
    head = model.layers[2]
    weight = xp2torch(head.get_param("W"), device=device)
    bias = xp2torch(head.get_param("b"), device=device)

    def classify(hidden: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
        scale = row_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * scale).sum(dim=1) / scale.sum(dim=1).clamp(min=1.0)
        return torch.sigmoid(pooled @ weight.T + bias)

    total = 0.0
    with torch.no_grad():
        for label in range(positives.shape[1]):
            pos = numpy.flatnonzero(positives[:, label] == 1.0)
            unl = numpy.flatnonzero(positives[:, label] != 1.0)
            if not len(pos) or not len(unl):
                continue
            p, u = int(rng.choice(pos)), int(rng.choice(unl))
            mu = float(rng.beta(alpha, beta))
            u_mask = mask[u : u + 1]
            out_u = transformer(input_ids=ids[u : u + 1], attention_mask=u_mask)
            p_u = classify(out_u.last_hidden_state, u_mask)[0, label]
            mixed = mu * embedding(ids[p : p + 1]) + (1.0 - mu) * embedding(ids[u : u + 1])
            mix_mask = torch.maximum(mask[p : p + 1], u_mask)
            out_mix = transformer(inputs_embeds=mixed, attention_mask=mix_mask)
            q = classify(out_mix.last_hidden_state, mix_mask)[0, label]
            target = mu + (1.0 - mu) * p_u
            total += float(((target - q) ** 2).item())
    return total


def batch_positives(nlp: Language, batch: List[Example]) -> numpy.ndarray:
    """Known positives of a batch in the component's label order (as its update sees them)."""
    labels = nlp.get_pipe("dallmi_textcat").labels
    return numpy.asarray(
        [[eg.reference.cats.get(label) == 1.0 for label in labels] for eg in batch],
        dtype="float32",
    )


class TransformersBaseline:
    """A plain transformers classifier over the same folder: tokenizer, encoder, mean
    pooling and the component's own linear head, in inference mode."""

    def __init__(self, settings: Settings, head_weight: Any, head_bias: Any) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = resolve_backbone(settings.backbone)
        self.device = torch_device(settings)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.weight = xp2torch(head_weight, device=self.device)
        self.bias = xp2torch(head_bias, device=self.device)
        self.max_length = settings.max_length
        self.batch_size = settings.batch_size

    def predict(self, texts: Sequence[str]) -> numpy.ndarray:
        outputs = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**encoded).last_hidden_state
                scale = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * scale).sum(dim=1) / scale.sum(dim=1).clamp(min=1.0)
                outputs.append(torch.sigmoid(pooled @ self.weight.T + self.bias).cpu().numpy())
        return numpy.concatenate(outputs)

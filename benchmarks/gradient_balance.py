"""How strongly does each term of DALLMi's step loss pull on the model, and in which direction?

The diagnosis (``diagnose_dallmi.py``, since replaced by ``tune.py``) found that with the
paper's MixUp weight (lambda = 1) a short adaptation barely moves macro mAP, while lambda = 0.1
or no MixUp learns. This script measures why, on the real starting point: a trained source
model and the partially labelled target train split. For label-balanced batches (the cycle
batcher) it computes, separately, the gradient of the variational PU term ``sum_l Lvar_l`` and
of the MixUp term ``sum_l M_l`` with respect to every backbone parameter (encoder and word
embeddings) and the linear head, and reports their norms and the cosine between them.

Dropout is switched off so that the two backward passes see the same network; the MixUp pairs
and weights come from the component's sampler, ``plan_mixup`` (seeded).

    python benchmarks/gradient_balance.py \\
        --model /tmp/table_emotions/training/emotions/s0_n400/source/model-last \\
        --train /tmp/table_emotions/corpus/emotions/s0_n400/per_sample_0.5/target_train.spacy
"""

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import numpy
import spacy
import srsly
import torch
from environment import REPO_ROOT, git_provenance, machine_info
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import set_dropout_rate

from spacy_dallmi.architecture import get_hf_objects, tokenize
from spacy_dallmi.batcher import configure_cycle_batcher
from spacy_dallmi.loss import MixUpConsistency, VariationalPULoss, sigmoid
from spacy_dallmi.mixup import forward_with_mixup, plan_mixup

RESULTS = REPO_ROOT / "benchmarks" / "results"


def parameters_gradient(model, transformer: torch.nn.Module) -> numpy.ndarray:
    """All backbone gradients and the head's, flattened into one vector, then cleared."""
    parts = []
    for param in transformer.parameters():
        if param.grad is not None:
            parts.append(param.grad.detach().reshape(-1).numpy().copy())
            param.grad = None
    head = model.layers[2]
    for name in ("W", "b"):
        parts.append(numpy.asarray(head.get_grad(name)).reshape(-1).copy())
        head.set_grad(name, head.ops.alloc(head.get_grad(name).shape))
    return numpy.concatenate(parts)


def term_gradients(textcat, examples: List[Example], rng_seed: int) -> Dict[str, float]:
    """Gradient norms of the PU and MixUp terms on one batch, and the cosine between them."""
    model = textcat.model
    transformer = get_hf_objects(model).transformer
    docs = [eg.predicted for eg in examples]
    positives = textcat._positives(examples)
    plan = plan_mixup(positives, numpy.random.default_rng(rng_seed), 0.3, 0.3)
    tokens = tokenize(model, docs)
    grads = []
    for term in ("vpu", "mixup"):
        logits, mixed, backprop = forward_with_mixup(model, tokens, plan, "word_embeddings")
        d_logits = model.ops.alloc2f(*logits.shape)
        d_mixed = model.ops.alloc2f(*mixed.shape)
        if term == "vpu":
            d_logits, _ = VariationalPULoss("norm")(logits, model.ops.asarray2f(positives))
        else:
            rows = numpy.arange(len(plan))
            p_unlabeled = sigmoid(logits[plan.unlabeled, plan.labels])
            targets = plan.weight + (1.0 - plan.weight) * p_unlabeled
            d_q, _ = MixUpConsistency("norm")(mixed[rows, plan.labels], targets)
            d_mixed[rows, plan.labels] = d_q
        backprop(d_logits, d_mixed)
        grads.append(parameters_gradient(model, transformer))
    vpu, mix = grads
    norm_vpu, norm_mix = float(numpy.linalg.norm(vpu)), float(numpy.linalg.norm(mix))
    cosine = float(vpu @ mix / max(norm_vpu * norm_mix, 1e-30))
    return {"norm_vpu": norm_vpu, "norm_mixup": norm_mix, "cosine": cosine, "pairs": len(plan)}


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the source pipeline")
    parser.add_argument("--train", type=Path, required=True, help="partial target train split")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

    nlp = spacy.load(args.model)
    textcat = nlp.get_pipe("textcat")
    transformer = get_hf_objects(textcat.model).transformer
    for module in transformer.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    set_dropout_rate(textcat.model, 0.0)
    docs = list(DocBin().from_disk(args.train).get_docs(nlp.vocab))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    batcher = configure_cycle_batcher(size=args.batch_size, seed=args.seed)
    rows = []
    for index, batch in enumerate(batcher(examples)):
        if index == args.batches:
            break
        rows.append(term_gradients(textcat, batch, args.seed + index))
        print(rows[-1], flush=True)

    ratios = [row["norm_mixup"] / row["norm_vpu"] for row in rows]
    summary = {
        "median_norm_vpu": statistics.median(row["norm_vpu"] for row in rows),
        "median_norm_mixup": statistics.median(row["norm_mixup"] for row in rows),
        "median_norm_ratio_mixup_over_vpu": statistics.median(ratios),
        "median_cosine": statistics.median(row["cosine"] for row in rows),
        "min_cosine": min(row["cosine"] for row in rows),
        "max_cosine": max(row["cosine"] for row in rows),
    }
    payload = {
        "model": str(args.model),
        "train": str(args.train),
        "batch_size": args.batch_size,
        "batches": len(rows),
        "machine": machine_info(),
        "git": git_provenance(),
        "summary": summary,
        "batches_detail": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"gradient_balance{args.tag}"
    srsly.write_json(RESULTS / f"{stem}.json", payload)
    lines = [
        "# Gradient balance of DALLMi's two terms at the start of adaptation",
        "",
        f"Source model `{args.model}`, target train `{args.train}`, {len(rows)} cycle batches "
        f"of {args.batch_size}, dropout off, norm form, lambda = 1 (so the MixUp norm is the "
        "norm of the paper's default term). Gradients over all backbone and head parameters.",
        "",
        "| batch | mixed pairs | norm PU | norm MixUp | MixUp / PU | cosine |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for index, (row, ratio) in enumerate(zip(rows, ratios)):
        lines.append(
            f"| {index} | {row['pairs']} | {row['norm_vpu']:.4f} | {row['norm_mixup']:.4f} | "
            f"{ratio:.2f} | {row['cosine']:+.3f} |"
        )
    lines += [
        "",
        f"Median MixUp / PU norm ratio: **{summary['median_norm_ratio_mixup_over_vpu']:.2f}**; "
        f"median cosine: **{summary['median_cosine']:+.3f}** "
        f"(range {summary['min_cosine']:+.3f} to {summary['max_cosine']:+.3f}).",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf8")


if __name__ == "__main__":
    main(sys.argv[1:])

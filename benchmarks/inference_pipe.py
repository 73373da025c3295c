"""Part ``pipe`` of the inference benchmark (``inference.py``): length bucketing's speed.

Why a file of its own: this part times ``nlp.pipe`` with and without length bucketing against
a plain transformers loop in fixed order, round-robin within each repeat, and measures the
padding share and the two overheads (the extra tokenisation for the lengths, and
``torch.inference_mode()`` against ``torch.no_grad()``). The data readers and the untrained
pipeline are also used by the Ray part (``inference_memory.py``).
"""

import argparse
import csv
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy
import spacy
import torch
from spacy.language import Language

from spacy_dallmi.architecture import get_hf_objects

LABELS = ("anger", "disgust", "fear", "joy", "love", "optimism", "sadness", "surprise")
PADDING_WINDOWS = (0, 64, 128, 256, 512, 1024, 2048)


# ----------------------------------------------------------------------------- data


def read_tweets(data_dir: Path, n: int) -> List[str]:
    path = data_dir / "semeval2018_ec" / "2018-E-c-En-train.txt"
    with path.open(encoding="utf8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["Tweet"] for row, _ in zip(rows, range(n))]


def read_abstracts(data_dir: Path, n: int) -> List[str]:
    """Unique abstracts (by pmid), in file order: train, dev, test; small before med."""
    texts: Dict[str, str] = {}
    names = ("train-data-small", "dev-data-small", "test-data-small", "dev-data-med")
    for name in (*names, "test-data-med"):
        with (data_dir / "pubmed" / f"{name}.csv").open(encoding="utf8", newline="") as handle:
            for row in csv.DictReader(handle):
                texts.setdefault(row["pmid"], row["abstractText"])
    return list(texts.values())[:n]


# ------------------------------------------------------------------------ pipelines


def build_pipeline(backbone: str, max_length: int) -> Language:
    """An untrained ``dallmi_textcat`` pipeline on the backbone (speed only)."""
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe(
        "dallmi_textcat",
        name="textcat",
        config={"model": {"name": backbone, "max_length": max_length}},
    )
    for label in LABELS:
        textcat.add_label(label)
    nlp.initialize()
    return nlp


def plain_transformers(nlp: Language) -> Callable[[List[str], int], numpy.ndarray]:
    """The baseline: the pipeline's own backbone and head, called directly, fixed order."""
    model = nlp.get_pipe("textcat").model
    hf = get_hf_objects(model)
    head = model.layers[-1]
    device = hf.transformer.device
    weight = torch.as_tensor(model.ops.to_numpy(head.get_param("W")), device=device)
    bias = torch.as_tensor(model.ops.to_numpy(head.get_param("b")), device=device)
    max_length = model.attrs["max_length"]

    def run(texts: List[str], batch_size: int) -> numpy.ndarray:
        hf.transformer.eval()  # the shim's predict leaves the model in training mode
        out = []
        for start in range(0, len(texts), batch_size):
            batch = hf.tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
                return_token_type_ids=False,
            )
            batch = {key: value.to(device) for key, value in batch.items()}
            with torch.no_grad():
                hidden = hf.transformer(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out.append(torch.sigmoid(pooled @ weight.T + bias).cpu().numpy())
        return numpy.concatenate(out)

    return run


def pipe_runner(nlp: Language, window: int) -> Callable[[List[str], int], numpy.ndarray]:
    textcat = nlp.get_pipe("textcat")

    def run(texts: List[str], batch_size: int) -> numpy.ndarray:
        textcat.cfg["bucket_window"] = window
        docs = nlp.pipe(texts, batch_size=batch_size)
        return numpy.asarray([[doc.cats[label] for label in LABELS] for doc in docs])

    return run


# ----------------------------------------------------------------------- part 1: pipe


def time_configs(
    runners: Dict[str, Callable[[List[str], int], numpy.ndarray]],
    texts: List[str],
    batch_size: int,
    repeats: int,
) -> Dict[str, Dict[str, Any]]:
    """Round-robin timing; also checks that every configuration gives the same output."""
    for run in runners.values():
        run(texts[: 2 * batch_size], batch_size)  # warm-up
    names = list(runners)
    seconds: Dict[str, List[float]] = {name: [] for name in names}
    cpu: Dict[str, List[float]] = {name: [] for name in names}
    outputs: Dict[str, numpy.ndarray] = {}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            wall, proc = time.perf_counter(), time.process_time()
            outputs[name] = runners[name](texts, batch_size)
            seconds[name].append(time.perf_counter() - wall)
            cpu[name].append(time.process_time() - proc)
            print(f"  [{repeat}] {name}: {seconds[name][-1]:.1f} s", flush=True)
    reference = outputs[names[0]]
    results = {}
    for name in names:
        docs_per_s = [len(texts) / s for s in seconds[name]]
        results[name] = {
            "seconds": [round(s, 3) for s in seconds[name]],
            "docs_per_s_mean": round(statistics.mean(docs_per_s), 2),
            "docs_per_s_std": round(statistics.stdev(docs_per_s), 2) if repeats > 1 else 0.0,
            "cpu_s_per_wall_s": round(sum(cpu[name]) / sum(seconds[name]), 2),
            # one thread: CPU time is what the configuration cost, whatever else ran
            "docs_per_cpu_s": round(len(texts) * repeats / sum(cpu[name]), 2),
            "max_abs_diff_vs_first": float(numpy.abs(outputs[name] - reference).max()),
        }
    return results


def padding_share(nlp: Language, texts: List[str], batch_size: int, window: int) -> float:
    """Share of padded word-piece positions in the batches a configuration runs."""
    textcat = nlp.get_pipe("textcat")
    docs = [nlp.make_doc(text) for text in texts]
    lengths = numpy.minimum(
        [
            len(ids)
            for ids in get_hf_objects(textcat.model).tokenizer([d.text for d in docs])["input_ids"]
        ],
        textcat.model.attrs["max_length"],
    )
    order: List[int] = []
    step = max(window, batch_size) if window else batch_size
    for start in range(0, len(docs), step):
        chunk = list(range(start, min(start + step, len(docs))))
        if window:
            chunk = [chunk[i] for i in textcat.length_order([docs[i] for i in chunk])]
        order += chunk
    padded = real = 0
    for start in range(0, len(order), batch_size):
        batch = lengths[order[start : start + batch_size]]
        padded += int(batch.max()) * len(batch)
        real += int(batch.sum())
    return round(1 - real / padded, 3)


def overheads(nlp: Language, texts: List[str], batch_size: int, repeats: int) -> Dict[str, Any]:
    """Cost of the extra tokenisation for the sort, and inference_mode vs no_grad."""
    textcat = nlp.get_pipe("textcat")
    docs = [nlp.make_doc(text) for text in texts]
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(docs), 1024):
            textcat.length_order(docs[i : i + 1024])
    length_s = (time.perf_counter() - start) / repeats
    model = textcat.model
    hf = get_hf_objects(model)
    encoded = [
        hf.tokenizer(
            texts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=model.attrs["max_length"],
            return_tensors="pt",
        ).to(hf.transformer.device)
        for i in range(0, len(texts), batch_size)
    ]
    hf.transformer.eval()
    contexts = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}
    forward: Dict[str, List[float]] = {name: [] for name in contexts}
    for repeat in range(repeats):
        for name in list(contexts)[repeat % 2 :] + list(contexts)[: repeat % 2]:
            start = time.perf_counter()
            with contexts[name]():
                for batch in encoded:
                    hf.transformer(**batch)
                if hf.transformer.device.type == "cuda":
                    torch.cuda.synchronize()
            forward[name].append(time.perf_counter() - start)
    no_grad, inference = (
        statistics.mean(forward["no_grad"]),
        statistics.mean(forward["inference_mode"]),
    )
    return {
        "texts": len(texts),
        "length_tokenisation_s": round(length_s, 4),
        "forward_no_grad_s": round(no_grad, 3),
        "forward_inference_mode_s": round(inference, 3),
        "length_tokenisation_share_of_forward": round(length_s / no_grad, 4),
        "inference_mode_speedup": round(no_grad / inference, 3),
    }


def run_pipe_part(args: argparse.Namespace, results: Dict[str, Any]) -> None:
    nlp = build_pipeline(args.backbone, args.max_length)
    part: Dict[str, Any] = {}
    readers = {"tweets": read_tweets, "abstracts": read_abstracts}
    for dataset in args.datasets:
        texts = readers[dataset](args.data_dir, args.texts)
        print(f"[pipe] {dataset}: {len(texts)} texts", flush=True)
        windows = {"transformers (fixed order)": 0, "nlp.pipe (no bucketing)": 0}
        for window in [args.window] + (args.sweep if dataset == "tweets" else []):
            windows[f"nlp.pipe (bucket_window {window})"] = window
        runners = {name: pipe_runner(nlp, window) for name, window in windows.items()}
        runners["transformers (fixed order)"] = plain_transformers(nlp)
        timed = time_configs(runners, texts, args.batch_size, args.repeats)
        for name, window in windows.items():
            timed[name]["padding_share"] = padding_share(nlp, texts, args.batch_size, window)
        plain, unsorted = timed["transformers (fixed order)"], timed["nlp.pipe (no bucketing)"]
        bucketed = timed[f"nlp.pipe (bucket_window {args.window})"]
        part[dataset] = {
            "texts": len(texts),
            "configs": timed,
            "bucketed_over_unbucketed": round(
                bucketed["docs_per_s_mean"] / unsorted["docs_per_s_mean"], 3
            ),
            "bucketed_over_transformers": round(
                bucketed["docs_per_s_mean"] / plain["docs_per_s_mean"], 3
            ),
            "unbucketed_over_transformers": round(
                unsorted["docs_per_s_mean"] / plain["docs_per_s_mean"], 3
            ),
            "padding_share_by_window": {
                window: padding_share(nlp, texts, args.batch_size, window)
                for window in PADDING_WINDOWS
            },
            "overheads": overheads(
                nlp, texts[: min(len(texts), 512)], args.batch_size, args.repeats
            ),
        }
    results["pipe"] = part

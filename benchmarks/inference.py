"""Inference benchmark: length bucketing of ``nlp.pipe`` and ``classify``'s memory.

Not a test: the numbers depend on the machine and its load (``benchmarks/README.md`` explains
them). 1. ``pipe``: ``nlp.pipe`` with and without length bucketing against a plain transformers
loop on tweets (short) and PubMed abstracts (long), taking turns within each repeat, and the
padding each ``bucket_window`` leaves; 2. ``classify`` on a generated 200,000-row CSV: its RSS
over time (it must stay flat). Ray Data and the costs of the sort and of inference_mode were
measured until commit 00e7ef8 (README). Writes ``results/inference_<device>[_<parts>][_quick].*``.

    python benchmarks/inference.py [--parts pipe --datasets tweets] [--gpu-id 0] [--quick]
"""

import contextlib
import csv
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import environment as env
import numpy
import spacy
import torch
from spacy.language import Language

from spacy_dallmi.architecture import get_hf_objects
from spacy_dallmi.experiments.datasets import PUBMED_FILES

ALL_PARTS = ("pipe", "classify")
DATASETS = ("tweets", "abstracts")
LABELS = ("anger", "disgust", "fear", "joy", "love", "optimism", "sadness", "surprise")
PADDING_WINDOWS = (0, 64, 128, 256, 512, 1024, 2048)
WORDS = (
    "the a of and to in is for on with that this patients were was as by be are cells study "
    "results from at or an we not have which their these it been than more two after using "
    "happy sad love hate fear joy great today people really time day night work life world"
).split()
Runner = Callable[[List[str], int], numpy.ndarray]


def parse_args(argv: Optional[Sequence[str]]) -> Namespace:
    """The options, plus ``device``; sets the torch threads and selects the GPU."""
    options = env.parser(__doc__, threads=1)
    add = options.add_argument
    add("--parts", nargs="+", choices=ALL_PARTS, default=list(ALL_PARTS))
    add("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    add("--window", type=int, default=1024, help="bucket_window compared")
    add("--sweep", type=int, nargs="*", default=[256], help="more windows, tweets")
    add("--texts", type=int, default=2000)
    add("--repeats", type=int, default=3)
    add("--classify-rows", type=int, default=200_000)
    args = options.parse_args(argv)
    if args.quick:  # < 1 minute
        args.texts, args.repeats, args.sweep, args.batch_size = 64, 2, [], 16
        args.classify_rows, args.window, args.datasets = 2000, 256, ["tweets"]
    args.data_dir, args.device = args.data_dir.expanduser().resolve(), "cpu"
    torch.set_num_threads(args.threads)
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
        args.device = "gpu"
    return args


def read_texts(data_dir: Path, dataset: str, n: int) -> List[str]:
    """The first ``n`` SemEval training tweets, or PubMed abstracts (unique by pmid)."""
    if dataset == "tweets":
        path = data_dir / "semeval2018_ec" / "2018-E-c-En-train.txt"
        with path.open(encoding="utf8", newline="") as handle:
            rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            return [row["Tweet"] for row, _ in zip(rows, range(n))]
    texts: Dict[str, str] = {}
    for name in PUBMED_FILES:
        with (data_dir / "pubmed" / name).open(encoding="utf8", newline="") as handle:
            for row in csv.DictReader(handle):
                texts.setdefault(row["pmid"], row["abstractText"])
    return list(texts.values())[:n]


def write_corpus(path: Path, rows: int, seed: int = 0) -> Dict[str, int]:
    """A CSV of ``rows`` rows: texts of 1-60 words, ~1% empty, ~0.5% short rows (missing)."""
    rng = random.Random(seed)
    counts = {"ok": 0, "empty": 0, "missing": 0}
    with path.open("w", encoding="utf8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "source"])
        for i in range(rows):
            draw = rng.random()
            status = "missing" if draw < 0.005 else "empty" if draw < 0.015 else "ok"
            counts[status] += 1
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, 60))] if status == "ok" else []
            text = " ".join(words) + ", end" if words else ""
            writer.writerow([i] if status == "missing" else [i, text, "gen"])
    return counts


def build_pipeline(backbone: str, max_length: int) -> Language:
    nlp = spacy.blank("en")
    config = {"model": {"name": backbone, "max_length": max_length}}
    textcat = nlp.add_pipe("dallmi_textcat", name="textcat", config=config)
    for label in LABELS:
        textcat.add_label(label)
    nlp.initialize()
    return nlp


def plain_transformers(nlp: Language) -> Runner:
    """The baseline: the pipeline's own backbone and head, called directly, fixed order."""
    model = nlp.get_pipe("textcat").model
    hf, max_length = get_hf_objects(model), model.attrs["max_length"]
    params = (model.ops.to_numpy(model.layers[-1].get_param(name)) for name in "Wb")
    head = [torch.as_tensor(param, device=hf.transformer.device) for param in params]

    def run(texts: List[str], batch_size: int) -> numpy.ndarray:
        hf.transformer.eval()  # the shim's predict leaves the model in training mode
        args = (hf.tokenizer, hf.transformer, head, texts, batch_size)
        return env.plain_classify(*args, max_length=max_length)

    return run


def pipe_runner(nlp: Language, window: int) -> Runner:
    def run(texts: List[str], batch_size: int) -> numpy.ndarray:
        nlp.get_pipe("textcat").cfg["bucket_window"] = window
        docs = nlp.pipe(texts, batch_size=batch_size)
        return numpy.asarray([[doc.cats[label] for label in LABELS] for doc in docs])

    return run


def time_configs(runners: Dict[str, Runner], texts: List[str], batch_size: int, repeats: int):
    """Round-robin timing after a warm-up, and each output's difference to the first's."""
    for run in runners.values():
        run(texts[: 2 * batch_size], batch_size)
    names, step = list(runners), lambda name, _: runners[name](texts, batch_size)
    times, outputs, _ = env.round_robin("pipe", step, partial(env.rotated, names), repeats)
    results = {}
    for name in names:
        seconds, cpu = [wall for wall, _ in times[name]], sum(cpu for _, cpu in times[name])
        docs_per_s = [len(texts) / s for s in seconds]
        results[name] = {
            "seconds": [round(s, 3) for s in seconds],
            "docs_per_s_mean": round(statistics.mean(docs_per_s), 2),
            "docs_per_s_std": round(statistics.stdev(docs_per_s), 2) if repeats > 1 else 0.0,
            "cpu_s_per_wall_s": round(cpu / sum(seconds), 2),
            # one thread: CPU time is what the configuration cost, whatever else ran
            "docs_per_cpu_s": round(len(texts) * repeats / cpu, 2),
            "max_abs_diff_vs_first": float(numpy.abs(outputs[name] - outputs[names[0]]).max()),
        }
    return results


def padding_share(nlp: Language, texts: List[str], batch_size: int, window: int) -> float:
    """Share of padded word-piece positions in the batches a configuration runs."""
    textcat = nlp.get_pipe("textcat")
    docs = [nlp.make_doc(text) for text in texts]
    encoded = get_hf_objects(textcat.model).tokenizer([d.text for d in docs])["input_ids"]
    lengths = numpy.minimum([len(ids) for ids in encoded], textcat.model.attrs["max_length"])
    order: List[int] = []
    step = max(window, batch_size) if window else batch_size
    for start in range(0, len(docs), step):
        chunk = list(range(start, min(start + step, len(docs))))
        if window:
            chunk = [chunk[i] for i in textcat.length_order([docs[i] for i in chunk])]
        order += chunk
    batches = [lengths[order[i : i + batch_size]] for i in range(0, len(order), batch_size)]
    padded, real = sum(int(b.max()) * len(b) for b in batches), sum(int(b.sum()) for b in batches)
    return round(1 - real / padded, 3)


def run_pipe_part(args: Namespace, results: Dict[str, Any]) -> None:
    nlp = build_pipeline(args.backbone, args.max_length)
    results["pipe"] = {}
    for dataset in args.datasets:
        texts = read_texts(args.data_dir, dataset, args.texts)
        print(f"[pipe] {dataset}: {len(texts)} texts", flush=True)
        plain, unsorted = "transformers (fixed order)", "nlp.pipe (no bucketing)"
        windows = {plain: 0, unsorted: 0}
        for window in [args.window] + (args.sweep if dataset == "tweets" else []):
            windows[f"nlp.pipe (bucket_window {window})"] = window
        runners = {name: pipe_runner(nlp, window) for name, window in windows.items()}
        runners[plain] = plain_transformers(nlp)
        timed = time_configs(runners, texts, args.batch_size, args.repeats)
        for name, window in windows.items():
            timed[name]["padding_share"] = padding_share(nlp, texts, args.batch_size, window)
        docs_per_s = {name: config["docs_per_s_mean"] for name, config in timed.items()}
        bucketed = docs_per_s[f"nlp.pipe (bucket_window {args.window})"]
        shares = {w: padding_share(nlp, texts, args.batch_size, w) for w in PADDING_WINDOWS}
        results["pipe"][dataset] = {
            "texts": len(texts),
            "configs": timed,
            "bucketed_over_unbucketed": round(bucketed / docs_per_s[unsorted], 3),
            "bucketed_over_transformers": round(bucketed / docs_per_s[plain], 3),
            "unbucketed_over_transformers": round(docs_per_s[unsorted] / docs_per_s[plain], 3),
            "padding_share_by_window": shares,
        }


def run_classify_part(args: Namespace, results: Dict[str, Any], workdir: Path) -> None:
    """``classify`` in a subprocess, as the CLI runs it, and every 0.5 s its RSS and the share
    of the output written."""
    sys.path.insert(0, str(env.REPO_ROOT))
    from tests.conftest import build_tiny_bert

    model, source, output = (workdir / f for f in ("tiny_pipeline", "corpus.csv", "corpus_out.csv"))
    build_pipeline(str(build_tiny_bert(workdir / "tiny_bert")), 64).to_disk(model)
    expected = write_corpus(source, args.classify_rows)
    print(f"[classify] {args.classify_rows} rows", flush=True)
    code = "import torch, typer; torch.set_num_threads(1); "
    code += "from spacy_dallmi.classify import classify_command; typer.run(classify_command)"
    command = [sys.executable, "-c", code, str(model), str(source), str(output), "--text-column"]
    command += ["text", "--no-progress", "--bucket-window", str(args.window), "--threshold", "0.5"]

    def written() -> int:
        # classify writes to a temporary file of its own, .OUTPUT.<random>.partial
        for path in [*output.parent.glob(f".{output.name}.*.partial"), output]:
            with contextlib.suppress(OSError):
                return path.stat().st_size
        return 0

    samples, start = [], time.perf_counter()
    with (workdir / "classify.log").open("w+", encoding="utf8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while process.poll() is None:  # every 0.5 s: seconds, bytes written, RSS (MiB)
            if rss := env.read_proc_status("VmRSS", process.pid):
                samples.append((round(time.perf_counter() - start, 2), written(), rss / 2**20))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(0.5)
        if process.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"classify failed:\n{log.read()}")
    total, seconds = max(written(), 1), round(time.perf_counter() - start, 2)
    trace = [(t, done / total, value) for t, done, value in samples]  # (s, share written, MiB)
    with output.open(encoding="utf8", newline="") as handle:
        statuses, ids_in_order = dict.fromkeys(expected, 0), True
        for i, row in enumerate(csv.DictReader(handle)):
            statuses[row["text_status"]] += 1
            ids_in_order &= row["id"] == str(i)
    rss, after_first = [v for _, _, v in trace], [v for _, done, v in trace if done >= 0.1]
    at_share = {  # the first sample once this share of the output was written
        f"{share:.0%}": next((round(v, 1) for _, done, v in trace if done >= share - 1e-9), None)
        for share in (0.1, 0.25, 0.5, 0.75, 1.0)
    }
    step = max(1, len(rss) // 40)
    results["classify"] = {
        "rows": args.classify_rows,
        "input_mib": round(source.stat().st_size / 2**20, 1),
        "model": "random BERT, 2 layers, hidden 32 (tests/conftest.py), max_length 64",
        "seconds": seconds,
        "docs_per_s": round(args.classify_rows / seconds, 1),
        "rows_written": sum(statuses.values()),
        "statuses_expected": expected,
        "statuses_written": statuses,
        "ids_in_order": ids_in_order,
        "peak_rss_mib": round(max(rss), 1),
        "rss_mib_when_share_of_output_written": at_share,
        "rss_growth_from_10_percent_written_mib": round(max(after_first) - after_first[0], 1),
        "rss_samples": len(rss),
        "rss_over_time_s_share_mib": [[t, round(d, 3), round(v, 1)] for t, d, v in trace[::step]],
    }


#: The Markdown of each part, filled with its figures (and a pipe part's table ``rows``).
PIPE = """## nlp.pipe on {texts} {dataset}

| configuration | docs/s (mean ± std) | runs (s) | docs per CPU s | CPU s per wall s | \
padding share | max abs diff |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

- bucketed / unbucketed: **{bucketed_over_unbucketed}**; bucketed / transformers: \
**{bucketed_over_transformers}**; unbucketed / transformers: {unbucketed_over_transformers}
- padding share of the batches by bucket_window (0 = off): {shares}
"""
CLASSIFY = """## classify on a generated CSV of {rows} rows ({input_mib} MiB)

- model: {model}
- {seconds} s, {docs_per_s} docs/s; rows written {rows_written} of {rows}, ids in order: \
{ids_in_order}
- statuses written {statuses_written}, expected {statuses_expected}
- RSS (MiB) when this share of the output was written: {at_share}
- peak RSS **{peak_rss_mib} MiB**; growth from 10% written to the end \
**{rss_growth_from_10_percent_written_mib} MiB** ({rss_samples} samples, every 0.5 s)
"""


def markdown(results: Dict[str, Any]) -> str:
    ctx, settings = results["context"], results["context"]["settings"]
    setup = f"- backbone: {settings['backbone']}, max length {settings['max_length']}, batch "
    setup += f"{settings['batch_size']}, bucket_window {settings['window']}"
    lines = [*env.report_header("inference", ctx, setup)]
    lines += [f"- load average at start: {ctx['load_start']}, at end: {ctx['load_end']}", ""]
    for dataset, part in results.get("pipe", {}).items():
        rows = [
            f"| {name} | {row['docs_per_s_mean']} ± {row['docs_per_s_std']} | "
            + ", ".join(f"{s:.1f}" for s in row["seconds"])
            + f" | {row['docs_per_cpu_s']} | {row['cpu_s_per_wall_s']} | {row['padding_share']}"
            + f" | {row['max_abs_diff_vs_first']:.1e} |"
            for name, row in part["configs"].items()
        ]
        shares = ", ".join(f"{k}: {v}" for k, v in part["padding_share_by_window"].items())
        lines.append(PIPE.format(**part, dataset=dataset, rows="\n".join(rows), shares=shares))
    if "classify" in results:
        at = results["classify"]["rss_mib_when_share_of_output_written"].items()
        at_share = ", ".join(f"{k}: {v}" for k, v in at)
        lines.append(CLASSIFY.format(**results["classify"], at_share=at_share))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, start = parse_args(argv), time.perf_counter()
    settings = {k: v for k, v in vars(args).items() if not k.endswith("_dir") and k != "device"}
    context = env.provenance(args.gpu_id, device=args.device, load_start=env.load_average())
    results: Dict[str, Any] = {"context": {**context, "settings": settings}}
    with tempfile.TemporaryDirectory(prefix="dallmi_inference_") as tmp:
        if "pipe" in args.parts:
            run_pipe_part(args, results)
        if "classify" in args.parts:
            run_classify_part(args, results, Path(tmp))
    results["context"]["load_end"] = env.load_average()
    results["context"]["total_wall_s"] = round(time.perf_counter() - start, 1)
    name = f"inference_{args.device}"
    if set(args.parts) != set(ALL_PARTS) and not args.quick:
        name += "_" + "_".join(args.parts)
        if "pipe" in args.parts and set(args.datasets) != set(DATASETS):
            name += "_" + "_".join(args.datasets)
    name += "_quick" if args.quick else ""
    path = env.write_report(args.output_dir, name, results, markdown(results) + "\n")
    print(f"wrote {path} and {path.with_suffix('.md')} in {results['context']['total_wall_s']} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

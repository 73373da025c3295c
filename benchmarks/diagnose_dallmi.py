"""Why does DALLMi trail partial fine-tuning in short CPU runs? Train variants and compare.

Reuses a corpus and a source model made by the `table` workflow (``--project`` is that
project folder) and trains, for one ratio and seed, DALLMi and partial-label fine-tuning
with changed settings: a larger learning rate, MixUp off, the log loss form. Each variant is
scored on the target test split (last epoch; no model selection) and written to
``benchmarks/results/diagnose_<dataset>.{json,md}``.

    python benchmarks/diagnose_dallmi.py --project /tmp/table_emotions --dataset emotions \
        --run s0_n400 --ratio 0.5
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import srsly

from spacy_dallmi.experiments.evaluate import evaluate_pipeline

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

VARIANTS: Dict[str, Dict[str, object]] = {
    "dallmi lr 5e-5 (default)": {"config": "adapt.cfg"},
    "dallmi lr 5e-5, no MixUp": {"config": "adapt.cfg", "initialize.before_init.mixup": False},
    "dallmi lr 5e-5, lambda 0.1": {
        "config": "adapt.cfg",
        "initialize.before_init.mixup_lambda": 0.1,
    },
    "dallmi lr 3e-4": {"config": "adapt.cfg", "training.optimizer.learn_rate": 3e-4},
    "dallmi lr 3e-4, no MixUp": {
        "config": "adapt.cfg",
        "training.optimizer.learn_rate": 3e-4,
        "initialize.before_init.mixup": False,
    },
    "dallmi lr 3e-4, log form": {
        "config": "adapt.cfg",
        "training.optimizer.learn_rate": 3e-4,
        "initialize.before_init.loss_form": "log",
    },
    "dallmi lr 3e-4, lambda 0.1": {
        "config": "adapt.cfg",
        "training.optimizer.learn_rate": 3e-4,
        "initialize.before_init.mixup_lambda": 0.1,
    },
    "ft_partial lr 5e-5 (default)": {"config": "finetune.cfg"},
    "ft_partial lr 3e-4": {"config": "finetune.cfg", "training.optimizer.learn_rate": 3e-4},
    "ft_full lr 3e-4": {
        "config": "finetune.cfg",
        "train": "full",
        "training.optimizer.learn_rate": 3e-4,
    },
}
METHOD_OF = {"adapt.cfg": "dallmi", "finetune.cfg": "ft_partial"}


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--dataset", default="emotions")
    parser.add_argument("--run", default="s0_n400", help="the seed/cap folder, e.g. s0_n400")
    parser.add_argument("--ratio", default="0.5")
    parser.add_argument("--removal", default="per_sample")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--only", default="", help="semicolon-separated variant names to run")
    parser.add_argument("--tag", default="", help="suffix of the results files")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(";") if name.strip()]

    corpus = args.project / "corpus" / args.dataset / args.run
    source = args.project / "training" / args.dataset / args.run / "source" / "model-last"
    partial = corpus / f"{args.removal}_{args.ratio}" / "target_train.spacy"
    test = corpus / "target_test.spacy"
    work = args.project / "diagnose" / args.dataset / args.run / args.ratio
    rows = []
    for name, variant in VARIANTS.items():
        if chosen and name not in chosen:
            continue
        output = work / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        settings = {key: value for key, value in variant.items() if key not in ("config", "train")}
        full = variant.get("train") == "full"
        train = corpus / "target_train_full.spacy" if full else partial
        overrides = [f"--{key} {srsly.json_dumps(value)}" for key, value in settings.items()]
        command = (
            f"{sys.executable} -m spacy train {REPO / 'configs' / variant['config']} "
            f"--output {output} --paths.source {source} --paths.train {train} "
            f"--paths.dev {train} --corpora.dev.limit 100 --training.max_epochs {args.epochs} "
            f"--training.batcher.size {args.batch_size} --paths.curve_docs {test} "
            f"--paths.curve_output {output / 'curve.jsonl'} " + " ".join(overrides)
        )
        timing = output / "train_seconds.json"
        if timing.exists():
            # written only after training finished: the variant is scored again, not retrained
            seconds = srsly.read_json(timing)["seconds"]
        else:
            start = time.perf_counter()
            subprocess.run(command.split(), check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            srsly.write_json(timing, {"seconds": seconds})
        result = evaluate_pipeline(
            output / "model-last",
            test,
            method="ft_full" if full else METHOD_OF[variant["config"]],
            settings={"variant": name, **{k: str(v) for k, v in variant.items()}},
            epoch_log=output / "curve.jsonl",
        )
        result["train_seconds"] = seconds
        rows.append(result)
        metrics = result["metrics"]
        curve = [round(100 * r["cats_macro_ap"], 1) for r in result["epochs"]]
        print(f"{name}: macro AP {metrics['cats_macro_ap']:.4f}, per epoch {curve}", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"diagnose_{args.dataset}{args.tag}"
    srsly.write_json(RESULTS / f"{stem}.json", rows)
    lines = [
        f"# Diagnosis: DALLMi vs partial fine-tuning ({args.dataset}, {args.run}, "
        f"{args.removal} {args.ratio}, {args.epochs} epochs, batch {args.batch_size})",
        "",
        "Target test macro mAP of the model after the last epoch; the curve gives macro mAP "
        "before each epoch (the first is the source model). `train s` is the wall time of "
        "`spacy train`, taken while other benchmarks shared the cores, so only a rough guide. "
        "Written by `benchmarks/diagnose_dallmi.py`.",
        "",
        "| variant | macro mAP | micro AP | macro mAP per epoch | train s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        metrics = row["metrics"]
        curve = ", ".join(f"{100 * r['cats_macro_ap']:.1f}" for r in row["epochs"])
        lines.append(
            f"| {row['settings']['variant']} | {100 * metrics['cats_macro_ap']:.1f} | "
            f"{100 * metrics['cats_micro_ap']:.1f} | {curve} | {row['train_seconds']:.0f} |"
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf8")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The source models' calibration on the paired protocol's training docs: what ``teacher_split``
decides per seed and ratio, with and without the calibration test (``teacher_calibration``).

For each seed's converged source model (made by ``paired.py``, in its work folder) and each
ratio's partially labelled training docs, the source's probabilities are made as
``set_teacher`` makes them, and recorded per label: known positives, expected positives Σp,
the positives the known ones and the ranking imply (known + π̂·|U|), the true positives
(from the fully labelled copy of the same docs), and whether the label passes the per-label
test Σp ≥ known. Per cell: :func:`spacy_dallmi.teacher.calibration`, Σp over the true
positives pooled over labels (what the calibration estimates), and the labels the teacher
trains with the per-label test alone and with the default cut-off.

    python benchmarks/calibration.py --dataset pubmed --seeds 0,1,2,3,4 --threads 1
"""

import sys
from typing import Any, Dict, List

import numpy
import spacy
import torch
from environment import RESULTS, provenance, table, write_report
from paired import parse_args
from paired import parser as paired_parser
from spacy.tokens import DocBin

from spacy_dallmi.settings import DallmiSettings
from spacy_dallmi.teacher import calibration, mixture_share


def cell(nlp, docs: List[Any], truth: numpy.ndarray, p: numpy.ndarray) -> Dict[str, Any]:
    labels = list(nlp.get_pipe("textcat").labels)
    known = numpy.array([[doc.cats.get(label) == 1.0 for label in labels] for doc in docs])
    found = calibration(p, known)
    logits = numpy.log(numpy.clip(p, 1e-6, 1 - 1e-6) / numpy.clip(1 - p, 1e-6, 1))
    implied = [
        known[:, j].sum() + mixture_share(logits[:, j], known[:, j]) * (~known[:, j]).sum()
        if known[:, j].any() and not known[:, j].all()
        else None
        for j in range(len(labels))
    ]
    per_label = p.sum(axis=0) >= known.sum(axis=0)
    cut = DallmiSettings().teacher_calibration
    return {
        "calibration": round(float(found), 4),
        "expected_over_true": round(float(p.sum() / truth.sum()), 4),
        "teacher_labels_per_label_test": [lab for lab, on in zip(labels, per_label) if on],
        "teacher_labels_default": [
            lab for lab, on in zip(labels, per_label) if on and found >= cut
        ],
        "labels": {
            label: {
                "known": int(known[:, j].sum()),
                "expected": round(float(p[:, j].sum()), 2),
                "implied": None if implied[j] is None else round(float(implied[j]), 2),
                "true": int(truth[:, j].sum()),
            }
            for j, label in enumerate(labels)
        },
    }


def main(argv: List[str]) -> None:
    args = parse_args(argv, paired_parser(__doc__))
    if args.threads:
        torch.set_num_threads(args.threads)
    cells: Dict[str, Any] = {}
    for seed in args.seeds:
        folder = args.work / f"s{seed}"
        nlp = spacy.load(folder / "source")
        textcat = nlp.get_pipe("textcat")
        full = list(DocBin().from_disk(folder / "target_fit_full.spacy").get_docs(nlp.vocab))
        labels = list(textcat.labels)
        truth = numpy.array([[doc.cats.get(label) == 1.0 for label in labels] for doc in full])
        docs = [nlp.make_doc(doc.text) for doc in full]
        batches = [textcat.predict(docs[i : i + 64]) for i in range(0, len(docs), 64)]
        p = numpy.concatenate([textcat.model.ops.to_numpy(b) for b in batches])
        for ratio in args.ratios:
            name = f"r{round(100 * ratio)}"
            partial = DocBin().from_disk(folder / name / "target_fit.spacy")
            partial = list(partial.get_docs(nlp.vocab))
            assert [d.text for d in partial] == [d.text for d in full], "docs out of order"
            found = cells[f"s{seed}_{name}"] = cell(nlp, partial, truth, p)
            print(f"s{seed} {name}: calibration {found['calibration']}", flush=True)
    rows = [
        [key, c["calibration"], c["expected_over_true"], len(c["teacher_labels_per_label_test"]),
         len(c["teacher_labels_default"]), len(c["labels"])]
        for key, c in cells.items()
    ]  # fmt: skip
    header = ["cell", "calibration", "Σp / true positives", "teacher labels, per-label test",
              "teacher labels, default", "labels"]  # fmt: skip
    markdown = "\n".join([f"# Source calibration on `{args.dataset}`", "", *table(header, rows)])
    settings = {"dataset": args.dataset, "seeds": args.seeds, "ratios": args.ratios,
                "work": f"<work>/paired_{args.dataset}"}  # fmt: skip
    payload = {"settings": settings, "cells": cells, **provenance()}
    write_report(RESULTS, f"calibration_{args.dataset}", payload, markdown)


if __name__ == "__main__":
    main(sys.argv[1:])

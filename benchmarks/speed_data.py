"""Data and pipelines of the speed benchmark: PubMed abstracts, hidden labels, batches.

The labels are hidden with the experiment protocol's own function, so the benchmark trains on
data made the way every experiment makes it.
"""

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy
import spacy
from spacy.language import Language
from spacy.training import Example
from speed_harness import (
    DROPOUT,
    LEARN_RATE,
    Settings,
)
from thinc.api import Adam, Optimizer

from spacy_dallmi.architecture import resolve_backbone
from spacy_dallmi.batcher import cycle_batch_indices
from spacy_dallmi.experiments.datasets import MESH_ROOTS
from spacy_dallmi.experiments.protocol import hide_labels

HIDE_RATIO = 0.5
SYNTHETIC_DENSITY = 0.05
SEED = 0


@dataclass
class PubMed:
    """The deduplicated PubMed abstracts, their 14 MeSH-root labels and their lengths."""

    texts: List[str]
    labels: numpy.ndarray
    female: numpy.ndarray
    n_pieces: numpy.ndarray
    files: List[str] = field(default_factory=list)

    def target_indices(self) -> numpy.ndarray:
        """Documents of the target domain (tagged ``Female``), in file order."""
        return numpy.flatnonzero(self.female)


def load_pubmed(data_dir: Path, backbone: str) -> PubMed:
    """Read Title + abstractText and the MeSH root columns of every unique ``pmid``.

    The word-piece count (special tokens included, untruncated) is measured with the
    backbone's own tokenizer, so the training part can keep only documents that fill
    ``max_length`` and every batch has the same, full shape.
    """
    from transformers import AutoTokenizer

    folder = data_dir / "pubmed"
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise SystemExit(
            f"No PubMed CSV files in {folder}. Pass --data-dir pointing at the shared "
            "datasets folder (the one holding pubmed/, goemotions/, semeval2018_ec/)."
        )
    seen = set()
    texts, labels, female = [], [], []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["pmid"] in seen:
                    continue
                seen.add(row["pmid"])
                texts.append(f"{row['Title'].strip()} {row['abstractText'].strip()}".strip())
                labels.append([float(row[root]) for root in MESH_ROOTS])
                try:
                    headings = ast.literal_eval(row["meshMajor"])
                except (ValueError, SyntaxError):
                    headings = []
                female.append("Female" in headings)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(backbone))
    encoded = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return PubMed(
        texts=texts,
        labels=numpy.asarray(labels, dtype="float32"),
        female=numpy.asarray(female, dtype=bool),
        n_pieces=numpy.asarray([len(ids) for ids in encoded]),
        files=[str(path.relative_to(data_dir)) for path in files],  # no machine paths
    )


def training_indices(data: PubMed, max_length: int) -> numpy.ndarray:
    """Target-domain documents that fill ``max_length`` word pieces, in a seeded order."""
    keep = data.target_indices()
    keep = keep[data.n_pieces[keep] >= max_length]
    return numpy.random.default_rng(SEED).permutation(keep)


def hidden_positives(labels: numpy.ndarray) -> numpy.ndarray:
    """The adaptation data's known positives: the experiment protocol's own hiding of
    ``HIDE_RATIO`` of each document's positives (a label keeps at least one)."""
    return hide_labels(labels, HIDE_RATIO, "per_sample", SEED).partial


def cycle_batches(known: numpy.ndarray, size: int) -> List[List[int]]:
    """Full batches from the package's cycle batcher: each holds a known positive of
    every label that has one, as spacy train with ``cycle_batcher.v1`` would give."""
    positives = [numpy.flatnonzero(row == 1.0).tolist() for row in known]
    rng = numpy.random.default_rng(SEED)
    batches = [
        batch
        for batch in cycle_batch_indices(positives, known.shape[1], size, rng)
        if len(batch) == size
    ]
    if not batches:
        raise SystemExit(f"Not enough documents for one full batch of {size}.")
    must_cover = known.any(axis=0)
    for batch in batches:
        if not (known[batch].any(axis=0) >= must_cover).all():
            raise AssertionError("cycle batcher broke its coverage guarantee")
    return batches


def synthetic_labels(
    n_docs: int, n_labels: int, density: float, rng: numpy.random.Generator
) -> numpy.ndarray:
    """A random 0/1 matrix with >= 1 positive and >= 1 unlabeled document per label."""
    matrix = (rng.random((n_docs, n_labels)) < density).astype("float32")
    for label in range(n_labels):
        if not matrix[:, label].any():
            matrix[rng.integers(n_docs), label] = 1.0
        if matrix[:, label].all():
            matrix[rng.integers(n_docs), label] = 0.0
    return matrix


def make_examples(
    nlp: Language, texts: Sequence[str], matrix: numpy.ndarray, names: Sequence[str]
) -> List[Example]:
    """Examples whose ``cats`` hold every label: 1.0 positive, 0.0 negative/unlabeled."""
    return [
        Example.from_dict(
            nlp.make_doc(text),
            {"cats": {name: float(v) for name, v in zip(names, row, strict=True)}},
        )
        for text, row in zip(texts, matrix, strict=True)
    ]


def build_pipeline(
    settings: Settings,
    objective: str,
    mixup: bool,
    init_examples: Callable[[Language], List[Example]],
) -> Tuple[Language, Optimizer]:
    """A blank pipeline with one ``dallmi_textcat``, initialised as spacy train would.

    The optimizer is spaCy's default ``[training.optimizer]`` with the paper's learning
    rate, so ``finish_update`` costs what it costs in ``spacy train``.
    """
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "dallmi_textcat",
        config={
            "objective": objective,
            "mixup": mixup,
            "model": {
                "@architectures": "spacy_dallmi.TransformerClassifier.v1",
                "name": settings.backbone,
                "max_length": settings.max_length,
            },
        },
    )
    examples = init_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = Adam(LEARN_RATE, L2=0.01, grad_clip=1.0, use_averages=False)
    return nlp, optimizer


def training_pipelines(
    settings: Settings,
    texts: Sequence[str],
    full: numpy.ndarray,
    known: numpy.ndarray,
    batches: Sequence[Sequence[int]],
) -> Iterator[Tuple[str, Language, Optimizer, List[List[Example]]]]:
    """Build the ``bce``, ``dallmi`` and ``dallmi+mixup`` pipelines one at a time.

    Yields ``(name, nlp, optimizer, example batches)``: ``bce`` sees every label (``full``),
    the two ``dallmi`` configurations the partial ones (``known``); ``batches`` index ``texts``.
    """
    for name, objective, mixup, matrix in (
        ("bce", "bce", False, full),
        ("dallmi", "dallmi", False, known),
        ("dallmi+mixup", "dallmi", True, known),
    ):
        made: Dict[str, List[List[Example]]] = {}

        def init(
            nlp: Language,
            matrix: numpy.ndarray = matrix,
            made: Dict[str, List[List[Example]]] = made,
        ) -> List[Example]:
            made["batches"] = [
                make_examples(nlp, [texts[i] for i in batch], matrix[batch], MESH_ROOTS)
                for batch in batches
            ]
            return made["batches"][0]

        nlp, optimizer = build_pipeline(settings, objective, mixup, init)
        yield name, nlp, optimizer, made["batches"]
        del nlp, optimizer


def component_model(nlp: Language):
    return nlp.get_pipe("dallmi_textcat").model


def update(nlp: Language, optimizer: Optimizer, batch: List[Example]) -> None:
    nlp.update(batch, sgd=optimizer, drop=DROPOUT)


def inference_texts(data: PubMed, settings: Settings) -> List[str]:
    """The first target-domain abstracts in file order, at their real (varied) lengths."""
    return [data.texts[i] for i in data.target_indices()[: settings.inference_texts]]


def inference_pipeline(settings: Settings, data: PubMed) -> Language:
    def init(nlp: Language) -> List[Example]:
        return make_examples(nlp, data.texts[:8], data.labels[:8], MESH_ROOTS)

    nlp, _ = build_pipeline(settings, "bce", False, init)
    return nlp


def spacy_predict(nlp: Language, texts: Sequence[str], batch_size: int) -> numpy.ndarray:
    labels = nlp.get_pipe("dallmi_textcat").labels
    return numpy.asarray(
        [[doc.cats[label] for label in labels] for doc in nlp.pipe(texts, batch_size=batch_size)]
    )

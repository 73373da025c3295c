"""Small builders shared by the component, MixUp and training tests."""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy
import spacy
from spacy.language import Language
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_dallmi.experiments.protocol import hide_labels

LABELS = ("anger", "fear", "joy", "sadness")
CUES = {
    "anger": ["angry", "rage", "hate", "mad"],
    "fear": ["scared", "afraid", "fear", "worry"],
    "joy": ["happy", "joy", "glad", "smile"],
    "sadness": ["sad", "cry", "tears", "grief"],
}
FILLER = ["the", "day", "people", "thing", "time", "today", "really", "very", "just", "like"]


def toy_texts(n: int, seed: int = 0) -> List[Tuple[str, Dict[str, float]]]:
    """Separable multi-label toy data: a label is present iff one of its cue words is."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        present = [label for label in LABELS if rng.random() < 0.35]
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
        words += [rng.choice(CUES[label]) for label in present]
        rng.shuffle(words)
        rows.append((" ".join(words), {label: float(label in present) for label in LABELS}))
    return rows


def make_examples(nlp: Language, rows: Sequence[Tuple[str, Dict[str, float]]]) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text, cats in rows]


def make_nlp(backbone: str, max_length: int = 32, **settings) -> Language:
    nlp = spacy.blank("en")
    config = {"model": {"name": backbone, "max_length": max_length}, **settings}
    nlp.add_pipe("dallmi_textcat", name="textcat", config=config)
    return nlp


def hide_positives(rows, fraction: float, seed: int = 0):
    """Turn a share of each label's positives into unlabeled (0.0), keeping one per label.

    The experiment kit's own hiding (per label), so the tests train on data hidden the way the
    experiments hide it.
    """
    matrix = numpy.array([[cats[label] for label in LABELS] for _, cats in rows])
    partial = hide_labels(matrix, fraction, "per_label", seed).partial
    return [
        (text, {label: float(value) for label, value in zip(LABELS, row)})
        for (text, cats), row in zip(rows, partial)
    ]


def write_docbin(path: Path, rows: Sequence[Tuple[str, Dict[str, float]]]) -> Path:
    """Save rows of (text, cats) as a DocBin, the format `spacy train` reads."""
    nlp = spacy.blank("en")
    docs = []
    for text, cats in rows:
        doc = nlp.make_doc(text)
        doc.cats = cats
        docs.append(doc)
    DocBin(docs=docs).to_disk(path)
    return path


def save_trained_pipeline(backbone: str, path: Path) -> Path:
    """A tiny pipeline after one update on toy data, saved to ``path`` (for load tests)."""
    nlp = make_nlp(backbone)
    examples = make_examples(nlp, toy_texts(24))
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer)
    nlp.to_disk(path)
    return path

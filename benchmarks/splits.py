"""The corpora of one seed of the paired protocol, prepared once and shared by every method.

The project's :func:`~spacy_dallmi.experiments.corpus.prepare_domains` makes the splits and
hides target labels, drawing each step from its own random stream, so only the hidden labels
differ between ratios. On top, a seeded validation slice is carved out of target train (the
same documents at every ratio, with the ratio's hidden labels, so selection on it sees partial
labels only), with its fully labelled twin ``target_val_full`` for analysis, and a small
``source_dev`` for spaCy's dev evaluation of the source model. ``prepared.json`` marks a
finished seed, so a resumed run reuses its files.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

import numpy as np
import spacy
import srsly
from spacy.tokens import DocBin

from spacy_dallmi.experiments.corpus import prepare_domains
from spacy_dallmi.experiments.datasets import load_dataset
from spacy_dallmi.experiments.protocol import PrepareSettings

#: The protocol's ratios, all prepared at every seed: the ratio-independent runs (none,
#: ft_full, aad) are scored at each.
RATIOS = (0.5, 0.7, 0.9)
VAL_FRACTION = 0.15
SOURCE_DEV_DOCS = 300
#: A stream id of our own (the project's streams are 0-7), so the carve moves nothing else.
VAL_STREAM = 100
MARKER = "prepared.json"


@dataclass(frozen=True)
class Sizes:
    """Caps per split (None = every document)."""

    source: Optional[int]
    target_train: Optional[int]
    target_test: Optional[int]


def ratio_name(ratio: float) -> str:
    return f"r{round(100 * ratio):02d}"


@dataclass(frozen=True)
class SeedCorpora:
    """Paths of one seed's DocBins. ``fit`` is target train minus the validation slice."""

    folder: Path
    labels: List[str]

    source_train = property(lambda self: self.folder / "source_train.spacy")
    source_dev = property(lambda self: self.folder / "source_dev.spacy")
    fit_full = property(lambda self: self.folder / "target_fit_full.spacy")
    val_full = property(lambda self: self.folder / "target_val_full.spacy")
    test = property(lambda self: self.folder / "target_test.spacy")

    def fit(self, ratio: float) -> Path:
        return self.folder / ratio_name(ratio) / "target_fit.spacy"

    def val(self, ratio: float) -> Path:
        return self.folder / ratio_name(ratio) / "target_val.spacy"


def read_docs(path: Path) -> List:
    """The docs of a DocBin file, on a blank English vocab."""
    nlp = spacy.blank("en")
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def _write(path: Path, docs: Sequence) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=list(docs), store_user_data=False).to_disk(path)


def _split(docs: Sequence, val: Set[int], fit_path: Path, val_path: Path) -> None:
    _write(fit_path, [d for i, d in enumerate(docs) if i not in val])
    _write(val_path, [d for i, d in enumerate(docs) if i in val])


def carve_validation(n_docs: int, seed: int) -> np.ndarray:
    """Sorted indices of the validation slice: ``round(VAL_FRACTION · n)`` docs, at least one."""
    n_val = min(max(int(round(VAL_FRACTION * n_docs)), 1), n_docs - 1)
    rng = np.random.default_rng([seed, VAL_STREAM])
    return np.sort(rng.choice(n_docs, size=n_val, replace=False))


def prepare_seed(dataset: str, data_dir: Path, work: Path, seed: int, sizes: Sizes) -> SeedCorpora:
    """Prepare (or reuse) every split of ``seed`` under ``work/s<seed>``."""
    folder = work / f"s{seed}"
    marker = folder / MARKER
    if marker.exists():
        return SeedCorpora(folder, srsly.read_json(marker)["labels"])
    pair = load_dataset(dataset, data_dir, seed=seed)
    counts: Dict[str, int] = {}
    for ratio in RATIOS:
        settings = PrepareSettings(dataset, ratio, seed=seed, max_source_docs=sizes.source,
                                   max_target_docs=sizes.target_train,
                                   max_target_test_docs=sizes.target_test)  # fmt: skip
        raw = folder / "prepare" / ratio_name(ratio)
        stats = prepare_domains(pair, raw, settings, quiet=True)
        corpora = SeedCorpora(folder, stats["labels"])
        partial = read_docs(raw / "target_train.spacy")
        val = set(carve_validation(len(partial), seed).tolist())
        _split(partial, val, corpora.fit(ratio), corpora.val(ratio))
        counts[f"hidden_{ratio_name(ratio)}"] = stats["hiding"]["hidden"]
    # Source, full target train and test do not depend on the ratio: take the last ones.
    names = ("target_train_full", "source_train", "target_test", "source_test")
    full, source, test, source_test = (read_docs(raw / f"{name}.spacy") for name in names)
    _split(full, val, corpora.fit_full, corpora.val_full)
    _write(corpora.test, test)
    _write(corpora.source_train, source)
    _write(corpora.source_dev, source_test[:SOURCE_DEV_DOCS])
    counts.update(source_train=len(source), target_fit=len(full) - len(val), target_val=len(val),
                  target_test=len(test))  # fmt: skip
    srsly.write_json(marker, {"labels": corpora.labels, "docs": counts, "sizes": sizes.__dict__})
    return corpora


def prepared_counts(corpora: SeedCorpora) -> Dict[str, int]:
    """The document counts recorded when the seed was prepared."""
    return srsly.read_json(corpora.folder / MARKER)["docs"]

"""The built-in domain pairs: ``emotions`` (Reddit -> Twitter) and ``pubmed`` (male -> female),
read into a :class:`~.readers.DomainPair` with the labels both domains share (what that drops
is counted), as users' own files are.
"""

from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy

from .protocol import stream
from .readers import (
    Corpus,
    CorpusBuilder,
    DataPreparationError,
    DomainPair,
    PathLike,
    RowProblem,
    iter_records,
    parse_flag,
    parse_literal_list,
    read_table,
    require_file,
    text_value,
)

DATASETS = ("emotions", "pubmed")
#: The 8 emotions GoEmotions and SemEval-2018 E-c share, in the order the corpora use.
EMOTION_LABELS = ("anger", "disgust", "fear", "joy", "love", "optimism", "sadness", "surprise")
#: All label columns of SemEval-2018 E-c; the 3 not in EMOTION_LABELS are dropped (and counted).
SEMEVAL_LABELS = tuple(sorted((*EMOTION_LABELS, "anticipation", "pessimism", "trust")))
#: The 14 MeSH tree roots that are one-hot columns of the PubMed CSVs (the paper's 14 labels).
MESH_ROOTS = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "L", "M", "N", "Z")
GOEMOTIONS_FILES = ("train.tsv", "dev.tsv", "test.tsv")
SEMEVAL_FILES = ("2018-E-c-En-train.txt", "2018-E-c-En-dev.txt")
PUBMED_FILES = tuple(f"{part}-data-small.csv" for part in ("train", "dev", "test"))
PUBMED_FILES += ("dev-data-med.csv", "test-data-med.csv")


def asset_hint(asset: str, origin: str) -> str:
    return (
        f"It belongs to the '{asset}' asset ({origin}): run `spacy project assets` to fetch it, "
        f"or point data_dir at the folder that holds goemotions/, semeval2018_ec/ and pubmed/ "
        f"(by default ../shared/datasets)."
    )


def _parse_ids(value: Optional[str], n_labels: int) -> List[int]:
    """Comma-separated label ids, each a valid index into the label list; none when blank."""
    if value is None or not value.strip():
        return []
    try:
        ids = sorted({int(part) for part in value.split(",")})
    except ValueError:
        raise RowProblem("unparseable_labels") from None
    if ids[0] < 0 or ids[-1] >= n_labels:
        raise RowProblem("unparseable_labels")
    return ids


def read_goemotions(folder: PathLike) -> Corpus:
    """GoEmotions train+dev+test (headerless TSVs: text, label ids, comment id), with all 28
    labels of ``labels.txt``, so that selecting the shared ones counts what the others drop."""
    folder = Path(folder)
    hint = asset_hint("goemotions", "monologg/GoEmotions-pytorch, data/original")
    labels_path = folder / "labels.txt"
    require_file(labels_path, hint)
    names = [line.strip() for line in labels_path.read_text(encoding="utf8").splitlines()]
    names = [name for name in names if name]
    files = [folder / name for name in GOEMOTIONS_FILES]
    builder = CorpusBuilder(", ".join(str(p) for p in files), labels=names)
    columns = ("text", "label_ids", "comment_id")

    def parse(row_id: str, record: Dict[str, Any]) -> Tuple[str, List[str]]:
        text = text_value(record["text"])
        return text, [names[i] for i in _parse_ids(record["label_ids"], len(names))]

    for path in files:
        builder.read(iter_records(path, "tsv", columns[:2], fieldnames=columns, hint=hint), parse)
    return builder.build()


def load_emotions(data_dir: PathLike) -> DomainPair:
    """Reddit -> Twitter: GoEmotions (source) and SemEval-2018 E-c train+dev (target), both
    with the 8 shared emotions only; the other labels' positives are counted, and a text with
    none of the 8 stays in as an all-negative example."""
    data_dir = Path(data_dir)
    source_all = read_goemotions(data_dir / "goemotions")
    target_all = read_table(
        [data_dir / "semeval2018_ec" / name for name in SEMEVAL_FILES],
        text_column="Tweet",
        label_columns=SEMEVAL_LABELS,
        file_format="tsv",
        hint=asset_hint("semeval2018_ec", "mithunpaul08/twitter_psentiment_multi_label"),
    )
    source = source_all.select_labels(EMOTION_LABELS)
    target = target_all.select_labels(EMOTION_LABELS)
    details = {
        "shared_labels": list(EMOTION_LABELS),
        "source_labels_dropped": [x for x in source_all.labels if x not in EMOTION_LABELS],
        "target_labels_dropped": [x for x in target_all.labels if x not in EMOTION_LABELS],
    }
    return DomainPair(source, target, {"source": source.report, "target": target.report}, details)


def load_pubmed(data_dir: PathLike, *, seed: int = 0) -> DomainPair:
    """PubMed, male -> female: the five CSVs deduplicated by pmid, split by meshMajor tags
    (``Male`` only: source, ``Female`` only: target, both: a seeded coin flip, neither: left
    out). Text is Title + " " + abstractText; labels, the 14 one-hot MeSH root columns."""
    folder = Path(data_dir) / "pubmed"
    hint = asset_hint("pubmed", "jktjia/PubMed-Multilabel-Classifiction, data/")
    files = [folder / name for name in PUBMED_FILES]
    builder = CorpusBuilder(", ".join(str(p) for p in files), labels=MESH_ROOTS)
    report = builder.report
    required = ("Title", "abstractText", "meshMajor", "pmid", *MESH_ROOTS)
    seen: Set[str] = set()
    sides: List[Tuple[bool, bool]] = []

    def parse(path: Path, row_id: str, record: Dict[str, Any]) -> Tuple[str, List[str]]:
        pmid = (record["pmid"] or "").strip()
        if not pmid:
            raise RowProblem("missing_pmid")
        if pmid in seen:
            raise RowProblem("duplicate_pmid")
        seen.add(pmid)
        parts = (record["Title"] or "", record["abstractText"] or "")
        text = text_value(" ".join(part.strip() for part in parts if part.strip()))
        mesh = parse_literal_list(record["meshMajor"] or "", "unparseable_meshMajor")
        male, female = "Male" in mesh, "Female" in mesh
        if not (male or female):
            raise RowProblem("tagged_neither")
        flags = [parse_flag(record[column]) for column in MESH_ROOTS]
        if None in flags:
            column = MESH_ROOTS[flags.index(None)]
            raise DataPreparationError(
                f"{path}, line {row_id.rsplit(':', 1)[-1]}, column {column!r}: empty label "
                "cell in a fully labelled file. Fetch the file again (`spacy project assets`): "
                "the published one has 0 or 1 in every cell."
            )
        sides.append((male, female))
        return text, [c for c, flag in zip(MESH_ROOTS, flags) if flag]

    for path in files:
        builder.read(iter_records(path, "csv", required, hint=hint), partial(parse, path))
    pool = builder.build()
    male = numpy.array([m for m, _ in sides], dtype=bool)
    female = numpy.array([f for _, f in sides], dtype=bool)
    both = male & female
    coin = stream(seed, "domains").random(len(pool)) < 0.5
    to_source = (male & ~female) | (both & coin)
    details = {
        "unique_pmids": len(seen),
        "tagged_male": int(male.sum()),
        "tagged_female": int(female.sum()),
        "tagged_both": int(both.sum()),
        "tagged_neither": len(report.skipped.get("tagged_neither", [])),
        "both_to_source": int((both & to_source).sum()),
        "both_to_target": int((both & ~to_source).sum()),
    }
    return DomainPair(
        pool.subset(numpy.flatnonzero(to_source)),
        pool.subset(numpy.flatnonzero(~to_source)),
        {"pubmed": report},
        details,
    )


def load_dataset(dataset: str, data_dir: PathLike, *, seed: int = 0) -> DomainPair:
    if dataset == "emotions":
        return load_emotions(data_dir)
    if dataset == "pubmed":
        return load_pubmed(data_dir, seed=seed)
    raise DataPreparationError(
        f"Unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}, or use "
        f"prepare-files for your own data."
    )

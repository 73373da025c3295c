"""`spacy train` on both shipped configs, end to end, in-process, on a tiny BERT."""

from pathlib import Path

import pytest
import spacy
from spacy.cli.train import train

from .util import LABELS, hide_positives, toy_texts, write_docbin

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    paths = {
        "source_train": write_docbin(folder / "source_train.spacy", toy_texts(40, seed=1)),
        "source_dev": write_docbin(folder / "source_dev.spacy", toy_texts(16, seed=2)),
        "target_train": write_docbin(
            folder / "target_train.spacy", hide_positives(toy_texts(40, seed=3), 0.5)
        ),
    }
    return {name: str(path) for name, path in paths.items()}


def test_source_then_sourced_configs_train_end_to_end(tiny_bert, corpus, tmp_path):
    source_dir = tmp_path / "source"
    train(
        CONFIGS / "source.cfg",
        source_dir,
        overrides={
            "paths.train": corpus["source_train"],
            "paths.dev": corpus["source_dev"],
            "paths.backbone": tiny_bert,
            "components.textcat.model.max_length": 32,
            "training.max_epochs": 2,
            "training.eval_frequency": 3,
            "training.batcher.size": 8,
        },
    )
    source = spacy.load(source_dir / "model-last")
    assert source.get_pipe("textcat").cfg["objective"] == "bce"
    assert set(source("happy day").cats) == set(LABELS)

    for config, objective in (("adapt.cfg", "dallmi"), ("finetune.cfg", "bce")):
        output = tmp_path / objective
        train(
            CONFIGS / config,
            output,
            overrides={
                "paths.source": str(source_dir / "model-last"),
                "paths.train": corpus["target_train"],
                "paths.dev": corpus["target_train"],
                "training.max_epochs": 2,
                "training.eval_frequency": 3,
                "training.batcher.size": 8,
            },
        )
        adapted = spacy.load(output / "model-last")
        textcat = adapted.get_pipe("textcat")
        assert textcat.cfg["objective"] == objective
        assert textcat.labels == source.get_pipe("textcat").labels
        assert adapted("happy day").cats != source("happy day").cats
        assert (output / "model-best" / "meta.json").exists()


def test_adaptation_rejects_a_batch_smaller_than_the_label_set(tiny_bert, corpus, tmp_path):
    source_dir = tmp_path / "source"
    train(
        CONFIGS / "source.cfg",
        source_dir,
        overrides={
            "paths.train": corpus["source_train"],
            "paths.dev": corpus["source_dev"],
            "paths.backbone": tiny_bert,
            "training.max_steps": 1,
            "training.batcher.size": 8,
        },
    )
    with pytest.raises(ValueError, match=r"\b3\b.*\b4\b|\b4\b.*\b3\b"):
        train(
            CONFIGS / "adapt.cfg",
            tmp_path / "adapted",
            overrides={
                "paths.source": str(source_dir / "model-last"),
                "paths.train": corpus["target_train"],
                "paths.dev": corpus["target_train"],
                "training.max_steps": 2,
                "training.batcher.size": 3,
            },
        )

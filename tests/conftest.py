"""Shared fixtures: opt-in markers and a tiny random BERT that never touches the hub."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

TINY_WORDS = (
    "the a an and or not is was be to of in on for with this that it i you we they "
    "happy joy love great good glad smile laugh sad cry tears grief angry rage hate mad "
    "fear scared afraid worry hope optimism future bright disgust gross awful surprise "
    "wow shock today day time people thing really very so just like"
).split()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--gpu", action="store_true", default=False, help="run GPU tests")
    parser.addoption("--slow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for flag in ("gpu", "slow"):
        if config.getoption(f"--{flag}"):
            continue
        skip = pytest.mark.skip(reason=f"needs --{flag}")
        for item in items:
            if flag in item.keywords:
                item.add_marker(skip)


def build_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a randomly initialised BERT and a WordPiece tokenizer to `folder`.

    The vocabulary holds the special tokens, single characters (so any text can be
    tokenised) and a few whole words used by the tests' toy datasets.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    vocab += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in TINY_WORDS if w not in vocab]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random BERT, built once per test session."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))

"""Which runs the ablations train and read: ``--variants`` and the reuse of paired runs."""

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from ablations import (  # noqa: E402
    LAMBDAS,
    ablation_variants,
    batcher_config,
    chosen,
    parse,
    variant_path,
    variant_slug,
)

REPO = Path(__file__).resolve().parents[1]

VARIANTS = ablation_variants(list(LAMBDAS))
DEFAULT = VARIANTS[0][0]


def test_variants_option_keeps_the_tables_order():
    slugs = ["lambda_1", "mixup_at_word_embeddings_log_loss"]
    _, _, parsed = parse(["--dataset", "pubmed", "--variants", ",".join(slugs)])
    assert parsed == slugs
    picked = [variant_slug(name) for name, _ in chosen(VARIANTS, parsed)]
    assert picked == ["mixup_at_word_embeddings_log_loss", "lambda_1"]
    assert chosen(VARIANTS, parse(["--dataset", "pubmed"])[2]) == VARIANTS


def test_unknown_variant_is_named():
    with pytest.raises(SystemExit, match="unknown mixup_at_nowhere;.*lambda_0.03"):
        chosen(VARIANTS, ["lambda_1", "mixup_at_nowhere"])


def test_a_finished_paired_twin_is_reused_until_the_variant_has_its_own_run(tmp_path):
    args = argparse.Namespace(results=tmp_path / "paired_pubmed")
    folder = tmp_path / "ablations_pubmed"
    args.results.mkdir()
    folder.mkdir()
    own = folder / "s1_r70_default_word_embeddings_norm_loss_lambda_0.1_cycle_batches.json"
    assert variant_path(args, folder, 1, 0.7, DEFAULT) == (own, None)
    paired = args.results / "s1_r70_dallmi_pu.json"
    paired.write_text("{}")  # a run from before the training CPU time was recorded counts too
    assert variant_path(args, folder, 1, 0.7, DEFAULT) == (paired, "dallmi_pu")
    log = folder / "s1_r70_mixup_at_word_embeddings_log_loss.json"
    assert variant_path(args, folder, 1, 0.7, "mixup at word_embeddings, log loss") == (log, None)
    own.write_text("{}")
    assert variant_path(args, folder, 1, 0.7, DEFAULT) == (own, None)


def test_ablations_cover_the_papers_tables_without_repeating_the_default() -> None:
    variants = dict(ablation_variants([0.0, 0.1, 1.0]))
    locations = {
        (v["mixup_location"], v["loss_form"]) for v in variants.values() if "mixup_location" in v
    }
    assert len(locations) == 5  # 3 locations x 2 loss forms, less the default
    assert "lambda 0.1" not in variants and {"lambda 0", "lambda 1"} <= set(variants)
    assert "positive term l2" in variants and "plain shuffled batches" in variants
    assert next(iter(variants)).startswith("default")
    batchers = [v["batcher"] for v in variants.values() if "batcher" in v]
    assert batchers == ["spacy.batch_by_sequence.v1", "spacy_dallmi.positive_sampling_batcher.v1"]


@pytest.mark.parametrize(
    "batcher", ["spacy.batch_by_sequence.v1", "spacy_dallmi.positive_sampling_batcher.v1"]
)
def test_ablation_batcher_configs_resolve_with_size_and_seed(tmp_path: Path, batcher: str) -> None:
    from spacy.util import load_config, registry

    path = batcher_config(REPO / "configs" / "adapt.cfg", tmp_path, batcher, 12, 3)
    block = load_config(path)["training"]["batcher"]
    assert block["@batchers"] == batcher and block["size"] == 12
    if batcher == "spacy.batch_by_sequence.v1":
        assert "seed" not in block and block["get_length"] is None
    else:
        assert block["seed"] == 3
    assert callable(registry.resolve({"batcher": block})["batcher"])

"""Which runs the ablations train and read: ``--variants`` and the reuse of paired runs."""

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from ablations import LAMBDAS, chosen, parse, variant_path  # noqa: E402

from spacy_dallmi.experiments.grid import ablation_variants, variant_slug  # noqa: E402

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

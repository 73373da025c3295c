"""GPU checks, opt-in with `pytest --gpu` on a machine with CUDA."""

import numpy
import pytest
import torch

from .util import hide_positives, make_examples, make_nlp, toy_texts

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu():
    if not torch.cuda.is_available():
        pytest.fail("--gpu was given but torch sees no CUDA device")
    from thinc.api import require_gpu, use_ops

    require_gpu(0)
    yield
    use_ops("numpy")


@pytest.mark.parametrize("location", ["word_embeddings", "encoder", "sentence"])
def test_dallmi_update_on_gpu(tiny_bert, gpu, location):
    nlp = make_nlp(tiny_bert, objective="dallmi", mixup_location=location)
    examples = make_examples(nlp, hide_positives(toy_texts(32), 0.5))
    optimizer = nlp.initialize(lambda: examples)
    model = nlp.get_pipe("textcat").model
    transformer = model.layers[0].shims[0]._model
    assert next(transformer.parameters()).is_cuda
    losses = {}
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, losses=losses)
    assert numpy.isfinite(losses["textcat"])
    cats = [doc.cats for doc in nlp.pipe(["happy glad", "", "sad " * 50])]
    assert all(0.0 <= v <= 1.0 for c in cats for v in c.values())


def test_gpu_and_cpu_predictions_agree(tiny_bert, gpu, tmp_path):
    import spacy
    from thinc.api import use_ops

    nlp = make_nlp(tiny_bert)
    nlp.initialize(lambda: make_examples(nlp, toy_texts(16)))
    texts = ["happy glad day", "rage and tears", ""]
    on_gpu = [doc.cats for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "pipeline")
    use_ops("numpy")
    on_cpu = [doc.cats for doc in spacy.load(tmp_path / "pipeline").pipe(texts)]
    for a, b in zip(on_gpu, on_cpu):
        assert a == pytest.approx(b, abs=1e-4)

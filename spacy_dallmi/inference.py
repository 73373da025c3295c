"""Length-bucketed ``pipe``: classify a window of documents in order of length.

A transformer batch is padded to its longest document. Short texts of mixed length, such
as tweets, taken in arrival order make batches that are mostly padding, and on a CPU the
padding costs as much as the text. :class:`BucketedPipeMixin` reads a window of documents,
sorts it by word-piece length, predicts in batches of neighbours in that order and yields
the documents in their original order. Padding changes a probability only by float
rounding, so the output does not depend on the window.

The window (``cfg["bucket_window"]``, in documents) is a setting because it trades latency
and memory for padding: a document is yielded only when its whole window is done. 0 or
``None`` keeps spaCy's plain ``pipe``. A window smaller than the batch size reads one batch
at a time, sorted, which is the plain behaviour at the same cost.

Prediction already runs without autograd: spacy-transformers' ``HFShim.predict`` wraps the
forward pass in ``torch.no_grad()``. ``torch.inference_mode()`` would additionally mark the
tensors it creates as inference tensors, which breaks backbones that cache tensors lazily
(rotary position tables, for example) when the same model is trained afterwards, for a
gain within noise on CPU (MiniLM forward passes, inference_mode / no_grad: 0.94 to 1.04
across runs of ``benchmarks/inference.py`` at commit 00e7ef8); so it is not used.

The lengths come from the component's own Hugging Face tokenizer, truncated to the model's
``max_length``. A document with at least ``max_length`` whitespace-separated words (less the
special tokens) is taken to be at the cap without tokenising it: a word is one word piece or
more, except for words made only of characters the tokenizer's normaliser deletes (control
and zero-width characters), and for those a wrong length only moves the document to another
batch, which changes no probability beyond float rounding. Long texts such as abstracts
mostly are at the cap: tokenising them whole for the sort cost 1.4% of MiniLM's forward time
on PubMed abstracts, 0.4% with this shortcut (0.3% on tweets,
``benchmarks/results/inference_cpu_pipe_*``). The model tokenises each batch again when it
predicts: going through ``predict`` keeps every subclass's prediction path intact.
"""

from typing import Any, Iterable, Iterator, List, Set

import numpy
from spacy.tokens import Doc
from spacy.util import minibatch

from .architecture import get_hf_objects, word_piece_ids


class BucketedPipeMixin:
    """``pipe`` that sorts a window of ``cfg["bucket_window"]`` docs by word-piece length.

    Mix it in before the spaCy pipe class: ``class C(BucketedPipeMixin, TrainablePipe)``.
    The component needs ``cfg``, ``predict``, ``set_annotations``, ``get_error_handler``,
    ``name`` and a ``model`` built by ``spacy_dallmi.TransformerClassifier.v1``.
    """

    cfg: dict
    model: Any
    name: str

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs and yield them in their original order.

        A batch that fails goes to the component's error handler, as in spaCy's
        ``TrainablePipe.pipe``: the default handler re-raises; a handler that returns
        lets the run go on, and the failed batch's docs are not yielded.
        """
        window = self.cfg.get("bucket_window") or 0
        if window <= 0:
            yield from super().pipe(stream, batch_size=batch_size)  # type: ignore[misc]
            return
        error_handler = self.get_error_handler()  # type: ignore[attr-defined]
        for docs in minibatch(stream, size=max(window, batch_size)):
            try:
                order = self.length_order(docs)
            except Exception as error:
                error_handler(self.name, self, docs, error)
                continue
            failed: Set[int] = set()
            for start in range(0, len(docs), batch_size):
                indices = order[start : start + batch_size]
                batch = [docs[i] for i in indices]
                try:
                    scores = self.predict(batch)  # type: ignore[attr-defined]
                    self.set_annotations(batch, scores)  # type: ignore[attr-defined]
                except Exception as error:
                    error_handler(self.name, self, batch, error)
                    failed.update(indices)
            yield from (doc for i, doc in enumerate(docs) if i not in failed)

    def length_order(self, docs: List[Doc]) -> List[int]:
        """Indices of ``docs`` by increasing word-piece length (stable for ties).

        Before ``initialize`` there is no tokenizer: the docs keep their order, so that
        ``predict`` raises its own error about the missing weights.
        """
        tokenizer = get_hf_objects(self.model).tokenizer
        if tokenizer is None:
            return list(range(len(docs)))
        max_length = self.model.attrs["max_length"]
        # A whitespace-separated word is almost always one word piece or more (see the module
        # docstring), so a doc with enough words is taken to be at max_length.
        special = tokenizer.num_special_tokens_to_add()
        lengths = numpy.full(len(docs), max_length)
        short = [i for i, doc in enumerate(docs) if len(doc.text.split()) + special < max_length]
        if short:
            ids = word_piece_ids(tokenizer, [docs[i] for i in short])
            lengths[short] = numpy.minimum([len(piece_ids) for piece_ids in ids], max_length)
        return numpy.argsort(lengths, kind="stable").tolist()

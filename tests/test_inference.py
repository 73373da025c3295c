"""Length-bucketed ``pipe``: same probabilities as plain prediction, original order kept."""

from typing import List

import pytest
import spacy

from spacy_dallmi.architecture import get_hf_objects
from spacy_dallmi.component import DallmiTextCategorizer
from spacy_dallmi.inference import BucketedPipeMixin

from .util import make_examples, make_nlp, toy_texts

pytestmark = pytest.mark.filterwarnings("ignore:.*were truncated")

WORDS = ["happy", "sad", "the", "day", "rage", "fear", "tears", "smile", "zebra", "quux"]
TEXTS = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range((i * 5) % 23)) for i in range(40)]
TEXTS[3] = ""
TEXTS[17] = "scared of the day " * 12  # longer than max_length: truncated


@pytest.fixture(scope="module")
def nlp(tiny_bert):
    nlp = make_nlp(tiny_bert)
    examples = make_examples(nlp, toy_texts(24))
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer)
    return nlp


def run(nlp, texts: List[str], window, batch_size: int):
    textcat = nlp.get_pipe("textcat")
    default = textcat.cfg["bucket_window"]
    textcat.cfg["bucket_window"] = window
    try:
        return list(nlp.pipe(texts, batch_size=batch_size))
    finally:
        textcat.cfg["bucket_window"] = default


def record_batches(textcat, monkeypatch) -> List[List[str]]:
    batches: List[List[str]] = []
    predict = textcat.predict

    def spy(docs):
        docs = list(docs)
        batches.append([doc.text for doc in docs])
        return predict(docs)

    monkeypatch.setattr(textcat, "predict", spy)
    return batches


@pytest.mark.parametrize("window,batch_size", [(16, 4), (40, 8), (1000, 7), (2, 5), (5, 5)])
def test_same_probabilities_in_original_order(nlp, window, batch_size):
    plain = run(nlp, TEXTS, 0, batch_size)
    bucketed = run(nlp, TEXTS, window, batch_size)
    assert [doc.text for doc in bucketed] == TEXTS
    for before, after in zip(plain, bucketed):
        assert after.cats == pytest.approx(before.cats, abs=1e-5)


def piece_lengths(textcat, texts: List[str]) -> List[int]:
    tokenizer = get_hf_objects(textcat.model).tokenizer
    return [min(len(tokenizer(text).input_ids), 32) for text in texts]


def test_batches_are_sorted_by_length_within_a_window(nlp, monkeypatch):
    textcat = nlp.get_pipe("textcat")
    batches = record_batches(textcat, monkeypatch)
    run(nlp, TEXTS, 20, 5)
    assert [len(batch) for batch in batches] == [5] * 8
    for window in (batches[:4], batches[4:]):
        texts = sum(window, [])
        assert piece_lengths(textcat, texts) == sorted(piece_lengths(textcat, texts))
    assert sorted(sum(batches[:4], [])) == sorted(TEXTS[:20])


def test_window_off_is_plain_spacy_batching(nlp, monkeypatch):
    batches = record_batches(nlp.get_pipe("textcat"), monkeypatch)
    for window in (0, None):
        batches.clear()
        run(nlp, TEXTS[:10], window, 4)
        assert batches == [TEXTS[0:4], TEXTS[4:8], TEXTS[8:10]]


@pytest.mark.parametrize("window", [0, 8])
def test_empty_stream(nlp, window):
    assert run(nlp, [], window, 4) == []


def test_empty_texts_get_cats(nlp):
    docs = run(nlp, ["", "", "happy day", ""], 8, 2)
    assert [doc.text for doc in docs] == ["", "", "happy day", ""]
    assert all(len(doc.cats) == 4 for doc in docs)
    assert docs[0].cats == pytest.approx(docs[3].cats, abs=1e-6)


def test_failing_batch_goes_to_the_error_handler(nlp, monkeypatch):
    texts = [f"{text} {i}" for i, text in enumerate(TEXTS)]
    textcat = nlp.get_pipe("textcat")
    predict = textcat.predict

    def failing(docs):
        docs = list(docs)
        if any(doc.text == texts[5] for doc in docs):
            raise RuntimeError("boom")
        return predict(docs)

    monkeypatch.setattr(textcat, "predict", failing)
    with pytest.raises(RuntimeError, match="boom"):
        run(nlp, texts, 16, 4)

    handled = []
    textcat.set_error_handler(lambda name, proc, docs, error: handled.append(docs))
    try:
        kept = [doc.text for doc in run(nlp, texts, 16, 4)]
    finally:
        del textcat.error_handler
    assert len(handled) == 1 and len(handled[0]) == 4
    failed = {doc.text for doc in handled[0]}
    assert texts[5] in failed
    assert kept == [text for text in texts if text not in failed]


def with_window(backbone: str, window: int):
    nlp = spacy.blank("en")
    config = {"model": {"name": backbone, "max_length": 32}, "bucket_window": window}
    nlp.add_pipe("dallmi_textcat", name="textcat", config=config)
    return nlp


def test_the_component_buckets_and_keeps_its_window(tiny_bert, tmp_path):
    assert issubclass(DallmiTextCategorizer, BucketedPipeMixin)
    nlp = with_window(tiny_bert, 64)
    nlp.initialize(lambda: make_examples(nlp, toy_texts(8)))
    nlp.to_disk(tmp_path / "pipeline")
    assert spacy.load(tmp_path / "pipeline").get_pipe("textcat").cfg["bucket_window"] == 64


def test_piping_before_initialize_reaches_predicts_error(tiny_bert):
    nlp = with_window(tiny_bert, 8)
    with pytest.raises(ValueError, match=r"no model weights yet"):
        list(nlp.pipe(["happy day", "sad"]))


def test_length_order_tokenises_only_docs_below_the_cap(nlp, monkeypatch):
    """Docs with at least max_length - 2 words are at the cap untokenised; for these texts
    the order is still the order of the exact truncated lengths."""
    import spacy_dallmi.inference as inference

    textcat = nlp.get_pipe("textcat")
    texts = [
        "word " * 40,  # 40 words: at the cap, not tokenised
        "a, b. c! " * 5,  # 15 words but 30 pieces with the punctuation: below, tokenised
        "zebra quux " * 15,  # exactly 30 words: 30 + 2 special = 32, at the cap
        "short",
        "",
        "x " * 29,  # 29 words: below the bound, tokenised
    ]
    seen: List[str] = []
    word_piece_ids = inference.word_piece_ids

    def spy(tokenizer, docs):
        seen.extend(doc.text for doc in docs)
        return word_piece_ids(tokenizer, docs)

    monkeypatch.setattr(inference, "word_piece_ids", spy)
    docs = [nlp.make_doc(text) for text in texts]
    order = textcat.length_order(docs)
    assert seen == [texts[i] for i in (1, 3, 4, 5)]
    lengths = piece_lengths(textcat, texts)
    assert lengths[0] == lengths[2] == 32
    assert order == sorted(range(len(texts)), key=lambda i: lengths[i])


def test_words_the_tokenizer_deletes_move_a_doc_but_change_no_probability(nlp):
    """Zero-width spaces and form feeds count as words for the shortcut but not as word
    pieces, so such a doc sorts as if at the cap: the probabilities stay those of plain
    prediction."""
    texts = ["\u200b " * 40, "happy\x0csad " * 20, "happy sad", "\ufeff tears " * 16, "day"]
    textcat = nlp.get_pipe("textcat")
    lengths = piece_lengths(textcat, texts)
    assert lengths[0] == 2  # 40 "words", no word piece: below the cap the shortcut assumes
    plain = run(nlp, texts, 0, 2)
    bucketed = run(nlp, texts, 16, 2)
    assert [doc.text for doc in bucketed] == texts
    for before, after in zip(plain, bucketed):
        assert after.cats == pytest.approx(before.cats, abs=1e-5)

"""Training callbacks, registered in spaCy's ``callbacks`` registry.

``spacy_dallmi.epoch_eval.v1`` is a ``[training.before_update]`` callback that scores the model
being trained on held-out, fully labelled docs once per epoch, for a learning-curve figure (the
paper's Fig. 5). It is deliberately not a dev evaluation: spaCy's model selection and
``score_weights`` never see it, so pointing it at the test split does not leak the test set
into training decisions.

It lives in the library rather than in the experiment kit because a training config names it:
``spacy train`` must find it without the kit's extra dependencies.
"""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import srsly
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.util import registry

from .component import DallmiTextCategorizer

#: The metrics copied into every per-epoch record of the learning curve.
EPOCH_RECORD_METRICS = ("cats_macro_ap", "cats_macro_ap_rounded", "cats_micro_ap")


def find_textcat(nlp: Language) -> DallmiTextCategorizer:
    """Return the pipeline's single ``dallmi_textcat`` component, whatever it is called.

    Raises ValueError when there is none or more than one, because scoring "the" classifier is
    then ambiguous.
    """
    found = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, DallmiTextCategorizer)]
    if len(found) != 1:
        raise ValueError(
            f"Expected exactly one dallmi_textcat component in the pipeline, found {len(found)} "
            f"(components: {nlp.component_names})."
        )
    return found[0]


def check_gold(docs: Sequence[Doc], labels: Sequence[str], source: Union[str, Path]) -> None:
    """Check that every doc of an evaluation set carries a gold value for every label.

    The scorer treats an absent label as missing annotation and leaves that doc out for it,
    which is right for partially annotated training data but would silently shrink a test set
    that is meant to be fully labelled. A gold label the classifier does not know would be
    ignored just as silently, so it is an error as well: the split was made for another label
    set.
    """
    if not docs:
        raise ValueError(f"{source} holds no docs: there is nothing to evaluate on.")
    known = set(labels)
    for i, doc in enumerate(docs):
        missing = [label for label in labels if label not in doc.cats]
        unknown = sorted(set(doc.cats) - known)
        if missing or unknown:
            problem = (
                f"lacks a gold value for {missing}" if missing else f"has unknown labels {unknown}"
            )
            raise ValueError(
                f"Doc {i} of {source} ({doc.text[:60]!r}) {problem}. Evaluation needs a fully "
                f"labelled split over the classifier's labels {list(labels)}, such as the "
                "target_test.spacy written by `python -m spacy_dallmi prepare`."
            )


def score_gold_docs(
    nlp: Language, gold_docs: Sequence[Doc], batch_size: Optional[int] = None
) -> Dict[str, Any]:
    """Score ``nlp`` on fully labelled docs with ``nlp.evaluate``; return the ``cats_*`` scores.

    The predicted side of each example is a fresh doc made from the text alone, so predictions
    never see the gold ``doc.cats``; scoring is the component's own scorer with its labels and
    threshold.
    """
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]
    scores = nlp.evaluate(examples, batch_size=batch_size)
    return {key: value for key, value in scores.items() if key.startswith("cats_")}


@registry.callbacks("spacy_dallmi.epoch_eval.v1")
def make_epoch_eval_callback(
    path: Optional[str] = None, output: Optional[str] = None
) -> Callable[[Language, Dict[str, Any]], None]:
    """``[training.before_update]`` callback recording macro mAP once per epoch.

    FOR THE LEARNING-CURVE FIGURE ONLY, NEVER FOR MODEL SELECTION: the scores go to a file that
    spaCy's training loop never reads, so neither ``model-best`` nor early stopping depends on
    them, and `path` may safely be the test split.

    path: a DocBin of fully labelled held-out docs. Empty or null turns the callback into a
        no-op, so a config can always carry the block and a run switches it off with
        ``--paths.curve_docs ""`` (or by leaving the variable null).
    output: the JSONL file to write; truncated when the callback is created, so that it holds
        exactly one training run. Required when `path` is set.

    spaCy calls ``before_update(nlp, {"step": step, "epoch": epoch})`` before every update.
    Whenever the epoch differs from the previous call (including the first call, epoch 0 = the
    model before any update) the model is scored on the docs and one line
    ``{"epoch", "step", "cats_macro_ap", "cats_macro_ap_rounded", "cats_micro_ap"}`` is
    appended, so the record for epoch e describes the model after e full epochs. The model after
    the last epoch gets no record (spaCy calls no hook after the last update): it is the saved
    ``model-last``.

    The DocBin is read once, at the first call (it needs ``nlp.vocab``). spaCy resolves
    ``[training]`` twice before training starts, so this factory runs twice per ``spacy train``;
    both runs happen before the first update, and ``spacy.load`` does not run it at all.
    """
    if not path:

        def skip_epoch_eval(nlp: Language, args: Dict[str, Any]) -> None:
            """No held-out docs configured: record nothing."""

        return skip_epoch_eval
    if not output:
        raise ValueError(
            "spacy_dallmi.epoch_eval.v1: `output` (the JSONL file to write) is required when "
            f"`path` is set (path = {path!r})."
        )
    docs_path = Path(path)
    output_path = Path(output)
    if not docs_path.is_file():
        raise FileNotFoundError(
            f"spacy_dallmi.epoch_eval.v1: held-out DocBin not found: {docs_path}. It is written "
            "by `python -m spacy_dallmi prepare` or `prepare-files` (e.g. target_test.spacy)."
        )
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text("", encoding="utf8")
    gold_docs: List[Doc] = []
    last_epoch: Optional[int] = None

    def epoch_eval(nlp: Language, args: Dict[str, Any]) -> None:
        """Score `nlp` on the held-out docs when a new epoch starts; append one JSON line."""
        nonlocal last_epoch
        epoch = args["epoch"]
        if epoch == last_epoch:
            return
        last_epoch = epoch
        if not gold_docs:
            gold_docs.extend(DocBin().from_disk(docs_path).get_docs(nlp.vocab))
            check_gold(gold_docs, find_textcat(nlp).labels, docs_path)
        scores = score_gold_docs(nlp, gold_docs)
        record = {"epoch": epoch, "step": args["step"]}
        record.update({key: scores[key] for key in EPOCH_RECORD_METRICS})
        with output_path.open("a", encoding="utf8") as file:
            file.write(srsly.json_dumps(record) + "\n")

    return epoch_eval

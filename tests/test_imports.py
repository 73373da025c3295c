"""The library stays lean: using a pipeline never imports the experiment kit or matplotlib.

``import spacy`` itself already imports typer and weasel (its CLI), so the run-time check is on
what spacy_dallmi adds on top of spacy; the static check is on what the core modules import.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .util import make_examples, make_nlp, toy_texts

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_dallmi"
FORBIDDEN = ("spacy_dallmi.experiments", "matplotlib", "weasel", "typer")
# `python -m spacy_dallmi` is the experiment kit's command line; nothing imports it.
ENTRY_SCRIPT = "__main__.py"

PROBE = """
import json, sys
import spacy
from importlib.metadata import entry_points
before = set(sys.modules)
import spacy_dallmi
resolved = []
for group in ("spacy_factories", "spacy_architectures", "spacy_batchers", "spacy_scorers",
              "spacy_callbacks", "spacy_misc", "thinc_schedules", "thinc_losses"):
    for point in entry_points(group=group):
        if point.value.startswith("spacy_dallmi"):
            point.load()
            resolved.append(point.name)
nlp = spacy.load(sys.argv[1])
nlp("a happy day")
added = sorted(set(sys.modules) - before)
print(json.dumps({"added": added, "resolved": resolved}))
"""


def core_imports(path: Path) -> set:
    """Absolute names of every module a core file imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "spacy_dallmi" + (f".{base}" if base else "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(PACKAGE.glob("*.py")) if p.name != ENTRY_SCRIPT],
    ids=lambda p: p.name,
)
def test_no_core_module_imports_the_kit_or_its_dependencies(path: Path) -> None:
    bad = sorted(
        name
        for name in core_imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert not bad, f"{path.name} imports {bad}"


def test_using_a_pipeline_imports_no_kit_module_nor_matplotlib(tiny_bert, tmp_path) -> None:
    nlp = make_nlp(tiny_bert)
    examples = make_examples(nlp, toy_texts(8))
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "pipeline")],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "spacy_dallmi.epoch_eval.v1" in report["resolved"]
    assert "dallmi_textcat" in report["resolved"]
    leaked = [
        name
        for name in report["added"]
        if name.startswith(("spacy_dallmi.experiments", "matplotlib"))
    ]
    assert not leaked, leaked
    assert {"spacy_dallmi.component", "spacy_dallmi.callbacks"} <= set(report["added"])

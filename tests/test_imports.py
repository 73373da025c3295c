"""The library stays lean and the package has no import cycle.

Using a pipeline never imports the experiment kit or matplotlib. ``import spacy`` itself
already imports typer and weasel (its CLI), so the run-time checks are on what spacy_dallmi
adds on top of spacy; the static check is on what the core modules import.
"""

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

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


def module_name(path: Path) -> str:
    """``spacy_dallmi/experiments/cli.py`` -> ``spacy_dallmi.experiments.cli``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
#: What using the package as a spaCy plugin imports: every module outside the kit.
LIBRARY = [
    name
    for name in MODULES
    if not name.startswith("spacy_dallmi.experiments") and name != "spacy_dallmi.__main__"
]


def imports_of(name: str) -> Set[str]:
    """Absolute names of every module the module ``name`` imports, at any depth of its code
    (imports inside functions too), with relative imports resolved against its package;
    ``from a import b`` gives ``a`` and ``a.b``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> Dict[str, Set[str]]:
    """Each module of the package -> the modules of the package it imports."""
    return {name: (imports_of(name) & set(MODULES)) - {name} for name in MODULES}


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(PACKAGE.glob("*.py")) if p.name != ENTRY_SCRIPT],
    ids=lambda p: p.name,
)
def test_no_core_module_imports_the_kit_or_its_dependencies(path: Path) -> None:
    bad = sorted(
        name
        for name in imports_of(module_name(path))
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert not bad, f"{path.name} imports {bad}"


def test_the_package_has_no_import_cycle() -> None:
    """A cycle works or breaks depending on which of its modules is imported first, so none
    is allowed, not even through an import inside a function."""
    graph = import_graph()
    # the walk sees imports inside functions and resolves ``from . import x``
    assert "spacy_dallmi.interpolation" in graph["spacy_dallmi.training"]
    assert "spacy_dallmi.experiments.study" in graph["spacy_dallmi.experiments.cli"]
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


IMPORT_PROBE = """
import importlib, json, sys
import spacy
library, others, forbidden = json.loads(sys.argv[1])
leaked = {}
for name in library:
    before = set(sys.modules)
    importlib.import_module(name)
    added = set(sys.modules) - before
    bad = [m for m in added if any(m == f or m.startswith(f + ".") for f in forbidden)]
    if bad:
        leaked[name] = sorted(bad)
for name in others:
    importlib.import_module(name)
print(json.dumps(leaked))
"""


def test_every_module_imports_and_the_library_imports_no_kit_module() -> None:
    """In a fresh interpreter, after spaCy: each library module in turn, charged with what
    it adds (matplotlib, the kit, or typer and weasel modules beyond spaCy's own), then
    every other module, which must import too."""
    others = [name for name in MODULES if name not in LIBRARY]
    assert {"spacy_dallmi.component", "spacy_dallmi.classify"} <= set(LIBRARY)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, json.dumps([LIBRARY, others, FORBIDDEN])],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    leaked = json.loads(done.stdout.strip().splitlines()[-1])
    assert not leaked, leaked


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

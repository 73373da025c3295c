"""What a training run was made from (``OUTPUT/training_inputs.json``), so that ``train``
skips a run whose inputs are all the same. The record is strict, so that a stale model is never
reused: config, overrides, epochs, patience, the contents of every file or folder the
interpolated config names, package versions and a hash of this package's source (a fix in the
loss retrains). A changed spelling of a path costs one retraining, never a wrong reuse.
"""

import hashlib
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence, Tuple

import srsly
from spacy.util import load_config

from ..architecture import resolve_backbone

#: The record, inside the training output folder.
INPUTS_FILE = "training_inputs.json"
PACKAGES = ("spacy-dallmi", "spacy", "thinc", "spacy-transformers", "transformers", "torch")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and contents, sorted;
    symbolic links to folders followed, each real folder once)."""
    digest = hashlib.sha256()
    for name, file in _files(path):
        digest.update(name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _files(path: Path) -> Iterator[Tuple[str, Path]]:
    if path.is_file():
        yield path.name, path
        return
    found = []
    seen = set()
    for folder, subfolders, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        found += [Path(folder) / name for name in files]
    for file in sorted(found):
        yield str(file.relative_to(path)), file


def code_fingerprint() -> Dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    digest = hashlib.sha256()
    for file in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(str(file.relative_to(PACKAGE_ROOT)).encode())
        digest.update(file.read_bytes())
    return {"versions": versions, "source": digest.hexdigest()}


def _strings(config: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, str]]:
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _strings(value, f"{name}.")
        elif isinstance(value, str):
            yield name, value
        elif isinstance(value, (list, tuple)):
            yield from ((f"{name}.{i}", v) for i, v in enumerate(value) if isinstance(v, str))


def _input_path(key: str, value: str) -> Path:
    """The file or folder a config string names; a backbone name maps to its folder."""
    path = Path(value).expanduser()
    if not path.exists() and key.endswith(".name") and value:
        try:
            path = Path(resolve_backbone(value))
        except ImportError:
            pass
    return path


def run_inputs(
    config: Path,
    overrides: Dict[str, Any],
    epochs: int,
    patience: int,
    keep_source: bool,
    outputs: Sequence[Path],
) -> Dict[str, Any]:
    """The record of a run of ``config`` with ``overrides``, leaving out the paths inside
    ``outputs`` (the run's own folders); OSError if an input cannot be read."""
    loaded = load_config(config, overrides=overrides, interpolate=True)
    own = [Path(os.path.abspath(path)) for path in outputs]
    contents = {}
    for key, value in _strings(loaded):
        path = _input_path(key, value)
        if not path.exists():
            continue
        absolute = Path(os.path.abspath(path))
        if any(absolute == folder or folder in absolute.parents for folder in own):
            continue
        contents[key] = content_hash(path)
    return {
        "config": content_hash(config),
        "overrides": {key: str(value) for key, value in sorted(overrides.items())},
        "epochs": epochs,
        "patience": patience,
        "keep_source": keep_source,
        "input_contents": contents,
        "code": code_fingerprint(),
    }


def finished_with(output: Path, inputs: Dict[str, Any]) -> bool:
    """Whether ``output`` holds a finished run (both models) recorded with ``inputs``."""
    record = output / INPUTS_FILE
    if not all((output / model).is_dir() for model in ("model-best", "model-last")):
        return False
    try:
        return record.is_file() and srsly.read_json(record) == inputs
    except ValueError:  # an unreadable record counts as none
        return False


def write_record(output: Path, inputs: Dict[str, Any]) -> None:
    """Write the record into place at once: a killed write leaves no half record."""
    partial = output / f"{INPUTS_FILE}.partial"
    srsly.write_json(partial, inputs)
    os.replace(partial, output / INPUTS_FILE)

"""The README matches the code: its settings and registry tables, and the commands it shows.

A README command that fails when typed as shown (a renamed config, a removed subcommand, a
project command that does not exist, an option the command does not take) fails here first.
"""

import configparser
import dataclasses
import importlib
import json
import re
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import click
import pytest
import spacy.util
import srsly
import thinc.api
import typer.main
from spacy.language import Language
from spacy.util import load_config

from spacy_dallmi.__main__ import app as kit_app  # every registered command, classify too
from spacy_dallmi.experiments.corpus import OUTPUT_FILES
from spacy_dallmi.settings import DallmiSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf8")
#: The study's own document, linked from the README: its commands are checked the same way.
STUDY = (ROOT / "docs" / "STUDY.md").read_text(encoding="utf8")
DOCS = {"README.md": README, "docs/STUDY.md": STUDY}


def section(title: str) -> str:
    """The text under the heading ``title`` up to the next heading of the same or higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", README, flags=re.MULTILINE)
    assert match, f"README has no heading {title!r}"
    level = len(match.group(1))
    rest = README[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


def first_table(text: str) -> List[List[str]]:
    """The body rows (cells stripped) of the first Markdown table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert set("".join(table[1])) <= set("-: "), "the second line is the header separator"
    return table[2:]


def code_spans(cell: str) -> List[str]:
    return re.findall(r"`([^`]+)`", cell)


def entry_points() -> Dict[str, Dict[str, str]]:
    """setup.cfg's ``[options.entry_points]``: group -> {name: "module:attr"}."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf8")
    groups = {}
    for group, value in parser["options.entry_points"].items():
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        groups[group] = dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)
    return groups


def registry_name(group: str) -> Tuple[str, str]:
    """``spacy_batchers`` -> ("spacy", "batchers"); ``thinc_schedules`` -> ("thinc", ...)."""
    package, name = group.split("_", 1)
    assert package in ("spacy", "thinc"), group
    return package, name


# (a) the settings table


def test_settings_table_lists_every_field_with_its_default() -> None:
    documented: Dict[str, Any] = {}
    for row in first_table(section("Settings")):
        names, defaults = code_spans(row[0]), code_spans(row[1])
        assert names and defaults, f"row {row} needs `name` and `default` cells"
        if len(defaults) == 1:
            defaults = defaults * len(names)
        assert len(names) == len(defaults), f"row {row}: one default per setting"
        for name, default in zip(names, defaults):
            assert name not in documented, f"{name} is documented twice"
            documented[name] = json.loads(default)
    fields = {field.name: field.default for field in dataclasses.fields(DallmiSettings)}
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    assert sorted(documented) == sorted(fields), (
        f"README only: {sorted(set(documented) - set(fields))}; "
        f"DallmiSettings only: {sorted(set(fields) - set(documented))}"
    )
    for name, default in fields.items():
        value = documented[name]
        assert value == default, f"README says {name} = {value!r}, the dataclass {default!r}"
        assert isinstance(value, bool) == isinstance(default, bool), name


# (b) the registry table


def test_registered_table_names_the_entry_points() -> None:
    rows = first_table(section("What is registered"))
    documented = {}
    for row in rows:
        (name,) = code_spans(row[1])
        documented[name] = row[0]
    declared = {name: group for group, names in entry_points().items() for name in names}
    assert sorted(documented) == sorted(declared), (
        f"README only: {sorted(set(documented) - set(declared))}; "
        f"setup.cfg only: {sorted(set(declared) - set(documented))}"
    )
    for name, group in declared.items():
        package, registry = registry_name(group)
        # "batchers", "schedules (thinc)", ...
        assert registry in documented[name], (name, documented[name], group)
        assert package == "spacy" or "thinc" in documented[name], (name, documented[name])


def test_every_entry_point_is_installed_and_resolves_through_its_registry() -> None:
    """What `spacy train` relies on (no ``--code``): each name is an installed entry point
    of its group, loading the object setup.cfg names, and its spaCy or thinc registry
    returns that object."""
    registries = {"spacy": spacy.util.registry, "thinc": thinc.api.registry}
    for group, names in entry_points().items():
        installed = {point.name: point for point in metadata.entry_points(group=group)}
        package, registry = registry_name(group)
        for name, target in names.items():
            module, attr = target.split(":")
            obj = getattr(importlib.import_module(module), attr)
            assert name in installed, (
                f"{name} ({group}) is in setup.cfg but not installed: reinstall the package"
            )
            assert installed[name].value == target, (name, installed[name].value)
            assert installed[name].load() is obj
            assert getattr(registries[package], registry).get(name) is obj, name
    assert Language.has_factory("dallmi_textcat")


# (c) the commands


def bash_commands() -> List[List[str]]:
    """Every command of every ```bash block, as tokens (continuations joined, comments and
    ``&&``/``;``/``|`` separators dropped)."""
    commands = []
    text = README + STUDY
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            command: List[str] = []
            for token in lexer:
                if token in ("&&", ";", "|", "||"):
                    commands.append(command)
                    command = []
                else:
                    command.append(token)
            commands.append(command)
    return [command for command in commands if command]


COMMANDS = bash_commands()


def project() -> Dict[str, Any]:
    return srsly.read_yaml(ROOT / "project.yml")


def project_runnables() -> Set[str]:
    data = project()
    return {command["name"] for command in data["commands"]} | set(data.get("workflows", {}))


def click_commands(app: typer.Typer) -> Dict[str, click.Command]:
    return dict(typer.main.get_command(app).commands)


def options_of(command: click.Command) -> Set[str]:
    return {
        option
        for param in command.params
        for option in (*param.opts, *getattr(param, "secondary_opts", ()))
        if option.startswith("-")
    }


def module_call(command: List[str]) -> Tuple[str, List[str]]:
    """("module", args) for ``python -m module args``; ("", command) otherwise."""
    if len(command) >= 3 and command[0] in ("python", "python3") and command[1] == "-m":
        return command[2], command[3:]
    return "", command


def check_cli_call(commands: Dict[str, click.Command], args: List[str], shown: str) -> None:
    """The subcommand exists, its plain options exist, and ``--section.key`` overrides name
    settings of the config the command is given."""
    assert args and args[0] in commands, f"{shown}: no subcommand {args[:1]} in {sorted(commands)}"
    command = commands[args[0]]
    configs = [ROOT / arg for arg in args[1:] if arg.endswith(".cfg")]
    for arg in args[1:]:
        if not arg.startswith("--"):
            continue
        key = arg[2:].split("=", 1)[0]
        if "." in key:
            assert configs, f"{shown}: override {arg} without a config"
            config = load_config(configs[0], interpolate=False)
            node: Any = config
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, (
                    f"{shown}: {configs[0].name} has no {key}"
                )
                node = node[part]
        else:
            assert f"--{key}" in options_of(command), f"{shown}: {args[0]} has no option --{key}"


def test_readme_has_bash_commands() -> None:
    modules = {module_call(command)[0] for command in COMMANDS}
    assert {"pip", "pytest", "spacy_dallmi", "spacy"} <= modules


def test_bash_commands_name_files_that_exist() -> None:
    for command in COMMANDS:
        shown = " ".join(command)
        for i, token in enumerate(command):
            if re.fullmatch(r"configs/[\w./-]+|tests(/[\w./-]*)?|project\.yml", token):
                assert (ROOT / token).exists(), f"{shown}: {token} does not exist"
            if i and command[i - 1] in ("-c", "-r", "--constraint", "--requirement"):
                assert (ROOT / token).is_file(), f"{shown}: {token} does not exist"
            corpus = re.fullmatch(r"corpus/(?:[\w-]+/)*([\w-]+\.spacy)", token)
            if corpus:
                assert corpus.group(1) in OUTPUT_FILES.values(), (
                    f"{shown}: `prepare` writes {sorted(OUTPUT_FILES.values())}, "
                    f"not {corpus.group(1)}"
                )


def test_pip_installs_name_existing_extras() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf8")
    extras = set(parser["options.extras_require"])
    installs = [command for command in COMMANDS if module_call(command)[0] == "pip"]
    assert installs
    for command in installs:
        for token in command:
            match = re.fullmatch(r"(\.?/?[\w./-]*)\[([\w,-]+)\]", token)
            if match:
                assert (ROOT / match.group(1)).exists(), token
                assert set(match.group(2).split(",")) <= extras, token


def test_pytest_commands_use_options_the_suite_defines() -> None:
    conftest = (ROOT / "tests" / "conftest.py").read_text(encoding="utf8")
    defined = set(re.findall(r"addoption\(\s*\"(--[\w-]+)\"", conftest))
    calls = [args for module, args in map(module_call, COMMANDS) if module == "pytest"]
    assert calls
    for args in calls:
        for arg in args:
            if arg.startswith("--"):
                assert arg in defined, f"pytest {' '.join(args)}: {arg} is not defined"


def test_kit_commands_exist_with_their_options() -> None:
    commands = click_commands(kit_app)
    calls = [args for module, args in map(module_call, COMMANDS) if module == "spacy_dallmi"]
    assert calls
    for args in calls:
        check_cli_call(commands, args, "python -m spacy_dallmi " + " ".join(args))
    # and every `python -m spacy_dallmi X` the prose mentions
    prose = " ".join((README + STUDY).split())
    for name in re.findall(r"python -m spacy_dallmi ([a-z][\w-]*)", prose):
        assert name in commands, f"README mentions `python -m spacy_dallmi {name}`"


def test_spacy_train_commands_exist_with_their_options() -> None:
    from spacy.cli import app as spacy_app

    commands = click_commands(spacy_app)
    for module, args in map(module_call, COMMANDS):
        if module == "spacy" and args[:1] != ["project"]:
            check_cli_call(commands, args, "python -m spacy " + " ".join(args))


def test_project_runs_name_commands_or_workflows_of_project_yml() -> None:
    runnables = project_runnables()
    prose = " ".join((README + STUDY).split())
    named = re.findall(r"(?:spacy project|weasel) run ([\w-]+)", prose)
    assert {"adapt", "baselines", "table"} <= set(named)
    for name in named:
        assert name in runnables, f"`spacy project run {name}`: not in project.yml"
    variables = set(project()["vars"])
    for name in re.findall(r"--vars\.(\w+)", prose):
        assert name in variables, f"--vars.{name} is not a variable of project.yml"


@pytest.mark.parametrize("path", sorted(set(re.findall(r"configs/[\w-]+\.cfg", README + STUDY))))
def test_configs_the_readme_names_exist(path: str) -> None:
    assert (ROOT / path).is_file()


@pytest.mark.parametrize("name", sorted(DOCS))
def test_relative_links_name_files_that_exist(name: str) -> None:
    """The README links the study and the benchmarks, and they link back: no link is dead."""
    folder = (ROOT / name).parent
    links = re.findall(r"\]\(([^)#:\s]+)(?:#[\w-]+)?\)", DOCS[name])
    assert links
    for link in links:
        assert (folder / link).exists(), f"{name} links {link}, which does not exist"
    if name == "README.md":
        assert "docs/STUDY.md" in links and "benchmarks/README.md" in links


def test_options_the_docs_name_are_options_of_the_study() -> None:
    from spacy_dallmi.experiments.study import OPTIONS

    prose = " ".join((README + STUDY).split())
    for text in re.findall(r'--vars\.options "?([^"`]+)"?', prose):
        for pair in text.split():
            assert pair.split("=")[0] in OPTIONS, f"--vars.options {pair}: no such option"

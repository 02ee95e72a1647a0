"""The documentation is kept true: the man pages lint clean, and they and the
README name every command, option, configuration key, method and error code the
code offers (and no configuration key it does not).

The man pages are checked as a reader sees them: rendered by mandoc to plain
text, then split into sections (``NAME``, ``OPTIONS``...) and subsections.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from agent import cli, entry
from agent.config import RELOADABLE, Config
from agent.protocol import errors
from agent.protocol import methods as protocol

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"
PAGES = ("chooctl.1", "choo-agent.8", "choo-agent.toml.5")
README = REPO / "README.md"

#: ``run`` and ``submit`` share their job options; chooctl(1) documents them
#: once, in the subsection "Job options", instead of under each command.
JOB_OPTION_COMMANDS = ("run", "submit")
JOB_OPTIONS_HEADING = "Job options"


def _mandoc(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("mandoc") is None:
        pytest.fail("mandoc is not installed: use 'make test', which installs it")
    return subprocess.run(["mandoc", *args], capture_output=True, text=True, timeout=60)


def render(page: str) -> str:
    """The page as ``man`` shows it, without bold/underline overstrikes."""
    done = _mandoc("-T", "ascii", str(MAN / page))
    assert done.returncode == 0, done.stderr
    return re.sub(r".\x08", "", done.stdout)


def sections(page: str) -> dict[str, str]:
    """Section name -> rendered body (section headings start in column 0)."""
    out: dict[str, str] = {}
    name = None
    for line in render(page).splitlines():
        if re.fullmatch(r"[A-Z][A-Z ]*[A-Z]", line):
            name = line
            out[name] = ""
        elif name is not None:
            out[name] += line + "\n"
    return out


def subsections(body: str) -> list[tuple[str, str]]:
    """(heading, body) pairs of one section (subsection headings are indented 3)."""
    out: list[tuple[str, str]] = []
    for line in body.splitlines():
        if re.match(r" {3}\S", line):
            out.append((line.strip(), ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line + "\n")
    return out


def mentions(text: str, word: str) -> bool:
    """``word`` (an option, key or name) appears in ``text`` as a whole word."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def option_tags(text: str) -> set[str]:
    """The options a rendered list documents: its item tags, e.g. ``-e, --env name=value``."""
    tags = set()
    lines = text.splitlines() + [""]
    for line, after in zip(lines, lines[1:], strict=False):
        match = re.match(r" {5}(-[\w-]*(?:, -[\w-]+)*)(.*)", line)
        # A tag has its body indented below it, or beside it after a gap;
        # a prose line that happens to start with an option has neither.
        if match and (match.group(2).startswith("  ") or after.startswith(" " * 8)):
            tags.update(match.group(1).split(", "))
    return tags


def option_names(command: click.Command) -> set[str]:
    """Every spelling (-d, --detach) of every option; click adds --help itself."""
    return {
        name
        for param in command.params
        if isinstance(param, click.Option)
        for name in (*param.opts, *param.secondary_opts)
    }


# -- all pages -------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_man_page_passes_mandoc_lint(page):
    done = _mandoc("-T", "lint", "-W", "warning", str(MAN / page))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES)
def test_man_page_has_the_usual_sections(page):
    have = set(sections(page))
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"):
        assert name in have, f"{page} has no {name} section"


# -- chooctl(1) ------------------------------------------------------------------


def test_chooctl_page_documents_every_command_and_option():
    body = sections("chooctl.1")
    assert "COMMANDS" in body
    documented = {heading.split()[0]: text for heading, text in subsections(body["COMMANDS"])}
    job_options = next(
        (text for heading, text in subsections(body["COMMANDS"]) if heading == JOB_OPTIONS_HEADING),
        None,
    )
    assert job_options is not None, f"chooctl.1 has no subsection {JOB_OPTIONS_HEADING!r}"
    shared = set.intersection(*(option_names(cli.main.commands[c]) for c in JOB_OPTION_COMMANDS))
    assert "--name" in shared

    missing = []
    # An alias (the same command under a second name) is documented where its
    # command's real name is.
    for name, command in sorted(cli.main.commands.items()):
        if name not in documented:
            missing.append(f"command {name}")
            continue
        for option in sorted(option_names(command)):
            text = documented[command.name]
            if name in JOB_OPTION_COMMANDS and option in shared:
                text = job_options
            if option not in option_tags(text):
                missing.append(f"{name} {option}")
    assert not missing, f"missing from man/chooctl.1: {', '.join(missing)}"


def test_chooctl_page_documents_global_options_and_help():
    page = sections("chooctl.1")
    for option in sorted(option_names(cli.main) | {"--help", "-h"}):
        assert option in option_tags(page["DESCRIPTION"]), f"chooctl.1 lacks option {option}"
    assert mentions(page["SYNOPSIS"], "--socket")


def test_chooctl_page_documents_every_exit_status():
    text = sections("chooctl.1")["EXIT STATUS"]
    for code in (
        0,
        cli.EXIT_ERROR,
        cli.EXIT_CANNOT_RUN,
        cli.EXIT_NOT_FOUND,
        cli.EXIT_INTERRUPTED,
    ):
        assert re.search(rf"^ {{5}}{code}\b", text, re.M), f"exit status {code} not documented"


# -- choo-agent(8) ---------------------------------------------------------------


def test_agent_page_documents_every_option():
    page = sections("choo-agent.8")
    for option in sorted(option_names(entry.main) | {"--help", "-h"}):
        assert option in option_tags(page["OPTIONS"]), f"choo-agent.8 lacks option {option}"
        if option.startswith("--") and option != "--help":
            assert mentions(page["SYNOPSIS"], option), f"choo-agent.8 SYNOPSIS lacks {option}"


def test_agent_page_documents_every_method_and_error_code():
    text = sections("choo-agent.8")["SOCKET PROTOCOL"]
    for method in (*protocol.METHODS, protocol.LOG_LINE):
        assert mentions(text, method), f"choo-agent.8 lacks method {method}"
    for code in wire_error_codes():
        assert re.search(rf"^ {{5}}{code}\b", text, re.M), f"choo-agent.8 lacks error {code}"


def man_methods() -> dict[str, tuple[list[str], list[str]]]:
    """Method -> (required, optional params) from choo-agent(8)'s ``.It Li`` items.

    Read from the mdoc source: ``.It Li job.wait Li id Op Li timeout``.
    """
    out = {}
    for line in (MAN / "choo-agent.8").read_text().splitlines():
        words = line.split()
        if words[:2] != [".It", "Li"] or len(words) < 3 or words[2] not in protocol.BY_NAME:
            continue
        required: list[str] = []
        optional: list[str] = []
        names = required
        for word in words[3:]:
            if word == "Op":
                names = optional
            elif word not in ("Li", ","):
                names.append(word.strip(","))
        out[words[2]] = (required, optional)
    return out


def test_agent_page_gives_every_method_its_params():
    documented = man_methods()
    assert set(documented) == set(protocol.METHODS), "choo-agent.8 and the protocol disagree"
    for method in protocol.DEFINITIONS:
        required, optional = documented[method.name]
        names = method.param_names()
        assert sorted(required) == sorted(method.required()), f"{method.name}: required params"
        assert sorted(required + optional) == sorted(names), f"{method.name}: params"


def readme_methods() -> dict[str, set[str]]:
    """Method -> params from the README's table under ``### Methods``."""
    text = README.read_text()
    table = text[text.index("### Methods") :].split("\n\n|", 1)[-1].split("\n\n", 1)[0]
    out = {}
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        match = re.fullmatch(r"`([a-z._]+)`", cells[0])
        if match:
            out[match.group(1)] = set(re.findall(r"`([a-z_]+)`", cells[1]))
    return out


def test_readme_method_table_matches_the_protocol():
    documented = readme_methods()
    assert list(documented) and set(documented) == set(protocol.METHODS)
    for method in protocol.DEFINITIONS:
        assert documented[method.name] == set(method.param_names()), f"README: {method.name}"


def test_agent_page_lists_exactly_the_reloadable_settings_under_sighup():
    text = sections("choo-agent.8")["SIGNALS"]
    assert "SIGHUP" in text and "SIGTERM" in text
    sighup = text[text.index("SIGHUP") :]
    named = {f.name for f in dataclasses.fields(Config) if mentions(sighup, f.name)}
    assert named == set(RELOADABLE)


def test_agent_page_names_every_environment_variable_the_agent_reads():
    text = sections("choo-agent.8")["ENVIRONMENT"]
    for name in sorted(environment_variables(exclude=("cli", "client"))):
        assert mentions(text, name), f"choo-agent.8 ENVIRONMENT lacks {name}"


def test_chooctl_page_names_every_environment_variable_chooctl_reads():
    text = sections("chooctl.1")["ENVIRONMENT"]
    for name in sorted(environment_variables(only=("cli", "client"))):
        assert mentions(text, name), f"chooctl.1 ENVIRONMENT lacks {name}"


# -- choo-agent.toml(5) ----------------------------------------------------------

#: How the page spells the type of a default value (bool before int: bool is an int).
TYPE_NAMES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (Path, "path"),
    (str, "string"),
    (list, "array of strings"),
    (dict, "table"),
)
#: The list keys whose items are tables (``[[notify]]``), not strings.
TABLE_ARRAYS = frozenset({"notify"})


def config_items() -> dict[str, tuple[str, str, str]]:
    """Key -> (type, default, body) from the rendered KEYS section.

    Items look like ``max_concurrent (integer, default 4)``; an item with no
    body of its own shares the next one's (stacked tags).
    """
    text = sections("choo-agent.toml.5")["KEYS"]
    items: list[list[str]] = []
    for line in text.splitlines():
        match = re.fullmatch(r" {5}([a-z_]+) \(([^,]+), default (.+)\)", line)
        if match:
            items.append([*match.groups(), ""])
        elif items:
            items[-1][3] += line + "\n"
    for i in range(len(items) - 2, -1, -1):
        if not items[i][3].strip():
            items[i][3] = items[i + 1][3]
    return {name: (kind, default, body) for name, kind, default, body in items}


def _expected_default(field: dataclasses.Field) -> str | None:
    if field.default is dataclasses.MISSING:
        factory = field.default_factory
        return {list: "[]", dict: "{}"}.get(factory)  # None: computed, explained in prose
    value = field.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def test_config_page_documents_exactly_the_config_keys():
    items = config_items()
    assert set(items) == {f.name for f in dataclasses.fields(Config)}


@pytest.mark.parametrize("field", dataclasses.fields(Config), ids=lambda f: f.name)
def test_config_page_gives_each_key_its_type_default_and_reloadability(field):
    items = config_items()
    assert field.name in items, f"choo-agent.toml.5 lacks key {field.name}"
    kind, default, body = items[field.name]
    value = getattr(Config(), field.name)
    expected_kind = next(name for cls, name in TYPE_NAMES if isinstance(value, cls))
    if field.name in TABLE_ARRAYS:
        expected_kind = "array of tables"
    assert kind == expected_kind
    expected = _expected_default(field)
    if expected is not None:
        assert default == expected
    else:
        assert default == "see below" and body.strip()
    assert ("reloadable" in body) == (field.name in RELOADABLE)


# -- README ----------------------------------------------------------------------


def test_readme_documents_every_method_and_error_code():
    text = README.read_text()
    for method in protocol.METHODS:
        assert f"`{method}`" in text, f"README.md lacks method {method}"
    for code in wire_error_codes():
        assert f"| {code} |" in text, f"README.md's error table lacks {code}"


def test_readme_layout_names_every_agent_module():
    """Every module by its path, every package by its folder (its __init__.py)."""
    text = README.read_text()
    root = REPO / "agent"
    for module in sorted(root.rglob("*.py")):
        relative = module.relative_to(REPO)
        is_package = module.name == "__init__.py" and module.parent != root
        name = f"{relative.parent}/" if is_package else str(relative)
        assert f"`{name}`" in text, f"README.md's layout lacks {name}"


def test_readme_shows_the_promised_commands():
    text = README.read_text()
    for line in ("make run", "make test", ".venv/bin/chooctl run localhost/choo-demo echo hello"):
        assert line in text


# -- helpers over the code ---------------------------------------------------------


def wire_error_codes() -> list[int]:
    """Every code an agent can put on the wire: JSON-RPC's own and ours."""
    reserved = [
        errors.PARSE_ERROR,
        errors.INVALID_REQUEST,
        errors.METHOD_NOT_FOUND,
        errors.INVALID_PARAMS,
        errors.INTERNAL_ERROR,
    ]
    # _BY_CODE is the table the client decodes answers with: the agent's codes.
    return reserved + sorted(set(errors._BY_CODE) - set(reserved))


def environment_variables(*, only: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> set[str]:
    """Names the agent package reads from its environment (os.environ, click envvar)."""
    pattern = re.compile(
        r"""os\.environ(?:\.get\(|\[)\s*["']([A-Z_]+)["']|envvar=["']([A-Z_]+)["']"""
    )
    names = set()
    for path in (REPO / "agent").rglob("*.py"):
        # The part of the agent a file belongs to: "cli", "client", "daemon.py" ...
        part = path.relative_to(REPO / "agent").parts[0].removesuffix(".py")
        if (only and part not in only) or part in exclude:
            continue
        for match in pattern.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


def test_the_helpers_find_what_they_look_for():
    """Guards the checks above against passing vacuously."""
    assert {"CHOO_SOCKET", "XDG_RUNTIME_DIR"} <= environment_variables(only=("client",))
    assert "CHOO_CONFIG" in environment_variables(exclude=("cli", "client"))
    assert -32001 in wire_error_codes()
    assert len(config_items()) >= 10
    assert len(subsections(sections("chooctl.1")["COMMANDS"])) >= len(cli.main.commands)

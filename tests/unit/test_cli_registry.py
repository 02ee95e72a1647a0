"""chooctl's command registry (agent/cli/group.py): each command is where it is said
to be, none is left out, and a module is imported only when one of its commands is
needed."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import click.testing

from agent.cli import group


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_registered_command_is_a_click_command_of_its_name_or_an_alias():
    aliases = []
    for name, where in group.COMMANDS.items():
        command = group.main.commands[name]
        assert isinstance(command, click.Command), where
        if command.name != name:
            aliases.append((name, command.name))
            assert command.name in group.COMMANDS, f"{name} is an alias of nothing listed"
    assert aliases == [("list", "ps")]


def test_every_command_a_module_defines_is_registered():
    """A command written but not listed in group.COMMANDS would be unreachable."""
    modules = {where.partition(":")[0] for where in group.COMMANDS.values()}
    registered = {id(group.main.commands[name]) for name in group.COMMANDS}
    unlisted = [
        f"{module}:{attribute}"
        for module in sorted(modules)
        for attribute, value in vars(importlib.import_module(module)).items()
        if isinstance(value, click.Command)
        and value.__module__ == module
        and id(value) not in registered
        # A subcommand of a group is reached through its group.
        and not any(
            value in getattr(parent, "commands", {}).values()
            for parent in vars(importlib.import_module(module)).values()
            if isinstance(parent, click.Group)
        )
    ]
    assert not unlisted, f"commands not in agent/cli/group.py's COMMANDS: {unlisted}"


def test_listing_the_commands_imports_none_and_running_one_imports_its_module():
    loaded = _python(
        "import sys\n"
        "from agent.cli import main\n"
        "names = main.list_commands(None)\n"
        "before = {m for m in sys.modules if m.startswith('agent.cli.')}\n"
        "main.get_command(None, 'info')\n"
        "after = {m for m in sys.modules if m.startswith('agent.cli.')}\n"
        "print(len(names), sorted(before), sorted(after - before))\n"
    )
    count, before, added = loaded.strip().split(" ", 2)
    assert int(count) == len(group.COMMANDS)
    assert "agent.cli.jobs" not in before and "agent.cli.manage" not in before
    assert "agent.cli.manage" in added and "agent.cli.jobs" not in added


def test_importing_the_package_imports_no_click():
    out = _python(
        "import sys\nimport agent.cli\nprint('click' in sys.modules, agent.cli.EXIT_ERROR)\n"
    )
    assert out.split() == ["False", "125"]


def test_the_root_help_lists_every_command():
    listed = click.testing.CliRunner().invoke(group.main, ["--help"]).output
    for name in group.COMMANDS:
        assert f"\n  {name} " in listed, name


def test_schedule_add_offers_the_job_options_but_not_the_per_job_ones():
    runner = click.testing.CliRunner()
    shown = runner.invoke(group.main, ["schedule", "add", "--help"]).output
    assert "--retries" in shown and "--env" in shown
    assert "--after" not in shown
    refused = runner.invoke(
        group.main, ["schedule", "add", "--after", "01ABC", "nightly", "@daily", "img"]
    )
    assert refused.exit_code == 125
    assert "a schedule's template cannot hold --after" in refused.output
    assert "--after" in runner.invoke(group.main, ["submit", "--help"]).output

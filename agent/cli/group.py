"""chooctl's command group: where each command is defined, podman's exit statuses,
and the client its commands use.

Commands are loaded lazily: ``COMMANDS`` names each one's module and attribute,
and a module is imported only when one of its commands runs or a help lists
it (``chooctl run`` imports agent/cli/jobs.py alone). It imports click, so the
click-free start of a plain ``chooctl run`` (agent/cli/fast.py) never imports
it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import click

from agent import __version__
from agent.cli.output import EXIT_ERROR, EXIT_INTERRUPTED, warn
from agent.client import Client
from agent.protocol.errors import ChooError

#: Every chooctl command: its name, and the ``module:attribute`` of its click
#: command. Adding a command is one line here (an alias is a second name for
#: the same attribute). Subcommands (``schedule add``) belong to their group.
COMMANDS: dict[str, str] = {
    "run": "agent.cli.jobs:run",
    "submit": "agent.cli.jobs:submit",
    "ps": "agent.cli.jobs:ps",
    "list": "agent.cli.jobs:ps",
    "inspect": "agent.cli.jobs:inspect",
    "logs": "agent.cli.jobs:logs",
    "wait": "agent.cli.jobs:wait",
    "cancel": "agent.cli.jobs:cancel",
    "release": "agent.cli.workflow:release",
    "rerun": "agent.cli.workflow:rerun",
    "pause": "agent.cli.workflow:pause",
    "resume": "agent.cli.workflow:resume",
    "limit": "agent.cli.workflow:limit",
    "rm": "agent.cli.manage:remove",
    "prune": "agent.cli.manage:prune",
    "artifacts": "agent.cli.manage:artifacts",
    "info": "agent.cli.manage:info",
    "events": "agent.cli.manage:events",
    "completion": "agent.cli.manage:completion",
    "schedule": "agent.cli.schedules:schedule",
    "export": "agent.cli.export:export",
    "metrics": "agent.cli.metrics:metrics",
    "top": "agent.cli.top:top",
    "cache": "agent.cli.caches:cache",
}


class LazyCommands(MutableMapping[str, click.Command]):
    """A group's commands by name, each imported from its ``module:attribute`` at
    its first lookup (click accepts any mapping as a group's ``commands``).

    Listing the names imports nothing; looking one up imports its module.
    """

    def __init__(self, where: dict[str, str]):
        self._entries: dict[str, str | click.Command] = dict(where)

    def __getitem__(self, name: str) -> click.Command:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._entries[name] = command

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class ChooGroup(click.Group):
    """Exit statuses as podman's: a ChooError or a usage error prints one message
    and exits 125 (click alone would exit 2 on a usage error)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChooError as exc:
            warn(exc.message)
            ctx.exit(EXIT_ERROR)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except click.ClickException as exc:
            exc.show()
            sys.exit(EXIT_ERROR)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(status if isinstance(status, int) else 0)


@click.group(
    cls=ChooGroup,
    commands=LazyCommands(COMMANDS),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--socket",
    envvar="CHOO_SOCKET",
    metavar="PATH",
    help="The agent's socket [env CHOO_SOCKET; default /run/choo/agent.sock for root and "
    "group choo, else $XDG_RUNTIME_DIR/choo/agent.sock].",
)
@click.version_option(__version__, prog_name="chooctl")
@click.pass_context
def main(ctx: click.Context, socket: str | None) -> None:
    """Run and manage container jobs on a choo agent."""
    ctx.obj = socket


def connect(ctx: click.Context) -> Client:
    """A client for the agent at ``--socket`` (connected at its first call)."""
    return Client(ctx.find_root().obj)

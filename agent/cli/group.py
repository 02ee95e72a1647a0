"""chooctl's command group (podman's exit statuses) and the client its commands use."""

from __future__ import annotations

import sys
from typing import Any

import click

from agent.cli.output import EXIT_ERROR, EXIT_INTERRUPTED
from agent.client import Client
from agent.protocol.errors import ChooError


class ChooGroup(click.Group):
    """Exit statuses as podman's: a ChooError or a usage error prints one message
    and exits 125 (click alone would exit 2 on a usage error)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChooError as exc:
            click.echo(f"chooctl: {exc.message}", err=True)
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


def connect(ctx: click.Context) -> Client:
    """A client for the agent at ``--socket`` (connected at its first call)."""
    return Client(ctx.find_root().obj)

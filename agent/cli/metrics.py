"""``chooctl metrics``: the agent's metrics in the Prometheus text format."""

from __future__ import annotations

import click

from agent.cli.group import connect


@click.command()
@click.pass_context
def metrics(ctx: click.Context) -> None:
    """Print the agent's metrics (Prometheus text format): jobs started and
    ended, queued and running by name, queue-wait and run-time histograms,
    retries, schedule fires, log bytes, Podman health, last successes."""
    with connect(ctx) as client:
        click.echo(client.metrics(), nl=False)

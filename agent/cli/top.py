"""``chooctl top``: a live view of the running jobs and what each uses.

Refreshes in place on a terminal (like ``podman stats``), prints one table
with ``--no-stream``, or one JSON array per refresh with ``--json``. The
figures are the agent's usage sampler's (``job.top``); formatting only here.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from agent.cli.group import connect
from agent.cli.output import table
from agent.cli.usage_text import cpu_time, size

#: Clear the screen and go home: each refresh replaces the last.
_CLEAR = "\x1b[H\x1b[2J"
HEADER = ["ID", "NAME", "IMAGE", "CPU %", "MEM", "PEAK", "CPU TIME", "RUNTIME", "STATE"]


def rows(entries: list[dict[str, Any]], now: float) -> list[list[str]]:
    """The table's rows, one per entry of ``job.top``."""
    out = []
    for entry in entries:
        percent = entry["cpu_percent"]
        runtime = now - entry["started_at"] if entry["started_at"] else None
        out.append(
            [
                entry["id"],
                entry["name"] or "-",
                entry["image"],
                "-" if percent is None else f"{percent:.1f}",
                size(entry["memory"]),
                size(entry["memory_peak"]),
                cpu_time(entry["cpu_seconds"]),
                cpu_time(max(0.0, runtime)) if runtime is not None else "-",
                entry["state"],
            ]
        )
    return out


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one table and exit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of the jobs per refresh.")
@click.option(
    "-i",
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between refreshes.",
)
@click.pass_context
def top(ctx: click.Context, no_stream: bool, as_json: bool, interval: float) -> None:
    """Show the running jobs live: ID, name, image, CPU % (of one core), memory
    now and at peak, CPU time, runtime and state. Ctrl-C stops it (exit 0)."""
    in_place = sys.stdout.isatty() and not as_json
    with connect(ctx) as client:
        try:
            while True:
                entries = client.top()
                if as_json:
                    click.echo(json.dumps(entries))
                else:
                    if in_place:
                        click.echo(_CLEAR, nl=False)
                    table(rows(entries, time.time()), HEADER, colour_column=len(HEADER) - 1)
                    if not in_place and not no_stream:
                        click.echo()
                sys.stdout.flush()
                if no_stream:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return

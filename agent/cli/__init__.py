"""``chooctl``: the command line of choo.

Every command talks to the agent through agent.client; nothing here touches
the database or Podman. The commands live by group: jobs.py (run, submit,
ps, inspect, logs, wait, cancel), manage.py (rm, prune, artifacts, info,
events, completion), workflow.py (release, rerun), schedules.py (schedule ...),
export.py (export), caches.py (cache ls, cache rm). Exit status follows
``podman run`` (output.py): the job's own exit code where there is one, 125
when chooctl or the agent fails, 126/127 when the job's command could not be
run / was not found, 130 after Ctrl-C.
"""

from __future__ import annotations

import click

from agent import __version__
from agent.cli import caches, export, jobs, manage, schedules, workflow
from agent.cli.group import ChooGroup
from agent.cli.metrics import metrics
from agent.cli.output import EXIT_CANNOT_RUN, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOT_FOUND
from agent.cli.top import top

__all__ = ["EXIT_CANNOT_RUN", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NOT_FOUND", "main"]


@click.group(cls=ChooGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


for _command in (
    *jobs.COMMANDS,
    *workflow.COMMANDS,
    *manage.COMMANDS,
    schedules.schedule,
    export.export,
    metrics,
    top,
    caches.cache,
):
    main.add_command(_command)
main.add_command(jobs.ps, "list")

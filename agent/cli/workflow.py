"""chooctl's workflow commands (release, rerun) and the start-time options of run and
submit (``--not-before``, ``--delay``), with the parsing of a TIME."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import click

from agent.cli.group import connect
from agent.cli.spec_options import pairs

_TIME_HELP = (
    "an ISO 8601 date and time (2026-12-24T18:00, local time unless it names a zone) "
    "or HH:MM[:SS] (its next time today or tomorrow)"
)


def parse_time(value: str, now: dt.datetime | None = None) -> float:
    """A TIME of ``--not-before`` as seconds since the epoch.

    Args:
        value: ``2026-12-24T18:00[:SS][+01:00]`` or ``18:00[:SS]``.
        now: the current local time (tests fix it).

    Raises:
        click.BadParameter: it is neither.
    """
    now = now or dt.datetime.now().astimezone()
    try:
        clock = dt.time.fromisoformat(value)
    except ValueError:
        clock = None
    if clock is not None and len(value) <= len("HH:MM:SS"):
        when = now.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=0)
        if when <= now:
            when += dt.timedelta(days=1)
        return when.timestamp()
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected {_TIME_HELP}; got {value!r}") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.timestamp()


def start_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--not-before TIME`` and ``--delay DURATION`` to run or submit."""
    fn = click.option(
        "--delay",
        metavar="DURATION",
        help="Start no sooner than this long from now (e.g. 10m, 2h).",
    )(fn)
    return click.option(
        "--not-before",
        "not_before",
        metavar="TIME",
        help=f"Start no sooner than TIME: {_TIME_HELP}.",
    )(fn)


def start_params(opts: dict[str, Any]) -> dict[str, Any]:
    """The submit params of ``--not-before``/``--delay`` (popped from ``opts``)."""
    not_before, delay = opts.pop("not_before"), opts.pop("delay")
    if not_before is not None and delay is not None:
        raise click.UsageError("give --not-before or --delay, not both")
    params: dict[str, Any] = {}
    if not_before is not None:
        params["not_before"] = parse_time(not_before)
    if delay is not None:
        params["delay"] = delay
    return params


@click.command()
@click.argument("job_id", metavar="ID")
@click.pass_context
def release(ctx: click.Context, job_id: str) -> None:
    """Let a job submitted with --hold start (when the rest allows)."""
    with connect(ctx) as client:
        job = client.release(job_id)
    click.echo(job["id"])


@click.command()
@click.argument("job_id", metavar="[ID]", required=False)
@click.option(
    "--failed", is_flag=True, help="Rerun every failed job not rerun yet (instead of ID)."
)
@click.option("--since", metavar="DURATION", help="With --failed: submitted in the last DURATION.")
@click.option("--name", help="With --failed: only jobs of this name.")
@click.option(
    "-e",
    "--env",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a variable in the rerun's environment (repeatable).",
)
@click.pass_context
def rerun(
    ctx: click.Context,
    job_id: str | None,
    failed: bool,
    since: str | None,
    name: str | None,
    env: tuple[str, ...],
) -> None:
    """Submit job ID's spec again as a new job and print its ID (or, with
    --failed, those of every failed job's rerun)."""
    if (job_id is None) == (not failed):
        raise click.UsageError("give a job ID or --failed, not both")
    if job_id is not None and (since or name):
        raise click.UsageError("--since and --name go with --failed")
    variables = pairs(env, "env") or None
    with connect(ctx) as client:
        if job_id is not None:
            jobs = [client.rerun(job_id, env=variables)]
        else:
            jobs = client.rerun_failed(since=since, name=name, env=variables)["jobs"]
    for job in jobs:
        click.echo(job["id"])


COMMANDS = (release, rerun)

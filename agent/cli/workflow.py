"""chooctl's workflow commands (release, rerun, pause, resume, limit), the start-time
options of run and submit (``--not-before``, ``--delay``) with the parsing of a TIME,
and the lines ``info`` and ``ps`` show of a paused or limited queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import click

from agent.cli.group import connect
from agent.cli.output import emit_json, when
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


def _scope(name: str | None) -> str:
    return "the queue" if name is None else f"jobs named {name}"


def _pause_text(pause: dict[str, Any]) -> str:
    who = "the agent" if pause["by"] is None else f"uid {pause['by']}"
    return f"{_scope(pause['name'])} since {when(pause['since'])} (by {who})"


def queue_lines(queue: dict[str, Any] | None) -> list[str]:
    """``info``'s lines of the queue: what is paused, and the name limits in force."""
    if queue is None:  # an older agent
        return []
    pauses = "; ".join(_pause_text(p) for p in queue["pauses"])
    if queue["paused"]:
        state = f"paused: {pauses}"
    else:
        state = f"admitting, but paused: {pauses}" if pauses else "admitting"
    lines = [f"queue:      {state}"]
    limits = queue["name_limits"]
    if limits:
        runtime = queue["runtime_limits"]
        lines.append(
            "name limits: "
            + ", ".join(
                f"{name} {limit}" + (" (runtime)" if name in runtime else "")
                for name, limit in sorted(limits.items())
            )
        )
    return lines


def paused_note(queue: dict[str, Any] | None) -> None:
    """Say on stderr (below ``ps``'s table) why queued jobs may not start: a pause."""
    if not queue or not queue["pauses"]:
        return
    scopes = ", ".join(_scope(p["name"]) for p in queue["pauses"])
    click.echo(f"chooctl: paused: {scopes}; nothing of it starts until 'chooctl resume'", err=True)


def _report(change: dict[str, Any], name: str | None, done: str, already: str) -> None:
    click.echo(f"{_scope(name)} {done if change['changed'] else already}")
    still = [p for p in change["queue"]["pauses"] if p["name"] != name]
    if still:
        click.echo("still paused: " + ", ".join(_scope(p["name"]) for p in still))


@click.command()
@click.option("--name", help="Only jobs of this name (default: the whole queue).")
@click.option("--json", "as_json", is_flag=True, help="Print the queue's state as JSON.")
@click.pass_context
def pause(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Start no new job (of --name, or at all) until 'chooctl resume'; running
    jobs go on. Kept across agent restarts. Admins only."""
    with connect(ctx) as client:
        change = client.pause(name)
    if as_json:
        emit_json(change)
    else:
        _report(change, name, "paused", "was already paused")


@click.command()
@click.option("--name", help="Only jobs of this name (default: the whole queue).")
@click.option("--json", "as_json", is_flag=True, help="Print the queue's state as JSON.")
@click.pass_context
def resume(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Undo 'chooctl pause' (of --name, or of the whole queue); says so when it
    was not paused. Admins only."""
    with connect(ctx) as client:
        change = client.resume(name)
    if as_json:
        emit_json(change)
    else:
        _report(change, name, "resumed", "was not paused; nothing to resume")


@click.command()
@click.argument("name", metavar="NAME")
@click.argument("count", metavar="[N]", type=click.IntRange(min=0), required=False)
@click.option(
    "--default",
    "to_default",
    is_flag=True,
    help="Clear the runtime limit: the config file's name_limits entry applies again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the limit as JSON.")
@click.pass_context
def limit(
    ctx: click.Context, name: str, count: int | None, to_default: bool, as_json: bool
) -> None:
    """Show, or set to N (0: none start), how many jobs named NAME may run at once.
    Set at runtime and kept across restarts, over the config file's name_limits
    (which stay the defaults). Setting and --default are for admins only."""
    if count is not None and to_default:
        raise click.UsageError("give N or --default, not both")
    with connect(ctx) as client:
        result = client.limit(name, count, default=to_default)
    if as_json:
        emit_json(result)
        return
    if result["limit"] is None:
        text = "no limit (max_concurrent applies)"
    elif result["source"] == "runtime":
        default = result["default"]
        text = f"{result['limit']} (runtime; config file: {'none' if default is None else default})"
    else:
        text = f"{result['limit']} (config file)"
    click.echo(f"{name}: {text}")

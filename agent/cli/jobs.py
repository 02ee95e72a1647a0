"""chooctl's job commands: run, submit, ps (list), inspect, logs, wait, cancel."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from agent.cli.group import connect
from agent.cli.output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    age,
    emit_json,
    exit_status,
    report_dropped,
    status_text,
    table,
    write_output,
)
from agent.cli.running import DETACH, reconnecting, run_job
from agent.cli.spec_options import RUN_SETTINGS, build_spec, spec_options
from agent.cli.usage_text import usage_column
from agent.cli.workflow import paused_note, start_options, start_params
from agent.protocol.methods import CLI_TRIGGER, DEFAULT_LIST_LIMIT
from agent.protocol.spec import parse_duration
from agent.protocol.states import TERMINAL


@click.command(context_settings=RUN_SETTINGS)
@spec_options
@start_options
@DETACH.click
@click.pass_context
def run(
    ctx: click.Context, image: str, command: tuple[str, ...], detach: bool, **opts: Any
) -> None:
    """Run IMAGE [COMMAND...] as a job, streaming its output.

    Exits with the job's exit code. Ctrl-C cancels the job and exits 130.
    Output that cannot be shown does not stop it: it says so and waits for
    the job.
    """
    start = start_params(opts)
    spec = build_spec(image, command, opts)
    socket = ctx.find_root().obj
    ctx.exit(run_job(lambda: connect(ctx), spec, start, detach=detach, socket=socket))


@click.command(context_settings=RUN_SETTINGS)
@spec_options
@start_options
@click.option("--hold", is_flag=True, help="Keep it queued until 'chooctl release ID'.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the job ID.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.pass_context
def submit(
    ctx: click.Context,
    image: str,
    command: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    hold: bool,
    **opts: Any,
) -> None:
    """Queue IMAGE [COMMAND...] as a job and print its ID."""
    start = start_params(opts)
    with connect(ctx) as client:
        job = client.submit(
            build_spec(image, command, opts), trigger=CLI_TRIGGER, hold=hold, **start
        )
    if as_json:
        emit_json(job)
    else:
        click.echo(job["id"])


def _filters(items: tuple[str, ...]) -> dict[str, Any]:
    """``--filter state=failed --filter label=team=ci`` -> job.list params."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("state", "name", "label"):
            raise click.BadParameter(
                f"expected state=STATE, name=NAME or label=KEY=VALUE, got {item!r}",
                param_hint="--filter",
            )
        if key == "name":
            params["name"] = value
        else:
            params.setdefault(key, []).append(value)
    return params


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show finished jobs too.")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="state=STATE, name=NAME or label=KEY=VALUE (repeatable; a state filter implies -a).",
)
@click.option("--since", metavar="DURATION", help="Only jobs submitted in the last DURATION.")
@click.option("-q", "--quiet", is_flag=True, help="Print only job IDs.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs' summaries as JSON.")
@click.option(
    "-n",
    "--limit",
    default=DEFAULT_LIST_LIMIT,
    show_default=True,
    help="Show at most this many jobs.",
)
@click.pass_context
def ps(
    ctx: click.Context,
    show_all: bool,
    filters: tuple[str, ...],
    since: str | None,
    quiet: bool,
    as_json: bool,
    limit: int,
) -> None:
    """List jobs (queued and running; -a for all, with each one's CPU time and
    peak memory), newest first."""
    params = _filters(filters)
    with connect(ctx) as client:
        jobs = client.list(all=show_all, since=since, limit=limit, **params)["jobs"]
        queue = None if as_json or quiet else client.state()
    if as_json:
        emit_json(jobs)
    elif quiet:
        for job in jobs:
            click.echo(job["id"])
    else:
        rows = [
            [
                job["id"],
                job["name"] or "-",
                job["image"],
                status_text(job),
                age(job["submitted_at"]),
                " ".join(job["command"])[:40] or "-",
            ]
            + ([usage_column(job)] if show_all else [])
            for job in jobs
        ]
        header = ["ID", "NAME", "IMAGE", "STATUS", "SUBMITTED", "COMMAND"]
        table(rows, header + (["USAGE"] if show_all else []), colour_column=3)
        paused_note(queue)


@click.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Print the full records (with attempts and events) of jobs, as JSON."""
    with connect(ctx) as client:
        records = [client.get(job_id) for job_id in ids]
    emit_json(records)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the job ends.")
@click.option("--tail", type=int, help="Only the last N lines.")
@click.option("--since", metavar="DURATION", help="Only lines from the last DURATION (e.g. 10m).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def logs(
    ctx: click.Context,
    job_id: str,
    follow: bool,
    tail: int | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Print a job's output, byte for byte, each stream to its own.

    With --json, each entry of the output (see choo-agent(8), job.logs) is
    printed as one JSON object per line instead.
    """

    def show(entry: Any) -> None:
        if as_json:
            click.echo(json.dumps(entry))
        else:
            write_output(entry)

    with connect(ctx) as client:
        if follow:
            # Resolve the ID first: a wrong one (or no agent) fails at once,
            # only a connection lost while following is retried.
            full = client.get(job_id)["id"]
            try:
                ended = client.follow(full, show, tail=tail, since=since, on_lost=reconnecting)[
                    "job"
                ]
            except KeyboardInterrupt:
                ctx.exit(EXIT_INTERRUPTED)
        else:
            for entry in client.output(job_id, tail=tail, since=since):
                show(entry)
            ended = client.get(job_id)
    report_dropped(ended)


@click.command()
@click.argument("ids", nargs=-1, required=True)
@click.option("--timeout", metavar="DURATION", help="Give up after this long (exit 125).")
@click.option("--json", "as_json", is_flag=True, help="Print the job records as JSON.")
@click.pass_context
def wait(ctx: click.Context, ids: tuple[str, ...], timeout: str | None, as_json: bool) -> None:
    """Wait for jobs to end and print how each ended.

    Exits 0 when every job succeeded, else with the status of the first job
    (in the order given) that did not.
    """
    status = 0
    records = []
    with connect(ctx) as client:
        # One deadline for all the jobs, not one timeout each.
        deadline = (
            None if timeout is None else time.monotonic() + parse_duration(timeout, "--timeout")
        )
        for job_id in ids:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            job = client.wait(job_id, timeout=remaining)
            records.append(job)
            if job["state"] not in TERMINAL:
                click.echo(
                    f"chooctl: timed out waiting for job {job['id']} ({job['state']})", err=True
                )
                ctx.exit(EXIT_ERROR)
            if status == 0:
                status = exit_status(job)
            if not as_json:
                click.echo(f"{job['id']} {status_text(job)}")
    if as_json:
        emit_json(records)
    ctx.exit(status)


@click.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def cancel(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Cancel jobs: queued ones at once, running ones with SIGTERM then SIGKILL."""
    with connect(ctx) as client:
        for job_id in ids:
            job = client.cancel(job_id)
            click.echo(job["id"])

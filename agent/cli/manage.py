"""chooctl's housekeeping commands: rm, prune, artifacts, info, events, completion."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

import click

from agent.cli.group import connect
from agent.cli.output import EXIT_ERROR, STATE_ORDER, emit_json
from agent.cli.workflow import queue_lines
from agent.protocol import types
from agent.protocol.errors import AgentUnavailable, ChooError
from agent.protocol.states import TERMINAL, State


@click.command("rm")
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def remove(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Remove finished jobs: records, attempts, events, workspaces and archives.

    Prints each removed ID; a job that has not ended is refused (exit 125).
    """
    failed = False
    with connect(ctx) as client:
        for job_id in ids:
            try:
                click.echo(client.remove(job_id)["id"])
            except AgentUnavailable:
                raise  # no point going on
            except ChooError as exc:
                click.echo(f"chooctl: {exc.message}", err=True)
                failed = True
    ctx.exit(EXIT_ERROR if failed else 0)


@click.command()
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only jobs that ended longer ago than this (default: the agent's retention, 7d).",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in State if s in TERMINAL]),
    help="Only jobs that ended in this state (repeatable).",
)
@click.option(
    "--images",
    is_flag=True,
    help="Remove unused images instead (the agent's image_gc rules; admins only).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the removed IDs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def prune(
    ctx: click.Context,
    older_than: str | None,
    states: tuple[str, ...],
    images: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Remove finished jobs that ended long enough ago; never one still queued or running.

    With --images, remove the images no queued or running job and no schedule
    refers to, unused for the agent's image_gc_age (and more while free space is
    under image_gc_min_free), never one in image_gc_keep or used by a container.
    """
    if images:
        if older_than or states:
            raise click.UsageError("--images takes no --older-than or --state")
        _prune_images(ctx, quiet, as_json)
        return
    with connect(ctx) as client:
        result = client.prune(older_than=older_than, state=list(states) or None)
    if as_json:
        emit_json(result)
    elif quiet:
        for job_id in result["removed"]:
            click.echo(job_id)
    else:
        click.echo(f"removed {result['count']} job{'s' if result['count'] != 1 else ''}")


def _prune_images(ctx: click.Context, quiet: bool, as_json: bool) -> None:
    with connect(ctx) as client:
        result = client.prune_images()
    if as_json:
        emit_json(result)
        return
    for image in result["removed"]:
        name = ", ".join(image["tags"]) or image["id"][:12]
        click.echo(
            image["id"] if quiet else f"removed {name} ({image['size']} bytes, {image['why']})"
        )
    if not quiet:
        for image in result["skipped"]:
            click.echo(f"kept {', '.join(image['tags']) or image['id'][:12]}: a container uses it")
        count = len(result["removed"])
        click.echo(
            f"removed {count} image{'s' if count != 1 else ''}, freed {result['freed']} bytes"
        )


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Write the archive to FILE ('-': standard output); default ./ID.tar.gz.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the artifacts record only.")
@click.pass_context
def artifacts(ctx: click.Context, job_id: str, output: str | None, as_json: bool) -> None:
    """Fetch the archive (tar.gz) of what a job left in /out.

    A job with an empty /out has no artifacts: chooctl says so and writes
    nothing. The archive's sha256 is checked after the download.
    """
    with connect(ctx) as client:
        record = client.artifacts(job_id)
        if as_json:
            emit_json(record)
            return
        if not _downloadable(ctx, record):
            return
        path = output or f"{record['id']}.tar.gz"
        if path == "-":
            client.download(record, sys.stdout.buffer)
            return
        try:
            with open(path + ".part", "wb") as sink:
                client.download(record, sink)
        except ChooError:
            os.unlink(path + ".part")
            raise
        os.replace(path + ".part", path)
        click.echo(path)


def _downloadable(ctx: click.Context, record: types.Artifacts) -> bool:
    """Whether the job has an archive; say why not (exit 125 unless it has no /out)."""
    state = record["state"]
    if state == "none":
        click.echo(f"chooctl: job {record['id']} has no artifacts", err=True)
        return False
    if state != "packed":
        reason = record.get("message") or f"artifacts are {state}"
        if state == "pending":
            reason = f"job {record['id']} has not ended ({record['job_state']})"
        click.echo(f"chooctl: {reason}", err=True)
        ctx.exit(EXIT_ERROR)
    return True


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Show the agent's version, Podman, socket and job counts."""
    with connect(ctx) as client:
        data = client.info()
    if as_json:
        emit_json(data)
        return
    jobs = data["jobs"]
    click.echo(f"agent:      choo-agent {data['version']} (pid {data['pid']})")
    click.echo(f"socket:     {data['socket']}")
    click.echo(f"state dir:  {data['state_dir']}")
    click.echo(f"podman:     {data['podman']['version']} at {data['podman']['url']}")
    click.echo(f"health:     {'degraded: ' + data['degraded'] if data['degraded'] else 'ok'}")
    click.echo("jobs:       " + ", ".join(f"{jobs[s]} {s}" for s in STATE_ORDER))
    click.echo(
        f"capacity:   max_concurrent {data['max_concurrent']}, queue_limit {data['queue_limit']}"
    )
    limits = data["podman"].get("resource_limits") or {}
    if limits:
        state = {True: "enforced", False: "NOT enforced", None: "unknown"}[limits.get("enforced")]
        click.echo(f"limits:     {state} ({limits.get('reason')})")
    if data.get("secrets") is not None:
        click.echo(f"secrets:    {', '.join(data['secrets']) or '(none available)'}")
    for line in queue_lines(data.get("queue")):
        click.echo(line)


@click.command()
@click.option("--job", "job_id", metavar="ID", help="Only this job's events.")
@click.option("--name", help="Only events of jobs with this name.")
@click.option("-n", "--count", type=click.IntRange(min=1), help="Stop after N events.")
@click.option("--timeout", metavar="DURATION", help="Stop after this long.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def events(
    ctx: click.Context,
    job_id: str | None,
    name: str | None,
    count: int | None,
    timeout: str | None,
    as_json: bool,
) -> None:
    """Stream job events (state changes, cancel requests) as they happen.

    Runs until Ctrl-C, --count events or --timeout.
    """

    def show(event: Any) -> None:
        if as_json:
            click.echo(json.dumps(event))
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["time"]))
        what = event["state"] or event["kind"]
        detail = " ".join(
            f"{k}={v}" for k, v in (event.get("detail") or {}).items() if v is not None
        )
        click.echo(f"{stamp}  {event['job_id']}  {event['name'] or '-'}  {what}  {detail}".rstrip())

    with connect(ctx) as client, contextlib.suppress(KeyboardInterrupt):
        client.subscribe(show, job=job_id, name=name, count=count, timeout=timeout)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL.

    Enable it with: eval "$(chooctl completion bash)"
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root().command
    completer = get_completion_class(shell)(root, {}, "chooctl", "_CHOOCTL_COMPLETE")
    click.echo(completer.source())

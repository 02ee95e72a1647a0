"""``chooctl``: the command line of choo.

Every command talks to the agent through agent.client; nothing here touches
the database or Podman. Exit status follows ``podman run``: the job's own exit
code where there is one, 125 when chooctl or the agent fails, 126/127 when the
job's command could not be run / was not found, 130 after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from agent import __version__
from agent.client import Client
from agent.protocol.errors import AgentUnavailable, ChooError
from agent.protocol.spec import parse_duration

EXIT_ERROR = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130


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


def _client(ctx: click.Context) -> Client:
    return Client(ctx.find_root().obj)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2 if sys.stdout.isatty() else None))


# -- run / submit -------------------------------------------------------------


def _spec_options(fn):
    options = [
        click.option("--name", help="Logical name (groups runs; per-name limits)."),
        click.option(
            "-e",
            "--env",
            "env",
            multiple=True,
            metavar="NAME=VALUE",
            help="Set an environment variable (repeatable).",
        ),
        click.option(
            "--secret",
            "secrets",
            multiple=True,
            metavar="NAME",
            help="Pass the agent's credential NAME as variable NAME (repeatable); "
            "the value is never stored.",
        ),
        click.option(
            "-l",
            "--label",
            "labels",
            multiple=True,
            metavar="KEY=VALUE",
            help="Add a label (repeatable).",
        ),
        click.option(
            "--timeout",
            metavar="DURATION",
            help="Stop the job after this long (e.g. 90, 30m, 2h); it fails with reason timeout.",
        ),
        click.option(
            "--stop-timeout",
            metavar="DURATION",
            help="Grace between SIGTERM and SIGKILL (default 10s).",
        ),
        click.option("--memory", metavar="SIZE", help="Memory limit (e.g. 512m)."),
        click.option("--cpus", type=float, help="CPU limit (e.g. 1.5)."),
        click.option("--pids", type=int, help="Process-count limit."),
        click.option(
            "--pull",
            type=click.Choice(["missing", "always", "never"]),
            help="Image pull policy (default missing).",
        ),
        click.option("--retries", type=int, help="Attempts after a failure (default 0)."),
        click.option(
            "--network", type=click.Choice(["none", "default"]), help="Network (default none)."
        ),
        click.option("-w", "--workdir", help="Working directory inside the container."),
        click.option(
            "--workspace",
            metavar="DIR",
            # The agent decides what it may read (it may be another user).
            type=click.Path(file_okay=False, readable=False),
            help="Snapshot DIR now and mount the copy at /workspace (the job starts there).",
        ),
        click.option("-u", "--user", help="User inside the container."),
        click.option("--priority", type=int, help="Higher starts first (default 0)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    fn = click.argument("command", nargs=-1, type=click.UNPROCESSED)(fn)
    fn = click.argument("image")(fn)
    return fn


def _pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            if what == "env" and key in os.environ:
                value = os.environ[key]  # like podman: -e NAME passes the caller's value
            else:
                raise click.BadParameter(f"expected {what} as KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _build_spec(image: str, command: tuple[str, ...], opts: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image, "command": list(command)}
    if opts["env"]:
        spec["env"] = _pairs(opts["env"], "env")
    if opts["secrets"]:
        spec["secrets"] = list(opts["secrets"])
    if opts["labels"]:
        spec["labels"] = _pairs(opts["labels"], "label")
    resources = {k: opts[k] for k in ("memory", "cpus", "pids") if opts[k] is not None}
    if resources:
        spec["resources"] = resources
    for key in (
        "name",
        "timeout",
        "stop_timeout",
        "pull",
        "retries",
        "network",
        "workdir",
        "user",
        "priority",
    ):
        if opts[key] is not None:
            spec[key] = opts[key]
    if opts["workspace"] is not None:
        spec["workspace"] = os.path.abspath(opts["workspace"])
    return spec


RUN_SETTINGS = {"ignore_unknown_options": False, "allow_interspersed_args": False}


@main.command(context_settings=RUN_SETTINGS)
@_spec_options
@click.option("-d", "--detach", is_flag=True, help="Print the job ID and return at once.")
@click.pass_context
def run(
    ctx: click.Context, image: str, command: tuple[str, ...], detach: bool, **opts: Any
) -> None:
    """Run IMAGE [COMMAND...] as a job, streaming its output.

    Exits with the job's exit code. Ctrl-C cancels the job and exits 130.
    """
    spec = _build_spec(image, command, opts)
    client = _client(ctx)
    notice = PullNotice(ctx.find_root().obj) if sys.stderr.isatty() and not detach else None
    job = client.call("job.submit", spec=spec, trigger="cli")
    if detach:
        click.echo(job["id"])
        return
    if notice is not None:
        notice.follow(job["id"])
    try:
        result = _follow(ctx, client, {"id": job["id"]}, _print_line)
    except KeyboardInterrupt:
        _cancel_after_interrupt(ctx, job["id"])
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        client.close()
    ctx.exit(_report_end(result["job"]))


#: How long a follower keeps trying to reach an agent that went away (restart).
RECONNECT_SECONDS = 60.0


def _follow(
    ctx: click.Context, client: Client, params: dict[str, Any], show: Callable[[str, Any], None]
) -> dict[str, Any]:
    """Follow a job's output to its end, riding out an agent restart.

    If the connection breaks (``systemctl restart choo-agent``), reconnect and
    resume after the last line shown, so no line is lost or printed twice.
    """
    cursor = None

    def on_line(method: str, entry: Any) -> None:
        nonlocal cursor
        if method == "job.log" and isinstance(entry, dict):
            cursor = entry.get("cursor") or cursor
        show(method, entry)

    give_up = None
    while True:
        try:
            return client.stream("job.logs", {**params, "follow": True, "after": cursor}, on_line)
        except AgentUnavailable:
            if give_up is None:
                give_up = time.monotonic() + RECONNECT_SECONDS
                click.echo("chooctl: lost the agent; reconnecting ...", err=True)
            if time.monotonic() > give_up:
                raise
            time.sleep(0.5)
            client = _client(ctx)


class PullNotice:
    """On a terminal, say so while the agent pulls the job's image.

    It subscribes to events before the job is submitted (a pull begins only
    after the agent has tried to create the container, well after that) and
    stops at the job's first state after ``starting``.
    """

    def __init__(self, socket: str | None):
        self.client = Client(socket)
        self.job_id: str | None = None
        self.pulling = False
        threading.Thread(target=self._run, daemon=True).start()

    def follow(self, job_id: str) -> None:
        self.job_id = job_id

    def _run(self) -> None:
        with contextlib.suppress(ChooError, _Done), self.client:
            self.client.stream("events.subscribe", {"timeout": "1d"}, self._event)

    def _event(self, method: str, event: Any) -> None:
        if method != "event" or self.job_id is None or event.get("job_id") != self.job_id:
            return
        if event.get("kind") == "pulling":
            self.pulling = True
            click.echo(f"chooctl: pulling image {event['detail'].get('image')} ...", err=True)
        elif event.get("state") not in (None, "queued", "starting"):
            if self.pulling and event["state"] == "running":
                click.echo("chooctl: pull finished", err=True)
            raise _Done


class _Done(Exception):
    """Ends a PullNotice's subscription from inside its handler."""


def _cancel_after_interrupt(ctx: click.Context, job_id: str) -> None:
    click.echo(f"\nchooctl: cancelling job {job_id}", err=True)
    with _client(ctx) as client:
        try:
            client.call("job.cancel", id=job_id)
            client.call("job.wait", id=job_id, timeout=60)
        except ChooError as exc:
            click.echo(f"chooctl: {exc.message}", err=True)


def _print_line(method: str, params: Any) -> None:
    if method != "job.log" or not isinstance(params, dict):
        return
    stream = sys.stderr if params.get("stream") == "stderr" else sys.stdout
    stream.write(params.get("line", "") + "\n")
    stream.flush()


def exit_status(job: dict[str, Any]) -> int:
    """The exit status chooctl reports for a finished job (see chooctl(1))."""
    if job["state"] == "succeeded":
        return 0
    if job.get("exit_code") is not None:
        return job["exit_code"]
    if job["state"] == "cancelled":
        return EXIT_INTERRUPTED
    if job.get("reason") == "create":
        message = (job.get("log_tail") or "").lower()
        if "not found" in message or "no such file" in message:
            return EXIT_NOT_FOUND
        if "permission denied" in message:
            return EXIT_CANNOT_RUN
    return EXIT_ERROR


def _report_end(job: dict[str, Any]) -> int:
    """Explain a job that did not produce its own exit code, and return its status."""
    status = exit_status(job)
    if job["state"] == "failed" and job.get("reason") not in ("exit", None):
        click.echo(f"chooctl: job {job['id']} failed: {job['reason']}", err=True)
        if job.get("reason") in ("image", "create") and job.get("log_tail"):
            click.echo(f"chooctl: {job['log_tail']}", err=True)
    return status


@main.command(context_settings=RUN_SETTINGS)
@_spec_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the job ID.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.pass_context
def submit(
    ctx: click.Context,
    image: str,
    command: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    **opts: Any,
) -> None:
    """Queue IMAGE [COMMAND...] as a job and print its ID."""
    with _client(ctx) as client:
        job = client.call("job.submit", spec=_build_spec(image, command, opts), trigger="cli")
    if as_json:
        _emit_json(job)
    else:
        click.echo(job["id"])


# -- looking at jobs -----------------------------------------------------------


def _age(stamp: float | None) -> str:
    if not stamp:
        return "-"
    seconds = max(0, time.time() - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def _status_text(job: dict[str, Any]) -> str:
    text = job["state"]
    if job["state"] == "failed":
        text += f" ({job['reason']}" + (
            f", {job['exit_code']})" if job["exit_code"] is not None else ")"
        )
    elif job["state"] == "succeeded":
        text += " (0)"
    return text


def _table(rows: list[list[str]], header: list[str], colour_column: int | None = None) -> None:
    """Aligned columns; the state column coloured (click drops colour off a terminal)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    colour = colour_column is not None and not os.environ.get("NO_COLOR")
    for number, row in enumerate([header, *rows]):
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        if colour and number > 0:
            state = row[colour_column].split(" ")[0]
            cells[colour_column] = click.style(cells[colour_column], fg=STATE_COLOURS.get(state))
        click.echo("  ".join(cells).rstrip())


STATE_COLOURS = {
    "queued": "cyan",
    "starting": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}


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


@main.command("ps")
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
@click.option("--json", "as_json", is_flag=True, help="Print job records as JSON.")
@click.option("-n", "--limit", default=100, show_default=True, help="Show at most this many jobs.")
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
    """List jobs (queued and running; -a for all), newest first."""
    params = _filters(filters)
    with _client(ctx) as client:
        jobs = client.call("job.list", all=show_all, since=since, limit=limit, **params)["jobs"]
    if as_json:
        _emit_json(jobs)
    elif quiet:
        for job in jobs:
            click.echo(job["id"])
    else:
        rows = [
            [
                job["id"],
                job["name"] or "-",
                job["spec"]["image"],
                _status_text(job),
                _age(job["submitted_at"]),
                " ".join(job["spec"]["command"])[:40] or "-",
            ]
            for job in jobs
        ]
        _table(rows, ["ID", "NAME", "IMAGE", "STATUS", "SUBMITTED", "COMMAND"], colour_column=3)


@main.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Print the full records (with attempts and events) of jobs, as JSON."""
    with _client(ctx) as client:
        records = [client.call("job.get", id=job_id) for job_id in ids]
    _emit_json(records)


@main.command()
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
    """Print a job's output (stdout and stderr) from the journal."""

    def show(method: str, entry: Any) -> None:
        if as_json:
            click.echo(json.dumps(entry))
        else:
            _print_line(method, entry)

    params = {"id": job_id, "tail": tail, "since": since}
    with _client(ctx) as client:
        if follow:
            # Resolve the ID first: a wrong one (or no agent) fails at once,
            # only a connection lost while following is retried.
            params["id"] = client.call("job.get", id=job_id)["id"]
            try:
                _follow(ctx, client, params, show)
            except KeyboardInterrupt:
                ctx.exit(EXIT_INTERRUPTED)
        else:
            for entry in client.call("job.logs", **params)["lines"]:
                show("job.log", entry)


@main.command()
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
    with _client(ctx) as client:
        # One deadline for all the jobs, not one timeout each.
        deadline = (
            None if timeout is None else time.monotonic() + parse_duration(timeout, "--timeout")
        )
        for job_id in ids:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            job = client.call("job.wait", id=job_id, timeout=remaining)
            records.append(job)
            if job["state"] not in ("succeeded", "failed", "cancelled"):
                click.echo(
                    f"chooctl: timed out waiting for job {job['id']} ({job['state']})", err=True
                )
                ctx.exit(EXIT_ERROR)
            if status == 0:
                status = exit_status(job)
            if not as_json:
                click.echo(f"{job['id']} {_status_text(job)}")
    if as_json:
        _emit_json(records)
    ctx.exit(status)


@main.command()
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def cancel(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Cancel jobs: queued ones at once, running ones with SIGTERM then SIGKILL."""
    with _client(ctx) as client:
        for job_id in ids:
            job = client.call("job.cancel", id=job_id)
            click.echo(job["id"])


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Show the agent's version, Podman, socket and job counts."""
    with _client(ctx) as client:
        data = client.call("agent.info")
    if as_json:
        _emit_json(data)
        return
    jobs = data["jobs"]
    click.echo(f"agent:      choo-agent {data['version']} (pid {data['pid']})")
    click.echo(f"socket:     {data['socket']}")
    click.echo(f"state dir:  {data['state_dir']}")
    click.echo(f"podman:     {data['podman']['version']} at {data['podman']['url']}")
    click.echo(f"health:     {'degraded: ' + data['degraded'] if data['degraded'] else 'ok'}")
    click.echo(
        "jobs:       "
        + ", ".join(
            f"{jobs[s]} {s}"
            for s in ("running", "starting", "queued", "succeeded", "failed", "cancelled")
        )
    )
    click.echo(
        f"capacity:   max_concurrent {data['max_concurrent']}, queue_limit {data['queue_limit']}"
    )
    limits = data["podman"].get("resource_limits") or {}
    if limits:
        state = {True: "enforced", False: "NOT enforced", None: "unknown"}[limits.get("enforced")]
        click.echo(f"limits:     {state} ({limits.get('reason')})")
    if data.get("secrets") is not None:
        click.echo(f"secrets:    {', '.join(data['secrets']) or '(none available)'}")


main.add_command(ps, "list")


@main.command()
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

    def show(method: str, event: Any) -> None:
        if method != "event" or not isinstance(event, dict):
            return
        if as_json:
            click.echo(json.dumps(event))
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["time"]))
        what = event["state"] or event["kind"]
        detail = " ".join(
            f"{k}={v}" for k, v in (event.get("detail") or {}).items() if v is not None
        )
        click.echo(f"{stamp}  {event['job_id']}  {event['name'] or '-'}  {what}  {detail}".rstrip())

    params = {"job": job_id, "name": name, "count": count, "timeout": timeout}
    with _client(ctx) as client, contextlib.suppress(KeyboardInterrupt):
        client.stream("events.subscribe", params, show)


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    Enable it with: eval "$(chooctl completion bash)"
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)(main, {}, "chooctl", "_CHOOCTL_COMPLETE")
    click.echo(completer.source())


# -- removing, pruning, artifacts ------------------------------------------------


@main.command("rm")
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def remove(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Remove finished jobs: records, attempts, events, workspaces and archives.

    Prints each removed ID; a job that has not ended is refused (exit 125).
    """
    failed = False
    with _client(ctx) as client:
        for job_id in ids:
            try:
                click.echo(client.call("job.remove", id=job_id)["id"])
            except AgentUnavailable:
                raise  # no point going on
            except ChooError as exc:
                click.echo(f"chooctl: {exc.message}", err=True)
                failed = True
    ctx.exit(EXIT_ERROR if failed else 0)


@main.command()
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only jobs that ended longer ago than this (default: the agent's retention, 7d).",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(["succeeded", "failed", "cancelled"]),
    help="Only jobs that ended in this state (repeatable).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the removed IDs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def prune(
    ctx: click.Context, older_than: str | None, states: tuple[str, ...], quiet: bool, as_json: bool
) -> None:
    """Remove finished jobs that ended long enough ago; never one still queued or running."""
    params: dict[str, Any] = {"state": list(states) or None}
    if older_than is not None:
        params["older_than"] = older_than
    with _client(ctx) as client:
        result = client.call("job.prune", **params)
    if as_json:
        _emit_json(result)
    elif quiet:
        for job_id in result["removed"]:
            click.echo(job_id)
    else:
        click.echo(f"removed {result['count']} job{'s' if result['count'] != 1 else ''}")


#: Bytes fetched per job.artifacts call.
ARTIFACT_CHUNK = 1 << 20


@main.command()
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
    import base64
    import hashlib

    with _client(ctx) as client:
        record = client.call("job.artifacts", id=job_id)
        if as_json:
            _emit_json(record)
            return
        state = record["state"]
        if state == "none":
            click.echo(f"chooctl: job {record['id']} has no artifacts", err=True)
            return
        if state != "packed":
            reason = record.get("message") or f"artifacts are {state}"
            if state == "pending":
                reason = f"job {record['id']} has not ended ({record['job_state']})"
            click.echo(f"chooctl: {reason}", err=True)
            ctx.exit(EXIT_ERROR)
        path = output or f"{record['id']}.tar.gz"
        digest = hashlib.sha256()
        with contextlib.ExitStack() as stack:
            if path == "-":
                sink = sys.stdout.buffer
            else:
                sink = stack.enter_context(open(path + ".part", "wb"))
            offset = 0
            while True:
                chunk = client.call(
                    "job.artifacts", id=record["id"], offset=offset, length=ARTIFACT_CHUNK
                )
                data = base64.b64decode(chunk["data"])
                sink.write(data)
                digest.update(data)
                offset += len(data)
                if chunk["eof"] or not data:
                    break
        if digest.hexdigest() != record["sha256"] or offset != record["size"]:
            if path != "-":
                os.unlink(path + ".part")
            raise ChooError(f"the archive of job {record['id']} changed or was cut short")
        if path != "-":
            os.replace(path + ".part", path)
            click.echo(path)


# -- schedules -------------------------------------------------------------------


@main.group(cls=ChooGroup)
def schedule() -> None:
    """Named job templates run on a cron schedule."""


@schedule.command("add", context_settings=RUN_SETTINGS)
@click.argument("schedule_name", metavar="NAME")
@click.argument("cron", metavar="CRON")
@_spec_options
@click.option(
    "--concurrency",
    type=click.Choice(["allow", "forbid", "replace"]),
    default="allow",
    show_default=True,
    help="When a run is due while an earlier one has not ended.",
)
@click.option(
    "--catch-up/--no-catch-up",
    default=True,
    show_default=True,
    help="After downtime, run once for the fires missed.",
)
@click.option(
    "--history-limit",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="Finished runs to keep.",
)
@click.option("--timezone", metavar="ZONE", help="Time zone of CRON (default: the agent's).")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
@click.pass_context
def schedule_add(
    ctx: click.Context,
    schedule_name: str,
    cron: str,
    image: str,
    command: tuple[str, ...],
    concurrency: str,
    catch_up: bool,
    history_limit: int,
    timezone: str | None,
    as_json: bool,
    **opts: Any,
) -> None:
    """Run IMAGE [COMMAND...] whenever CRON (five fields, or @daily...) matches."""
    with _client(ctx) as client:
        row = client.call(
            "schedule.add",
            name=schedule_name,
            cron=cron,
            spec=_build_spec(image, command, opts),
            concurrency=concurrency,
            catch_up=catch_up,
            history_limit=history_limit,
            timezone=timezone,
        )
    if as_json:
        _emit_json(row)
    else:
        click.echo(f"{row['name']}: next run {_when(row['next_fire'])}")


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


@schedule.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Print only schedule names.")
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@click.pass_context
def schedule_ls(ctx: click.Context, quiet: bool, as_json: bool) -> None:
    """List schedules: cron, policy, next run, last run."""
    with _client(ctx) as client:
        rows = client.call("schedule.list")
    if as_json:
        _emit_json(rows)
    elif quiet:
        for row in rows:
            click.echo(row["name"])
    else:
        _table(
            [
                [
                    row["name"],
                    row["cron"],
                    row["concurrency"],
                    _when(row["next_fire"]),
                    row["last_job"] or "-",
                    str(len(row["active"])),
                ]
                for row in rows
            ],
            ["NAME", "CRON", "CONCURRENCY", "NEXT RUN", "LAST JOB", "ACTIVE"],
        )


@schedule.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def schedule_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove schedules; the jobs they made are kept."""
    with _client(ctx) as client:
        for name in names:
            click.echo(client.call("schedule.remove", name=name)["name"])


@schedule.command("run")
@click.argument("schedule_name", metavar="NAME")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def schedule_run(ctx: click.Context, schedule_name: str, as_json: bool) -> None:
    """Run a schedule now, under its concurrency policy; print the new job's ID."""
    with _client(ctx) as client:
        result = client.call("schedule.trigger", name=schedule_name, trigger="cli")
    if as_json:
        _emit_json(result)
    elif result["job"] is None:
        click.echo(f"chooctl: schedule {schedule_name}: skipped: {result['skipped']}", err=True)
    else:
        click.echo(result["job"]["id"])

"""How chooctl shows things: exit statuses, tables, state colours, times and JSON.

Pure presentation over records the agent returned; no calls to the agent. It
does not import click (``chooctl run`` starts without it) except for ``table``,
whose colours click drops off a terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from agent.protocol.output import entry_bytes
from agent.protocol.states import Reason, State

EXIT_ERROR = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130

#: The colour of each state in tables (click drops colour off a terminal).
STATE_COLOURS: dict[str, str] = {
    State.QUEUED: "cyan",
    State.STARTING: "cyan",
    State.RUNNING: "yellow",
    State.SUCCEEDED: "green",
    State.FAILED: "red",
    State.CANCELLED: "magenta",
}
#: The order ``chooctl info`` counts jobs in: active first.
STATE_ORDER = (
    State.RUNNING,
    State.STARTING,
    State.QUEUED,
    State.SUCCEEDED,
    State.FAILED,
    State.CANCELLED,
)


def echo(text: str, *, err: bool = False) -> None:
    """Write a line to stdout (stderr with ``err``) at once, as click.echo does plain text."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def warn(message: str) -> None:
    """Say ``chooctl: message`` on stderr."""
    echo(f"chooctl: {message}", err=True)


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON: indented on a terminal, one line otherwise."""
    echo(json.dumps(value, indent=2 if sys.stdout.isatty() else None))


def exit_status(job: dict[str, Any]) -> int:
    """The exit status chooctl reports for a finished job (see chooctl(1))."""
    if job["state"] == State.SUCCEEDED:
        return 0
    if job.get("exit_code") is not None:
        return job["exit_code"]
    if job["state"] == State.CANCELLED:
        return EXIT_INTERRUPTED
    if job.get("reason") == Reason.CREATE:
        message = (job.get("log_tail") or "").lower()
        if "not found" in message or "no such file" in message:
            return EXIT_NOT_FOUND
        if "permission denied" in message:
            return EXIT_CANNOT_RUN
    return EXIT_ERROR


def report_end(job: dict[str, Any]) -> int:
    """Explain a job that did not produce its own exit code, and return its status."""
    status = exit_status(job)
    if job["state"] == State.FAILED and job.get("reason") not in (Reason.EXIT, None):
        warn(f"job {job['id']} failed: {job['reason']}")
        if job.get("reason") in (Reason.IMAGE, Reason.CREATE) and job.get("log_tail"):
            warn(job["log_tail"])
    return status


def report_dropped(job: dict[str, Any]) -> None:
    """Say on stderr that output past the job's ``max_log_bytes`` was dropped, if it was."""
    dropped = job.get("log_dropped") or 0
    if dropped > 0:
        cap = (job.get("spec") or {}).get("max_log_bytes")
        warn(f"job {job['id']}: output past max_log_bytes ({cap}) was dropped ({dropped} bytes)")


def write_output(entry: Any) -> None:
    """Write an entry of a job's output to stdout or stderr, byte for byte, as
    the job wrote it (to the stream it wrote it to)."""
    if not isinstance(entry, dict):
        return
    stream = sys.stderr if entry.get("stream") == "stderr" else sys.stdout
    stream.flush()  # what chooctl itself wrote to it comes first
    stream.buffer.write(entry_bytes(entry))
    stream.buffer.flush()


def age(stamp: float | None) -> str:
    """``3m ago``, ``2h ago``... (``-`` for no time)."""
    if not stamp:
        return "-"
    seconds = max(0, time.time() - stamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def when(stamp: float | None) -> str:
    """A local date and time (``-`` for no time)."""
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


#: How many characters of a job ID ``status_text`` shows for a dependency.
AFTER_PREFIX = 10


def queued_text(job: dict[str, Any]) -> str:
    """What holds a queued job back: `` (held)``, `` (after 01J...)`` (by a
    prefix that still names each job), `` (not before 14:05:00)``, or nothing."""
    waits = []
    if job.get("held"):
        waits.append("held")
    if job.get("after"):
        waits.append("after " + ", ".join(ref[:AFTER_PREFIX] for ref in job["after"]))
    if job.get("not_before") and job["not_before"] > time.time():
        waits.append(
            "not before " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job["not_before"]))
        )
    return f" ({'; '.join(waits)})" if waits else ""


def status_text(job: dict[str, Any]) -> str:
    """``failed (exit, 3)``, ``succeeded (0)``, ``queued (after 01J...)``,
    ``cancelled (dependency)``, ``running``...; with ``, output cut``
    (past ``max_log_bytes``) or ``, output lost`` (a log cut short) when so."""
    text = job["state"]
    if job["state"] == State.FAILED:
        text += f" ({job['reason']}" + (
            f", {job['exit_code']})" if job["exit_code"] is not None else ")"
        )
    elif job["state"] == State.SUCCEEDED:
        text += " (0)"
    elif job["state"] == State.CANCELLED and job.get("reason"):
        text += f" ({job['reason']})"
    elif job["state"] == State.QUEUED:
        text += queued_text(job)
    # Output that is not all there is said wherever the status is shown.
    if job.get("log_dropped"):
        text += ", output cut"
    if job.get("log_lost"):
        text += ", output lost"
    return text


def table(rows: list[list[str]], header: list[str], colour_column: int | None = None) -> None:
    """Aligned columns; the state column coloured (click drops colour off a terminal)."""
    import click

    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    colour = colour_column is not None and not os.environ.get("NO_COLOR")
    for number, row in enumerate([header, *rows]):
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        if colour and number > 0:
            state = row[colour_column].split(" ")[0]
            cells[colour_column] = click.style(cells[colour_column], fg=STATE_COLOURS.get(state))
        click.echo("  ".join(cells).rstrip())

"""What ``chooctl run`` does once its command line is read: submit, follow, exit status.

Shared by the click command (agent/cli/jobs.py) and the click-free start of a
plain ``chooctl run`` line (agent/cli/fast.py), so it must never import click:
it writes with agent/cli/output.py and returns the exit status.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

from agent.cli.output import (
    EXIT_INTERRUPTED,
    echo,
    report_dropped,
    report_end,
    warn,
    write_output,
)
from agent.cli.spec_options import JobOption
from agent.client import Client
from agent.protocol.errors import AgentUnavailable, ChooError
from agent.protocol.methods import CLI_TRIGGER
from agent.protocol.states import TERMINAL, State

#: ``run``'s own option (the job options are agent/cli/spec_options.py's).
DETACH = JobOption("-d", "--detach", flag=True, help="Print the job ID and return at once.")


def run_job(
    connect: Callable[[], Client],
    spec: dict[str, Any],
    start: dict[str, Any],
    *,
    detach: bool,
    socket: str | None,
) -> int:
    """Submit ``spec`` and, unless ``detach``, stream its output until it ends.

    Args:
        connect: makes a client of the agent (a second one cancels after Ctrl-C).
        start: the submit's ``not_before``/``delay``, if any.
        socket: the agent's socket as given (None: the default), for the pull notice.

    Returns:
        chooctl's exit status: the job's (output.exit_status), 130 after Ctrl-C.

    Raises:
        ChooError: the submit failed, or the agent went away for good.
    """
    client = connect()
    notice = PullNotice(socket) if sys.stderr.isatty() and not detach else None
    job = client.submit(spec, trigger=CLI_TRIGGER, **start)
    if detach:
        echo(job["id"])
        return 0
    if notice is not None:
        notice.follow(job["id"])
    try:
        try:
            ended = client.follow(job["id"], write_output, on_lost=reconnecting)["job"]
        except AgentUnavailable:
            warn(
                f"lost the agent; job {job['id']} goes on without chooctl "
                f"(follow it with 'chooctl logs -f {job['id']}' once the agent is back)"
            )
            raise
        except ChooError as exc:
            ended = _wait_unseen(client, job["id"], exc)
    except KeyboardInterrupt:
        _cancel_after_interrupt(connect, job["id"])
        return EXIT_INTERRUPTED
    finally:
        client.close()
    report_dropped(ended)
    return report_end(ended)


def reconnecting() -> None:
    """Say that the agent went away and chooctl is trying to reach it again."""
    warn("lost the agent; reconnecting ...")


def _wait_unseen(client: Client, job_id: str, exc: ChooError) -> dict[str, Any]:
    """Say the output cannot be shown, and how to see it; wait for the job to end."""
    warn(f"cannot show the output of job {job_id}: {exc.message}")
    warn(
        f"waiting for it to end; see its output with 'chooctl logs {job_id}' "
        f"or 'journalctl CONTAINER_NAME=choo-{job_id}'"
    )
    while True:
        job = client.wait(job_id)
        if job["state"] in TERMINAL:
            return job


def _cancel_after_interrupt(connect: Callable[[], Client], job_id: str) -> None:
    echo(f"\nchooctl: cancelling job {job_id}", err=True)
    with connect() as client:
        try:
            client.cancel(job_id)
            client.wait(job_id, timeout=60)
        except ChooError as exc:
            warn(exc.message)


class PullNotice:
    """On a terminal, say so while the agent pulls the job's image.

    It subscribes to events before the job is submitted (a pull begins only
    after the agent has tried to create the container, well after that) and
    stops at the job's first state after ``starting``.
    """

    def __init__(self, socket: str | None):
        import threading  # only on a terminal

        self.client = Client(socket)
        self.job_id: str | None = None
        self.pulling = False
        threading.Thread(target=self._run, daemon=True).start()

    def follow(self, job_id: str) -> None:
        self.job_id = job_id

    def _run(self) -> None:
        with contextlib.suppress(ChooError, _Done), self.client:
            self.client.subscribe(self._event, timeout="1d")

    def _event(self, event: dict[str, Any]) -> None:
        if self.job_id is None or event.get("job_id") != self.job_id:
            return
        if event.get("kind") == "pulling":
            self.pulling = True
            warn(f"pulling image {event['detail'].get('image')} ...")
        elif event.get("state") not in (None, State.QUEUED, State.STARTING):
            if self.pulling and event["state"] == State.RUNNING:
                warn("pull finished")
            raise _Done


class _Done(Exception):
    """Ends a PullNotice's subscription from inside its handler."""

"""The light pass: what a submit, a cancel or a finished piece of work calls for.

A wake of the loop that is not a full pass (``controller``) runs this one over
the database's active jobs alone (an indexed read), never Podman's listing:
it sends the stops asked for (a cancel, ``stop_reason``) and those a deadline
calls for (``enforcing``), cancels or admits queued jobs (``admitting``). What
only Podman can tell (a container gone, or created but never started) waits
for the next full pass, at the periodic resync; a container's end comes by
``exit_watch``. Jobs with work in flight are left alone, as in the full pass.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.protocol.spec import container_name
from agent.protocol.states import State
from agent.runtime.admitting import Admitting
from agent.runtime.enforcing import Enforcing
from agent.runtime.workers import Workers
from agent.storage.store import Store


class LightPass:
    """One light pass per call.

    Args:
        store: the job store.
        workers: the pool (which jobs are busy, when a backed-off one may go on).
        enforcing: the stops of running jobs.
        admitting: queued jobs.
        container_of: a job's container ID, when known (``ExitWatch.container_of``).
        clock: the wall-clock time (admission's now).
        monotonic: the clock of every deadline.
    """

    def __init__(
        self,
        store: Store,
        workers: Workers,
        enforcing: Enforcing,
        admitting: Admitting,
        container_of: Callable[[str], str | None],
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ):
        self.store = store
        self.workers = workers
        self.enforcing = enforcing
        self.admitting = admitting
        self.container_of = container_of
        self.clock = clock
        self.monotonic = monotonic

    def __call__(self) -> float | None:
        """Run the pass.

        Returns:
            The earliest monotonic time something is due, or None.

        Raises:
            StorageError: the database could not be written.
        """
        busy = self.workers.busy()
        mono = self.monotonic()
        deadlines: list[float] = []
        for job in self.store.nonterminal():
            if job["id"] in busy:
                continue
            if job["state"] == State.RUNNING:
                # By name when not known by ID: the job's is the only one of that name.
                container_id = self.container_of(job["id"]) or container_name(job["id"])
                due = self.enforcing.running(job, container_id, mono)
            elif job["state"] == State.QUEUED:
                due = self.admitting.queued(job, mono)
            else:
                continue
            if due is not None:
                deadlines.append(due)
        self.admitting.admit(self.clock(), mono)
        retry = self.workers.next_retry()
        if retry is not None:
            deadlines.append(retry)
        return min(deadlines, default=None)

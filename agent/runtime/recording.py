"""The ends handed to the pool whose record is not committed yet: what READY waits for.

A full pass hands the end of each job whose container exited to the pool.
The work records it (``Finisher.record``: the job's state, exit code, log
tail and /out archive, in the database), says so here, and only then runs
the cleanup that end leaves (removing the container, its /out volume or
directory, and secrets), the slow part. ``wait`` returns once every end
handed out is recorded: the start-up recovery pass reports ready then, with
every job's record true, while the removals go on. The job stays busy on
the pool until they are done, so nothing else acts on it meanwhile; an agent
killed before they are done leaves strays of an ended job, which the next
start's sweeps remove. While the recovery pass runs, cleanups are held back
(``hold_cleanups``): fifty removals would compete with its records for
Podman. ``release_cleanups`` hands them to the pool, before anything else can
act on those jobs. Never records or removes anything itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.runtime.workers import Workers


class Recording:
    """The IDs of the jobs whose end is handed out and not recorded yet."""

    def __init__(self) -> None:
        self._jobs: set[str] = set()
        self._changed = threading.Condition()  # notified as each end is recorded
        #: Cleanups held back (job ID, cleanup) while the recovery pass runs; None: not held.
        self._held: list[tuple[str, Callable[[], None]]] | None = None

    def hand_out(
        self, workers: Workers, job_id: str, record: Callable[[], Callable[[], None]]
    ) -> None:
        """Hand the pool a job's end: ``record``, then the cleanup it returns (``run``).

        Args:
            workers: the pool.
            job_id: the job.
            record: records the end; returns its cleanup.
        """
        with self._changed:
            self._jobs.add(job_id)  # before the hand-off: the work may be done at once
        if not workers.submit(job_id, self.run, job_id, record):
            self.done(job_id)  # busy or backing off: a later pass hands it out

    def done(self, job_id: str) -> None:
        """The end of this job is recorded, put off, failed or was never handed out."""
        with self._changed:
            self._jobs.discard(job_id)
            self._changed.notify_all()

    def run(self, job_id: str, record: Callable[[], Callable[[], None]]) -> None:
        """Record an end, say so, then run the cleanup ``record`` handed back.

        Args:
            job_id: the job.
            record: records the end; returns its cleanup.

        Raises:
            Exception: whatever ``record`` or the cleanup raised (the job is
                done here either way: the pool reports the error, and a later
                pass hands the end out again).
        """
        try:
            cleanup = record()
        finally:
            self.done(job_id)
        with self._changed:
            if self._held is not None:
                self._held.append((job_id, cleanup))
                return
        cleanup()

    def hold_cleanups(self) -> None:
        """Keep the cleanups of the ends recorded from now on until ``release_cleanups``."""
        with self._changed:
            if self._held is None:
                self._held = []

    def release_cleanups(self, workers: Workers) -> None:
        """Hand the pool every cleanup held back; cleanups run at once again from now.

        Call it before anything else may start work on those jobs (the
        loop's thread, the socket): between its record and this, a job's
        end is recorded but its container not yet removed.

        Args:
            workers: the pool.
        """
        with self._changed:
            held, self._held = self._held or [], None
        for job_id, cleanup in held:
            workers.submit(job_id, cleanup)

    def wait(self, timeout: float) -> bool:
        """Wait until no end is handed out unrecorded.

        Args:
            timeout: the most seconds to wait.

        Returns:
            True when every end is recorded, False when ``timeout`` passed first.
        """
        with self._changed:
            return self._changed.wait_for(lambda: not self._jobs, timeout)

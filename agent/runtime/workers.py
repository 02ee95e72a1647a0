"""The worker pool: runs the slow Podman work of one job off the loop thread.

The loop decides; what it decides (create and start, inspect and record, a
stop signal, remove) can take seconds per job, so it is handed here and runs
on a thread pool, as parallel as Podman allows. A job is *busy* while it has
work in flight; the loop leaves busy jobs alone, and a second hand-off for a
busy job is dropped (the next pass decides again once the work is done).
Work that fails puts its job in *backoff*: hand-offs for it are dropped until
its retry time, which doubles with every failure in a row (``FIRST_BACKOFF``
up to ``MAX_BACKOFF``) and is forgotten on the first success, so a job whose
work always fails is never retried in a tight loop. Finished work always
wakes the loop. Never decides anything itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from agent.protocol.errors import ChooError
from agent.rules.admission import backoff

log = logging.getLogger(__name__)

#: The pause after a job's work first fails, doubled per failure in a row ...
FIRST_BACKOFF = 1.0
#: ... up to this many seconds.
MAX_BACKOFF = 60.0


@dataclass
class _Failing:
    """A job whose work failed ``count`` times in a row; no new work before ``retry_at``."""

    count: int
    retry_at: float


class Workers:
    """Slow work per job on an executor, with the sets of busy and backed-off jobs.

    Args:
        executor: runs the work (tests hand in one that runs it inline).
        wake: called after every piece of work, so the loop looks again.
        on_error: called with every exception work raised (after it is
            logged), so the controller can tell Podman or the database down.
        monotonic: the clock of the backoff (never the wall clock: a step of
            it must not end a backoff early or make it last for hours).
    """

    def __init__(
        self,
        executor: Executor,
        *,
        wake: Callable[[], None],
        on_error: Callable[[Exception], None],
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._executor = executor
        self._wake = wake
        self._on_error = on_error
        self._monotonic = monotonic
        self._busy: set[str] = set()
        self._failing: dict[str, _Failing] = {}
        # Guards _busy and _failing; notified whenever a job stops being busy.
        self._changed = threading.Condition()

    def submit(self, job_id: str, work: Callable[..., None], *args: Any) -> bool:
        """Run ``work(*args)`` for ``job_id`` on the pool, unless the job is busy
        or backing off.

        An error is logged, handed to ``on_error`` and not raised: the job backs
        off, and a pass after its retry time sees what is left and tries again.

        Returns:
            True when the work was handed out, False when it was dropped.
        """
        with self._changed:
            failing = self._failing.get(job_id)
            if job_id in self._busy or (failing and self._monotonic() < failing.retry_at):
                return False
            self._busy.add(job_id)

        def run() -> None:
            try:
                work(*args)
            except Exception as exc:
                self._failed(job_id, exc)
            else:
                with self._changed:
                    self._failing.pop(job_id, None)
            finally:
                with self._changed:
                    self._busy.discard(job_id)
                    self._changed.notify_all()
                self._wake()

        self._executor.submit(run)
        return True

    def _failed(self, job_id: str, exc: Exception) -> None:
        """Put the job in backoff; log the first failure in full, repeats in a line."""
        with self._changed:
            count = self._failing[job_id].count + 1 if job_id in self._failing else 1
            delay = backoff(count, FIRST_BACKOFF, MAX_BACKOFF)
            self._failing[job_id] = _Failing(count, self._monotonic() + delay)
        if count == 1:
            # An error of ours says what is wrong; anything else needs its traceback.
            trace = None if isinstance(exc, ChooError) else exc
            log.error(
                "work on job %s failed: %s; retrying in %.0fs", job_id, exc, delay, exc_info=trace
            )
        else:
            log.warning(
                "work on job %s failed again (%d in a row): %s; retrying in %.0fs",
                job_id,
                count,
                exc,
                delay,
            )
        self._on_error(exc)

    def busy(self) -> set[str]:
        """The IDs of the jobs with work in flight (a snapshot)."""
        with self._changed:
            return set(self._busy)

    def next_retry(self) -> float | None:
        """The earliest monotonic time still ahead when a backed-off job may get
        work again, or None (a time passed must not make the loop spin)."""
        now = self._monotonic()
        with self._changed:
            return min(
                (f.retry_at for f in self._failing.values() if f.retry_at > now), default=None
            )

    def forget(self, live: set[str]) -> None:
        """Drop the backoff of jobs that are gone (ended and removed, or pruned).

        Args:
            live: the IDs of the jobs (and strays) the loop still knows.
        """
        with self._changed:
            for job_id in self._failing.keys() - live:
                del self._failing[job_id]

    def settle(self, timeout: float) -> bool:
        """Wait until no job is busy.

        Args:
            timeout: the most seconds to wait.

        Returns:
            True when the pool is idle, False when ``timeout`` passed first.
        """
        with self._changed:
            return self._changed.wait_for(lambda: not self._busy, timeout)

    def shutdown(self) -> None:
        """Accept no more work; return once the work in flight is done."""
        self._executor.shutdown(wait=True)

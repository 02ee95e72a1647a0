"""The worker pool: runs the slow Podman work of one job off the loop thread.

The loop decides; what it decides (create and start, inspect and record,
remove) can take seconds per job, so it is handed here and runs on a small
thread pool, as parallel as Podman allows. A job is *busy* while it has work
in flight; the loop leaves busy jobs alone, and a second hand-off for a busy
job is dropped (the next pass decides again once the work is done). Finished
work always wakes the loop. Never decides anything itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from agent.protocol.errors import PodmanUnavailable

log = logging.getLogger(__name__)


class Workers:
    """Slow work per job on an executor, with the set of busy jobs.

    Args:
        executor: runs the work (tests hand in one that runs it inline).
        wake: called after every piece of work, so the loop looks again.
        on_unavailable: called with the message when work finds Podman down.
    """

    def __init__(
        self,
        executor: Executor,
        *,
        wake: Callable[[], None],
        on_unavailable: Callable[[str], None],
    ):
        self._executor = executor
        self._wake = wake
        self._on_unavailable = on_unavailable
        self._busy: set[str] = set()
        # Guards _busy; notified whenever a job stops being busy (settle waits on it).
        self._changed = threading.Condition()

    def submit(self, job_id: str, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(*args)`` for ``job_id`` on the pool, unless the job is busy.

        An error is logged (``PodmanUnavailable`` reported to ``on_unavailable``)
        and not raised: the loop's next pass sees what is left and tries again.
        """
        with self._changed:
            if job_id in self._busy:
                return
            self._busy.add(job_id)

        def run() -> None:
            try:
                work(*args)
            except PodmanUnavailable as exc:
                self._on_unavailable(str(exc))
            except Exception:
                log.exception("work on job %s failed; will retry", job_id)
            finally:
                with self._changed:
                    self._busy.discard(job_id)
                    self._changed.notify_all()
                self._wake()

        self._executor.submit(run)

    def busy(self) -> set[str]:
        """The IDs of the jobs with work in flight (a snapshot)."""
        with self._changed:
            return set(self._busy)

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

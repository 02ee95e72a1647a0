"""The end of a job noticed at once: conmon's exit files, turned into targeted finishes.

Podman's ``died`` event reaches the agent 200-600 ms after a container's
process ended (``agent.adapters.podman.exits`` says why). This thread
watches the exit files instead and hands the loop the jobs whose container
just ended; the loop finishes exactly those (``finish``), without a
full pass. The event stream and the periodic resync stay as they were: the
safety net when the directory cannot be watched or a notice is missed.

Only containers the last full pass listed are known here. An exit file of
any other container is ignored, and that loses nothing: a container the last
pass did not list was created by a launch still in flight, and the launch's
end wakes a full pass, whose listing shows the container ended or running
(and, running, makes it known). Never reads or changes a job itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.adapters.podman import ContainerState
from agent.protocol.errors import NoSuchJob
from agent.protocol.spec import container_name
from agent.protocol.states import ACTIVE
from agent.runtime.finish import Finisher
from agent.runtime.ports import ExitSource
from agent.runtime.workers import Workers
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: How often an unwatchable exits directory is tried again (Podman makes it
#: with its first container).
REOPEN_EVERY = 5.0
#: The longest one read waits, so a stop is seen that soon.
READ_TIMEOUT = 1.0


@dataclass(frozen=True)
class Ended:
    """The container of one attempt of a job has exited."""

    job_id: str
    attempt: int | None
    container_id: str


class ExitWatch:
    """Follows the exit files on a thread of its own and queues the ends of known jobs.

    Args:
        source: the exits directory's watch (None: not watched; the loop
            relies on the event stream).
        notify: wakes the loop for the queued ends (not a full pass).
        stopped: set when the agent stops.
    """

    def __init__(
        self,
        source: ExitSource | None,
        *,
        notify: Callable[[], None],
        stopped: threading.Event,
    ):
        self.source = source
        self.notify = notify
        self.stopped = stopped
        # Replaced whole by each full pass, read by the thread: no lock needed.
        self._known: dict[str, tuple[str, int | None]] = {}
        self._ended: list[Ended] = []
        self._lock = threading.Lock()

    def known(self, containers: dict[str, ContainerState]) -> None:
        """The containers of the last full pass's listing, by job ID."""
        self._known = {c.id: (job_id, c.attempt) for job_id, c in containers.items()}

    def take(self) -> list[Ended]:
        """The ends queued since the last call."""
        with self._lock:
            ended, self._ended = self._ended, []
        return ended

    def start(self) -> None:
        """Watch on a daemon thread of its own (nothing when there is no source)."""
        if self.source is not None:
            threading.Thread(target=self.follow, name="exit-files", daemon=True).start()

    def follow(self) -> None:
        """Queue every known container's end until stopped; reopen a broken watch."""
        assert self.source is not None
        said = None
        while not self.stopped.is_set():
            why = self.source.open()
            if why is not None:
                if why != said:
                    log.info("job ends are noticed from Podman's events only: %s", why)
                    said = why
                self.stopped.wait(REOPEN_EVERY)
                continue
            said = None
            try:
                while not self.stopped.is_set():
                    self._queue(self.source.read(READ_TIMEOUT))
            except OSError as exc:
                log.info("exit files: %s; watching again", exc)
            finally:
                self.source.close()

    def finish(
        self, store: Store, workers: Workers, finisher: Finisher, wake: Callable[[], None]
    ) -> None:
        """Hand the pool the finish of each queued end still active and not busy.

        Runs on the loop's thread, as a full pass does, so nothing else starts
        work on these jobs meanwhile. A busy job is left alone (its work's end
        wakes a full pass), a job removed meanwhile skipped; when the database
        cannot be read, ``wake`` asks for a full pass (which reports it).
        """
        busy = workers.busy()
        for end in self.take():
            if end.job_id in busy:
                continue
            try:
                job = store.get(end.job_id)
            except NoSuchJob:
                continue
            except Exception:
                log.exception("reading job %s failed; a full pass follows", end.job_id)
                wake()
                return
            if job["state"] not in ACTIVE or end.attempt not in (None, job["attempt"]):
                continue
            container = ContainerState(
                id=end.container_id,
                name=container_name(end.job_id),
                job_id=end.job_id,
                attempt=end.attempt,
                status="exited",
            )
            workers.submit(end.job_id, finisher.finish, job, container)

    def _queue(self, container_ids: list[str]) -> None:
        known = self._known
        ended = [Ended(*known[c], c) for c in container_ids if c in known]
        if ended:
            with self._lock:
                self._ended.extend(ended)
            self.notify()

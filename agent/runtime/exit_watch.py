"""The end of a job noticed at once: conmon's exit files and ``died`` events, turned
into targeted finishes.

Podman's ``died`` event reaches the agent 200-600 ms after a container's
process ended (``agent.adapters.podman.exits`` says why). This thread
watches the exit files instead, reads each at once (Podman's cleanup removes
it soon after) and queues the end of the job whose container it is; the loop
finishes exactly those (``finish``), without a full pass. A ``died`` event is
queued the same way (``died``), with no exit status when the file is gone
already: the finish then asks Podman. The periodic resync stays the safety
net when the directory cannot be watched or a notice is missed.

A container is known from the last full pass's listing (``known``) or from
the launch that made it (``expect``). An exit file of a container not known
yet is kept a while (``UNMATCHED_KEEP`` of them): a short job's container may
end before its launch's reply, and ``expect`` then finds its end waiting. An
end whose job has work in flight stays queued until that work is done (the
work's end wakes the loop). Never reads or changes a job itself, except
through ``finish``, on the loop's thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.adapters.podman import LABEL_ATTEMPT, LABEL_JOB, ContainerState
from agent.adapters.podman.exits import ExitStatus
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
#: How many exit files of containers not known (yet) are kept for ``expect``:
#: the directory is the user's, so other containers' ends show up there too.
UNMATCHED_KEEP = 256


@dataclass(frozen=True)
class Ended:
    """The container of one attempt of a job has exited."""

    job_id: str
    attempt: int | None
    container_id: str
    #: What its exit file said; None: ask Podman (the file was gone).
    status: ExitStatus | None = None
    #: When (wall clock) the agent learnt of it: the attempt's ``ended_at``.
    noticed_at: float | None = None


class ExitWatch:
    """Follows the exit files on a thread of its own and queues the ends of known jobs.

    Args:
        source: the exits directory's watch (None: not watched; the loop
            relies on the event stream).
        notify: wakes the loop for the queued ends (not a full pass).
        stopped: set when the agent stops.
        clock: the wall-clock time an end is noticed at.
    """

    def __init__(
        self,
        source: ExitSource | None,
        *,
        notify: Callable[[], None],
        stopped: threading.Event,
        clock: Callable[[], float] = time.time,
    ):
        self.source = source
        self.notify = notify
        self.stopped = stopped
        self.clock = clock
        # Replaced whole on each change (the thread reads it without the lock).
        self._known: dict[str, tuple[str, int | None]] = {}
        #: Each job's container among them, by job ID.
        self._ids: dict[str, str] = {}
        #: The containers launches made since the last listing.
        self._made: dict[str, tuple[str, int | None]] = {}
        #: Exit files of containers not known (yet): what each said, and when.
        self._unmatched: collections.OrderedDict[str, tuple[ExitStatus | None, float]]
        self._unmatched = collections.OrderedDict()
        self._ended: list[Ended] = []
        self._lock = threading.Lock()

    def known(self, containers: dict[str, ContainerState]) -> None:
        """The containers of the last full pass's listing, by job ID.

        A container a launch made since the previous listing is kept too: it
        may have been made after this listing was read.
        """
        listed = {c.id: (job_id, c.attempt) for job_id, c in containers.items()}
        with self._lock:
            self._known = {**self._made, **listed}
            self._made = {}
            self._ids = {job_id: cid for cid, (job_id, _) in self._known.items()}

    def expect(self, job_id: str, attempt: int, container_id: str) -> None:
        """A launch made this container: watch for its end (queued now if it came already)."""
        with self._lock:
            self._made[container_id] = (job_id, attempt)
            self._known = {**self._known, container_id: (job_id, attempt)}
            self._ids = {**self._ids, job_id: container_id}
            if container_id in self._unmatched:
                status, noticed_at = self._unmatched.pop(container_id)
                self._ended.append(Ended(job_id, attempt, container_id, status, noticed_at))

    def container_of(self, job_id: str) -> str | None:
        """The ID of the job's container as last listed or made, or None."""
        return self._ids.get(job_id)

    def listed(self, container: ContainerState) -> ExitStatus | None:
        """How an exited container a full pass listed ended: the listing's exit code
        and the OOM mark beside its bundle; None when either is unknown (ask Podman)."""
        if self.source is None or container.exit_code is None:
            return None
        oom = self.source.oom(container.id)
        return None if oom is None else ExitStatus(exit_code=container.exit_code, oom=oom)

    def died(self, event: dict) -> None:
        """Queue the end a ``died`` event of one of our containers tells (others are ignored)."""
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        container_id, job_id = actor.get("ID") or event.get("id"), attributes.get(LABEL_JOB)
        if (event.get("Status") or event.get("Action")) != "died" or not container_id or not job_id:
            return
        try:
            attempt: int | None = int(attributes.get(LABEL_ATTEMPT))
        except (TypeError, ValueError):
            attempt = None
        status = self.source.status(container_id) if self.source is not None else None
        with self._lock:
            self._ended.append(Ended(job_id, attempt, container_id, status, self.clock()))
        self.notify()

    def pending(self) -> bool:
        """Whether ends are queued (some may wait for their job's work to finish)."""
        with self._lock:
            return bool(self._ended)

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
        """Hand the pool the finish of each queued end still active; keep a busy job's.

        Runs on the loop's thread, as a full pass does, so nothing else starts
        work on these jobs meanwhile. The end of a job with work in flight
        stays queued (the work's end wakes the loop), a job removed meanwhile
        is skipped; when the database cannot be read, ``wake`` asks for a full
        pass (which reports it).
        """
        busy = workers.busy()
        with self._lock:
            ended, self._ended = self._ended, []
        kept = [end for end in ended if end.job_id in busy]
        try:
            for end in ended:
                if end.job_id not in busy:
                    self._finish_one(end, store, workers, finisher)
        except Exception:
            log.exception("reading a job whose container ended failed; a full pass follows")
            wake()
        finally:
            if kept:
                with self._lock:
                    self._ended[:0] = kept

    def _finish_one(self, end: Ended, store: Store, workers: Workers, finisher: Finisher) -> None:
        try:
            job = store.get(end.job_id)
        except NoSuchJob:
            return
        if job["state"] not in ACTIVE or end.attempt not in (None, job["attempt"]):
            return
        container = ContainerState(
            id=end.container_id,
            name=container_name(end.job_id),
            job_id=end.job_id,
            attempt=end.attempt,
            status="exited",
            exit_code=None if end.status is None else end.status.exit_code,
        )
        workers.submit(end.job_id, finisher.finish, job, container, end.status, end.noticed_at)

    def _queue(self, container_ids: list[str]) -> None:
        assert self.source is not None
        ended = []
        for container_id in container_ids:
            status = self.source.status(container_id)  # now: cleanup removes the file soon
            noticed_at = self.clock()
            with self._lock:
                mapped = self._known.get(container_id)
                if mapped is None:
                    self._unmatched[container_id] = (status, noticed_at)
                    while len(self._unmatched) > UNMATCHED_KEEP:
                        self._unmatched.popitem(last=False)
                    continue
                ended.append(Ended(*mapped, container_id, status, noticed_at))
        if ended:
            with self._lock:
                self._ended.extend(ended)
            self.notify()

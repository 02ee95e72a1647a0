"""Wake-ups for the followers of job output: a line written, or the job changed.

A follower (``job.logs`` with ``follow``, agent/api/logs.py) reads an
attempt's log to its end and then waits. It must wake as soon as conmon
appends a record (so a line reaches ``chooctl logs -f`` at once), and when its
job changes state (its container ended, a new attempt began, so it can tell
the end). ``OutputWakes`` serves every follower of every job with one inotify
instance (agent/adapters/inotify.py; a user has about 128 of them) and two
threads: one reads the inotify events (``IN_MODIFY``/``IN_CLOSE_WRITE`` on
each watched log) and one the change feed, and each wakes the waiters their
event is about. A follower adds no thread and no instance, only a watch on the
log it is at (shared with the other followers of that log).

A wake-up only says "look again": a follower always reads the file itself,
and waits at most ``FALLBACK`` seconds, so a missed event only delays it.
Where inotify cannot be had (or the threads were not started), waits last at
most ``POLL``: the follower polls as it did before inotify. This module never
reads a log or decides anything about a job.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from agent.adapters.inotify import IN_CLOSE_WRITE, IN_IGNORED, IN_MODIFY, IN_Q_OVERFLOW, Inotify
from agent.runtime.changes import ChangeFeed

log = logging.getLogger("choo-agent.follow")

#: What a log watch reports: conmon appended (modify), or closed it (the attempt ended).
MASK = IN_MODIFY | IN_CLOSE_WRITE
#: The longest a waiter sleeps with inotify: a missed event delays a follower this long at most.
FALLBACK = 0.5
#: The longest a waiter sleeps without inotify (a poll of the file).
POLL = 0.01
#: How often the threads look whether they are stopped (seconds).
_TICK = 0.2


class OutputWakes:
    """The agent's one source of follower wake-ups.

    Args:
        feed: the change feed the store publishes job events to.
    """

    def __init__(self, feed: ChangeFeed):
        self.feed = feed
        self._lock = threading.Lock()
        self._inotify: Inotify | None = None
        #: The waiters of each watch descriptor, and of each job.
        self._by_wd: dict[int, set[Waiter]] = {}
        self._by_job: dict[str, set[Waiter]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def watching(self) -> bool:
        """Whether waits end on inotify events (else they poll every ``POLL`` s)."""
        return self._inotify is not None

    def start(self) -> None:
        """Open the inotify instance and start both threads (without inotify,
        only the feed's: a warning says why, and followers poll)."""
        inotify = Inotify()
        try:
            inotify.open()
        except OSError as exc:
            log.warning("no inotify for job output (%s): followers poll the logs", exc.strerror)
        else:
            self._inotify = inotify
            self._threads.append(threading.Thread(target=self._read_inotify, name="follow-inotify"))
        self._threads.append(threading.Thread(target=self._read_feed, name="follow-feed"))
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the threads (each notices within ``_TICK``) and close the instance."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        with self._lock:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None
            self._by_wd.clear()

    def waiter(self, job_id: str) -> Waiter:
        """A waiter for one follower of ``job_id`` (close it when done; a context manager)."""
        waiter = Waiter(self, job_id)
        with self._lock:
            self._by_job.setdefault(job_id, set()).add(waiter)
        return waiter

    # -- for Waiter --------------------------------------------------------------

    def _watch(self, waiter: Waiter, path: Path) -> int | None:
        """Add ``waiter`` to the watch of ``path``; its descriptor (None: not watched)."""
        with self._lock:
            if self._inotify is None:
                return None
            try:
                wd = self._inotify.add_watch(path, MASK)
            except OSError:
                return None  # not made yet (or gone): the feed and the fallback wake it
            self._by_wd.setdefault(wd, set()).add(waiter)
            return wd

    def _unwatch(self, waiter: Waiter, wd: int) -> None:
        with self._lock:
            waiters = self._by_wd.get(wd)
            if waiters is None:
                return
            waiters.discard(waiter)
            if not waiters:
                del self._by_wd[wd]
                if self._inotify is not None:
                    self._inotify.remove_watch(wd)

    def _forget(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._by_job.get(waiter.job_id, set())
            waiters.discard(waiter)
            if not waiters:
                self._by_job.pop(waiter.job_id, None)

    # -- the threads ---------------------------------------------------------------

    def _read_inotify(self) -> None:
        inotify = self._inotify
        while not self._stop.is_set() and inotify is not None:
            try:
                events = inotify.read(_TICK)
            except OSError:  # closed by stop()
                return
            woken: set[Waiter] = set()
            with self._lock:
                for event in events:
                    if event.mask & IN_Q_OVERFLOW:  # events were lost: everyone looks again
                        woken.update(w for ws in self._by_wd.values() for w in ws)
                    elif event.mask & IN_IGNORED:  # the log was removed (or replaced)
                        gone = self._by_wd.pop(event.wd, set())
                        for waiter in gone:
                            waiter.lost(event.wd)
                        woken.update(gone)
                    else:
                        woken.update(self._by_wd.get(event.wd, ()))
            for waiter in woken:
                waiter.wake()

    def _read_feed(self) -> None:
        seq = self.feed.seq
        while not self._stop.is_set():
            self.feed.wait_after(seq, _TICK)
            newest, events = self.feed.since(seq)
            missed = newest - seq > len(events)  # fell behind the feed's window
            seq = newest
            jobs = {event.get("job_id") for event in events}
            with self._lock:
                if missed:
                    woken = {w for ws in self._by_job.values() for w in ws}
                else:
                    woken = {w for job in jobs for w in self._by_job.get(job, ())}
            for waiter in woken:
                waiter.wake()


class Waiter:
    """What one follower waits on: its job's events and the log it is at.

    Made by ``OutputWakes.waiter``. ``watch`` before reading the log and
    ``wait`` after reading it to its end: a write in between has already
    woken the waiter, so nothing written is slept through.
    """

    def __init__(self, wakes: OutputWakes, job_id: str):
        self.wakes = wakes
        self.job_id = job_id
        self._woken = threading.Event()
        self._path: Path | None = None
        self._wd: int | None = None

    def watch(self, path: Path) -> None:
        """Wake on writes to ``path`` (instead of the log watched before).

        A log not made yet is watched at a later call (the job's events wake
        the waiter meanwhile)."""
        if path == self._path and self._wd is not None:
            return
        self._drop_watch()
        self._path = path
        self._wd = self.wakes._watch(self, path)

    def wait(self, timeout: float) -> None:
        """Sleep until woken or ``timeout`` seconds pass (``FALLBACK`` is the
        usual one; without inotify, at most ``POLL``)."""
        self._woken.wait(timeout if self.wakes.watching else min(timeout, POLL))
        self._woken.clear()  # before the caller reads: a later write wakes it again

    def wake(self) -> None:
        """End the current (or next) ``wait``."""
        self._woken.set()

    def lost(self, wd: int) -> None:
        """The watch ``wd`` ended with its file: the next ``watch`` adds a new one."""
        if self._wd == wd:
            self._wd = None

    def close(self) -> None:
        """Stop waking this follower."""
        self._drop_watch()
        self.wakes._forget(self)

    def _drop_watch(self) -> None:
        if self._wd is not None:
            self.wakes._unwatch(self, self._wd)
        self._path, self._wd = None, None

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

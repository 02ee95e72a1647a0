"""The shipper's wake-ups: which attempts' logs were written, from inotify.

With every running job's log to copy, looking at each file every few
milliseconds costs the agent CPU while nothing happens. Instead the shipper
(agent/runtime/shipper.py) waits here: one inotify instance
(agent/adapters/inotify.py) watches the logs directory (a job's directory
made: its first attempt is coming) and the directory of each job it follows
(an attempt's log made, written, cut or closed); ``wait`` marks the attempts
whose logs changed and names the jobs with a log not followed yet, and
``take`` gives a round the attempts to look at. A directory watch covers every
attempt of its job, so one watch per running job is enough.

A wake-up only says "look again": the shipper reads the files itself, and
a round looks at every file each ``FALLBACK`` seconds (and after the kernel's
queue overflowed), so a missed event only delays the copy. Where inotify
cannot be had, ``open`` says so, every round looks at every file, and the
shipper polls. This module never reads a log and decides nothing about a job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container
from pathlib import Path

from agent.adapters.inotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_IGNORED,
    IN_MODIFY,
    IN_Q_OVERFLOW,
    Inotify,
)

log = logging.getLogger("choo-agent.shipper")

#: Seconds between rounds that look at every followed log (a missed event
#: delays the copy this long at most).
FALLBACK = 1.0
#: A followed attempt: (job ID, attempt).
Key = tuple[str, int]
#: What a job directory's watch reports: an attempt's log made, appended to
#: (or cut in place), or closed by conmon.
JOB_MASK = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE


class LogWakes:
    """The inotify watches of the logs directory and of each followed job's.

    Args:
        root: the directory holding one directory per job (``JobLogs.root``).
    """

    def __init__(self, root: Path):
        self.root = root
        self._inotify: Inotify | None = None
        self._root_wd: int | None = None
        #: job ID -> its directory's watch, and back.
        self._wds: dict[str, int] = {}
        self._jobs: dict[int, str] = {}
        #: The attempts whose logs changed since the last round (None: every one).
        self._dirty: set[Key] | None = None
        self._full_at = 0.0

    @property
    def watching(self) -> bool:
        """Whether writes wake the shipper (else it must poll every file)."""
        return self._inotify is not None

    def open(self) -> bool:
        """Make the instance and watch the logs directory (made if missing).

        Returns:
            Whether it watches; if not, a warning said why (the shipper polls).
        """
        inotify = Inotify()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            inotify.open()
            self._root_wd = inotify.add_watch(self.root, IN_CREATE)
        except OSError as exc:
            inotify.close()
            log.warning("no inotify for the shipper (%s): it polls the jobs' logs", exc.strerror)
            return False
        self._inotify = inotify
        return True

    def close(self) -> None:
        """Close the instance (every watch ends with it)."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._wds.clear()
        self._jobs.clear()

    def watch(self, job_id: str) -> None:
        """Wake on the logs of ``job_id`` (a directory not made yet is watched
        once the logs directory's watch reports it). A watch that cannot be
        added for another reason (``fs.inotify.max_user_watches`` reached)
        turns inotify off: the shipper polls, as without it."""
        if self._inotify is None or job_id in self._wds:
            return
        try:
            wd = self._inotify.add_watch(self.root / job_id, JOB_MASK)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning(
                "cannot watch the logs of job %s (%s): the shipper polls the jobs' logs",
                job_id,
                exc.strerror,
            )
            self.close()
            return
        self._wds[job_id] = wd
        self._jobs[wd] = job_id

    def unwatch(self, job_id: str) -> None:
        """Stop waking on the logs of ``job_id`` (none of its attempts is followed)."""
        wd = self._wds.pop(job_id, None)
        if wd is not None:
            self._jobs.pop(wd, None)
            if self._inotify is not None:
                self._inotify.remove_watch(wd)

    def wait(self, timeout: float, followed: Container[Key]) -> list[str]:
        """Sleep until a watched log changes or ``timeout`` seconds pass, and
        mark the ``followed`` attempts whose logs changed (``take``).

        Returns:
            The jobs to look at again: a directory or an attempt's log was
            made that no followed attempt is.
        """
        if self._inotify is None:
            return []
        try:
            events = self._inotify.read(timeout)
        except OSError:
            return []
        new: dict[str, None] = {}
        for event in events:
            if event.mask & IN_Q_OVERFLOW:  # events were lost: every file is looked at
                self.mark(None)
            elif event.wd == self._root_wd:
                if event.mask & IN_CREATE:
                    new[event.name] = None
            elif event.mask & IN_IGNORED:  # its directory went with the job
                job_id = self._jobs.pop(event.wd, None)
                if job_id is not None:
                    self._wds.pop(job_id, None)
            elif (job_id := self._jobs.get(event.wd)) is not None:
                number = _attempt(event.name)
                if (job_id, number) in followed:
                    self.mark((job_id, number))
                elif number is not None:
                    new[job_id] = None
        return list(new)

    def mark(self, key: Key | None) -> None:
        """Have the next round look at the attempt ``key`` (None: at every one)."""
        if key is None:
            self._dirty = None
        elif self._dirty is not None:
            self._dirty.add(key)

    def take(self) -> set[Key] | None:
        """The attempts the round starting now looks at; None: every one (no
        inotify, events were lost, or it is ``FALLBACK`` seconds since the last
        such round)."""
        dirty, self._dirty = self._dirty, set()
        now = time.monotonic()
        if dirty is None or self._inotify is None or now - self._full_at >= FALLBACK:
            self._full_at = now
            return None
        return dirty


def _attempt(name: str) -> int | None:
    """The attempt whose log ``name`` is (``<attempt>.log``; None: another file)."""
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "log" and stem.isdigit() else None

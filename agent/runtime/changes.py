"""A feed of committed job events that threads can wait on.

The store publishes every event here *after* its transaction commits; waiters
(log followers, ``events.subscribe``, the shipper, the notifier) block on
``wait_after`` instead of polling the database, and a waiter for one job
(``job.wait``) on ``wait_job``, which only that job's events wake: with fifty
clients waiting, an event wakes one of them, not fifty, and nobody reads the
database under the feed's lock. It holds a bounded window of recent events so
a subscriber that falls briefly behind misses nothing.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any


class ChangeFeed:
    def __init__(self, window: int = 4096):
        self._cond = threading.Condition()
        self._events: collections.deque[tuple[int, dict[str, Any]]] = collections.deque(
            maxlen=window
        )
        self._seq = 0
        #: job ID -> (the condition its waiters wait on, how many wait).
        self._jobs: dict[str, tuple[threading.Condition, int]] = {}

    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def publish(self, event: dict[str, Any]) -> None:
        self.publish_many([event])

    def publish_many(self, events: list[dict[str, Any]]) -> None:
        """Publish ``events`` in order, waking the waiters once (a bulk removal's)."""
        if not events:
            return
        with self._cond:
            for event in events:
                self._seq += 1
                self._events.append((self._seq, event))
                waiting = self._jobs.get(event.get("job_id"))  # type: ignore[arg-type]
                if waiting is not None:
                    waiting[0].notify_all()
            self._cond.notify_all()

    def since(self, seq: int) -> tuple[int, list[dict[str, Any]]]:
        """Return the newest sequence number and the events after ``seq``."""
        with self._cond:
            return self._seq, [e for s, e in self._events if s > seq]

    def wait_job(self, job_id: str, *, after: int, timeout: float) -> int | None:
        """Block until an event of ``job_id`` newer than ``after`` is published, or
        ``timeout`` passes; only that job's events wake the caller.

        Args:
            job_id: the job.
            after: a sequence number the caller has looked at the job since
                (``seq`` before it read the job).
            timeout: seconds to wait at most.

        Returns:
            The newest sequence number once the job has moved (or may have: the
            window no longer reaches back to ``after``): read the job again.
            None when the time ran out with no event of the job.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            condition, count = self._jobs.get(job_id) or (threading.Condition(self._cond), 0)
            self._jobs[job_id] = (condition, count + 1)
            try:
                while not self._moved(job_id, after):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    condition.wait(remaining)
                return self._seq
            finally:
                condition, count = self._jobs[job_id]
                if count == 1:
                    del self._jobs[job_id]
                else:
                    self._jobs[job_id] = (condition, count - 1)

    def _moved(self, job_id: str, after: int) -> bool:
        """Whether the window holds an event of ``job_id`` after ``after`` (or has lost some)."""
        for seq, event in reversed(self._events):
            if seq <= after:
                return False
            if event.get("job_id") == job_id:
                return True
        return bool(self._events) and self._events[0][0] > after + 1

    def wait_after(self, seq: int, timeout: float) -> int:
        """Block until an event newer than ``seq`` exists or ``timeout`` passes."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq, timeout)
            return self._seq

    def relay(
        self,
        wanted: Callable[[dict[str, Any]], bool],
        emit: Callable[[dict[str, Any]], None],
        *,
        deadline: float,
        count: int | None = None,
        closed: Callable[[], bool] = lambda: False,
    ) -> tuple[int, bool]:
        """Pass each event published from now on that is ``wanted`` to ``emit``.

        Args:
            wanted: which events to pass on.
            emit: called with each of them, in order.
            deadline: a ``time.monotonic()`` time to stop at.
            count: stop after this many (None: no limit).
            closed: stop as soon as this holds (the client hung up).

        Returns:
            How many were passed on, and whether any may have been missed (the
            relay fell more than the feed's window behind).
        """
        seq = self.seq
        sent = 0
        missed = False
        while not closed() and time.monotonic() < deadline:
            self.wait_after(seq, min(0.5, max(0.0, deadline - time.monotonic())))
            newest, events = self.since(seq)
            missed = missed or newest - seq > len(events)
            seq = newest
            for event in events:
                if wanted(event):
                    emit(event)
                    sent += 1
                    if count is not None and sent >= count:
                        return sent, missed
        return sent, missed

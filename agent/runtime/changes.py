"""A feed of committed job events that threads can wait on.

The store publishes every event here *after* its transaction commits; waiters
(``job.wait``, log followers, ``events.subscribe``, the controller) block on
``wait_for`` instead of polling the database. It holds a bounded window of
recent events so a subscriber that falls briefly behind misses nothing.
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
            self._cond.notify_all()

    def since(self, seq: int) -> tuple[int, list[dict[str, Any]]]:
        """Return the newest sequence number and the events after ``seq``."""
        with self._cond:
            return self._seq, [e for s, e in self._events if s > seq]

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``predicate()`` holds (checked after every event) or time runs out.

        Returns:
            The last value of ``predicate()``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate():
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # Wake at least once a second so a predicate that depends on
                # something other than events (a closed socket) is re-checked.
                self._cond.wait(1.0 if remaining is None else min(remaining, 1.0))

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

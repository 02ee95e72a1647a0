"""The agent's own writers, one at a time, in turn: a lock that gives up only when
the queue stops moving.

SQLite lets one write transaction in at a time, and its busy handler polls
with growing sleeps, so the agent queues its writers on a lock first. How long
a writer may wait for its turn is the question this module answers. Waiting a
fixed time (``busy_timeout``) fails a writer that is merely far back in a long
queue: 200 clients submitting at once on a loaded box each wait behind up to
199 synced commits, which can take longer than 10 s while every one of them
goes through. Waiting forever holds a thread (the loop's, a client's) for
minutes when the database is locked from outside and each writer ahead waits
out SQLite's own timeout in turn. So a writer waits as long as the turns keep
passing, and gives up once no turn has gone through for ``patience`` seconds:
the writers are stuck, which is what a lock held from outside looks like. A
turn that failed on SQLite's lock is not one that went through: behind a lock
held from outside, every waiter gives up within ``patience`` of queueing.

Turns are handed over in arrival order (``threading.Condition`` wakes its
oldest waiter), and the holder may take the lock again (peewee's ``atomic()``
blocks nest). This module never touches SQLite.
"""

from __future__ import annotations

import threading
import time


class WriterTurns:
    """A re-entrant lock whose waiters give up only when it stops changing hands.

    Args:
        patience: seconds a waiter waits without any turn passing before it
            gives up.
    """

    def __init__(self, patience: float):
        self.patience = patience
        self._mutex = threading.Lock()
        self._holder: int | None = None
        self._depth = 0
        #: How many turns went through: a waiter that sees it grow starts its patience anew.
        self._turns = 0
        #: The waiters, oldest first, each woken on its own when its turn comes
        #: (one wake per turn, not one per waiter).
        self._queue: list[threading.Condition] = []

    def acquire(self) -> bool:
        """Take the lock, waiting while the turns pass.

        Returns:
            True once held; False when no turn went through for ``patience`` seconds.
        """
        me = threading.get_ident()
        with self._mutex:
            if self._holder == me:
                self._depth += 1
                return True
            busy = self._holder is not None or self._queue
            if busy and not self._wait_turn():
                return False
            self._holder = me
            self._depth = 1
            return True

    def _wait_turn(self) -> bool:
        """Queue and wait (the mutex held) until first in line with the lock free."""
        turn = threading.Condition(self._mutex)
        self._queue.append(turn)
        seen = self._turns
        deadline = time.monotonic() + self.patience
        while self._holder is not None or self._queue[0] is not turn:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self._turns == seen:
                    self._queue.remove(turn)
                    self._wake_next()  # had it been first, the next may go now
                    return False
                seen = self._turns
                deadline = time.monotonic() + self.patience
                continue
            turn.wait(remaining)
        self._queue.pop(0)
        return True

    def _wake_next(self) -> None:
        if self._holder is None and self._queue:
            self._queue[0].notify()

    def release(self, *, went_through: bool = True) -> None:
        """Give the lock back (its last nested hold hands the turn to the next writer).

        Args:
            went_through: the turn did its work (False: it was stuck, e.g. on
                SQLite's lock, and the waiters' patience runs on).

        Raises:
            RuntimeError: this thread does not hold it.
        """
        with self._mutex:
            if self._holder != threading.get_ident():
                raise RuntimeError("release of a writer turn this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            self._holder = None
            self._turns += went_through
            self._wake_next()

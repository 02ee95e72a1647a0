"""The loop's clocks: wall-clock times from the database, followed on the monotonic clock.

The database records wall-clock times (``started_at``, ``stop_sent_at``,
``not_before``): users read them, and they survive a restart. But a deadline
counted on the wall clock fires early when the clock steps forward (NTP), or
hours late when it steps back. So each recorded time is *anchored* once on
the monotonic clock: exactly, when this process saw the event itself (it
calls ``mark``), or, for a time recorded before a restart (or by a part that
does not mark), by its distance from the wall clock's now when the loop first
reads it. From then on only the monotonic clock counts. Never reads or
writes the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class Deadlines:
    """Monotonic anchors of recorded wall-clock times, per job.

    Thread-safe.

    Args:
        wall: the wall clock (the time the database records).
        monotonic: the clock deadlines are counted on.
    """

    def __init__(self, wall: Callable[[], float], monotonic: Callable[[], float]):
        self.wall = wall
        self.monotonic = monotonic
        self._anchors: dict[tuple[str, Hashable], float] = {}
        # Workers mark (after a start, a stop signal) while the loop reads.
        self._lock = threading.Lock()

    def mark(self, job_id: str, key: Hashable) -> float:
        """Anchor an event of a job at the monotonic now (the agent just saw it happen).

        Args:
            job_id: the job.
            key: which event, e.g. ``("started", attempt)``.

        Returns:
            The anchor.
        """
        with self._lock:
            anchor = self._anchors[job_id, key] = self.monotonic()
        return anchor

    def marked(self, job_id: str, key: Hashable) -> float | None:
        """The anchor ``mark`` (or ``anchor``) set for an event, or None if none did."""
        with self._lock:
            return self._anchors.get((job_id, key))

    def anchor(self, job_id: str, key: Hashable, recorded: float) -> float:
        """The monotonic time of an event recorded at wall time ``recorded``.

        Fixed the first time it is asked for (or by ``mark``): later steps of
        the wall clock do not move it. Put the recorded value in ``key`` when
        it can change (a new ``not_before``), so a new value gets a new anchor.

        Args:
            job_id: the job.
            key: which event.
            recorded: its wall-clock time, as the database has it.

        Returns:
            The event's (past or future) time on the monotonic clock.
        """
        with self._lock:
            found = self._anchors.get((job_id, key))
            if found is None:
                found = self._anchors[job_id, key] = self.monotonic() - (self.wall() - recorded)
        return found

    def forget(self, live: set[str]) -> None:
        """Drop the anchors of jobs that have ended.

        Args:
            live: the IDs of the jobs still to follow.
        """
        with self._lock:
            for entry in [entry for entry in self._anchors if entry[0] not in live]:
                del self._anchors[entry]

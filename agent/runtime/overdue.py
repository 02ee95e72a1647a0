"""Whether a running job is past its ``timeout`` or its ``idle_timeout`` (stalled).

The loop asks ``Overdue.check`` for each running job without a stop under way.
A job is stalled when its attempt's log file (agent/adapters/joblogs.py, which
Podman appends each line to) has not grown for ``idle_timeout`` seconds; the
time is counted on the monotonic clock from the last growth this agent saw (or
from when it first looked: after a restart the window starts afresh). Never
sends a signal: the controller stops the job, the outcome rule ends it.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.adapters.joblogs import JobLogs
from agent.protocol.states import Reason
from agent.runtime.deadlines import Deadlines


class Overdue:
    """Timeouts and stalls of running jobs.

    Args:
        logs: each attempt's log file.
        deadlines: the loop's monotonic anchors (a timeout counts from the start).
    """

    def __init__(self, logs: JobLogs, deadlines: Deadlines):
        self.logs = logs
        self.deadlines = deadlines
        #: job ID -> (attempt, log size, monotonic time the size was first seen).
        self._seen: dict[str, tuple[int, int, float]] = {}

    def check(self, job: dict, mono: float) -> tuple[str | None, float | None]:
        """Why to stop the job now, or when to look again.

        Returns:
            ``("timeout" or "stalled", None)`` when it is overdue, else
            ``(None, when)``: the monotonic time its next limit falls due
            (None: it has neither).
        """
        job_id, attempt, spec = job["id"], job["attempt"], job["spec"]
        due: list[float] = []
        timeout = spec.get("timeout")
        if timeout and job["started_at"]:
            started = self.deadlines.anchor(job_id, ("started", attempt), job["started_at"])
            if mono >= started + timeout:
                return "timeout", None
            due.append(started + timeout)
        idle = spec.get("idle_timeout")
        if idle and job["started_at"]:
            quiet_since = self._quiet_since(job_id, attempt, mono)
            if mono >= quiet_since + idle:
                return Reason.STALLED.value, None
            due.append(quiet_since + idle)
        return None, min(due, default=None)

    def forget(self, known: Iterable[str]) -> None:
        """Drop what is kept of jobs not in ``known`` (ended, removed)."""
        keep = set(known)
        for job_id in [j for j in self._seen if j not in keep]:
            del self._seen[job_id]

    def _quiet_since(self, job_id: str, attempt: int, mono: float) -> float:
        try:
            size = self.logs.path(job_id, attempt).stat().st_size
        except OSError:
            size = 0  # not made yet, or gone: nothing printed that we can see
        seen = self._seen.get(job_id)
        if seen is None or seen[0] != attempt or seen[1] != size:
            self._seen[job_id] = (attempt, size, mono)
            return mono
        return seen[2]

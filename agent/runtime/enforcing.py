"""Stopping a running job when it must: a cancel, a timeout, a stall, a stop asked for.

The decision the loop makes for each running job, full pass or light one
(``controller``): SIGTERM on the first reason to stop, then SIGKILL after the
job's stop grace, repeated while the container has not exited. The signals
themselves are sent by the pool (``stops``); timeouts and stalls are
``overdue``'s. Never records a job's end (its container's exit does).
"""

from __future__ import annotations

from agent.protocol.spec import DEFAULT_STOP_TIMEOUT
from agent.runtime.deadlines import Deadlines
from agent.runtime.overdue import Overdue
from agent.runtime.stops import Stops
from agent.runtime.workers import Workers

#: How soon a SIGKILL is repeated while the container has not exited yet.
RESEND_KILL_AFTER = 1.0


class Enforcing:
    """Sends the stops running jobs call for.

    Args:
        workers: the pool the signals are sent on.
        stops: the signals, and their record.
        deadlines: the monotonic anchors of stop graces and kills.
        overdue: timeouts and stalls.
    """

    def __init__(self, workers: Workers, stops: Stops, deadlines: Deadlines, overdue: Overdue):
        self.workers = workers
        self.stops = stops
        self.deadlines = deadlines
        self.overdue = overdue

    def running(self, job: dict, container_id: str, mono: float) -> float | None:
        """Stop a cancelled, timed-out or stalled job (``overdue``), or one whose stop
        another part asked for (``stop_reason`` set, no stop sent yet: the shipper's
        ``log_limit``): SIGTERM, then SIGKILL after its grace, each sent by
        the pool.

        Args:
            job: a running job without work in flight.
            container_id: its container (an ID or its name).
            mono: the monotonic now.

        Returns:
            When (monotonic) to look at the job again (its timeout, the end of
            its stop grace, a kill to repeat), or None when it has neither.
        """
        job_id, attempt, spec = job["id"], job["attempt"], job["spec"]
        grace = spec.get("stop_timeout", DEFAULT_STOP_TIMEOUT)
        stop_reason = job["stop_reason"]
        if stop_reason is None or job["stop_sent_at"] is None:
            if stop_reason is None and job["cancel_requested"]:
                stop_reason = "cancel"
            elif stop_reason is None:
                stop_reason, due = self.overdue.check(job, mono)  # a timeout, or stalled
                if stop_reason is None:
                    return due
            self.workers.submit(job_id, self.stops.term, job, container_id, stop_reason)
            return mono + grace
        kill_at = self.deadlines.anchor(job_id, ("stop", attempt), job["stop_sent_at"]) + grace
        killed = self.deadlines.marked(job_id, ("kill", attempt))
        again = kill_at if killed is None else killed + RESEND_KILL_AFTER
        if mono < again:
            return again
        self.workers.submit(job_id, self.stops.kill, job, container_id)
        return mono + RESEND_KILL_AFTER

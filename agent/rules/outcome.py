"""How a finished attempt of a job ends (pure).

One function, ``decide``, maps what the agent knows of the job (a stop it
sent, a cancel request, the retries left) and what Podman says of the
container (its exit code and OOM flag, or that it is gone) to where the job
goes next. Like the Kubernetes job controller's ``pod_failure_policy.go``:
plain data in, a small frozen value out; the runtime applies it. Never does
I/O and never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.protocol.states import Reason, State

#: The ``stop_reason`` the agent records for a job it stops on shutdown (the
#: job's reason is then the same word).
SHUTDOWN = Reason.SHUTDOWN.value


@dataclass(frozen=True)
class Outcome:
    """Where a finished attempt takes its job.

    Attributes:
        state: ``succeeded``, ``failed`` or ``cancelled``; ``queued`` when the
            job is retried.
        reason: the job's reason (None for ``succeeded``, and for ``cancelled``
            unless the agent's shutdown stopped it: ``shutdown``); for a
            retry, why the attempt failed.
        attempt_reason: the reason recorded on the attempt itself. It differs
            from ``reason`` only for a lost container of a cancelled job: the
            job was cancelled, its attempt was lost.
    """

    state: State
    reason: Reason | None
    attempt_reason: Reason | None

    @property
    def retry(self) -> bool:
        """True when the job goes back to the queue for another attempt."""
        return self.state == State.QUEUED


def decide(
    *,
    stop_reason: str | None,
    cancel_requested: bool,
    retries_left: int,
    exit_code: int | None = None,
    oom: bool = False,
    lost: bool = False,
) -> Outcome:
    """Decide how an attempt whose container exited (or vanished) ends.

    Args:
        stop_reason: the stop the agent sent the container (``"cancel"``,
            ``"timeout"``, ``"log_limit"`` or ``"shutdown"``), or None.
        cancel_requested: a client asked to cancel the job (a stop may not
            have been sent yet).
        retries_left: how many more attempts the job may make.
        exit_code: the container's exit code (ignored when ``lost``).
        oom: the kernel's OOM killer ended the container (ignored when ``lost``).
        lost: the container is gone, removed behind the agent's back: nothing
            of how it ended can be read.

    Returns:
        The job's next state, its reason, and the attempt's reason.
    """
    # The agent stopped it on its way out: however it ended, the job did not
    # fail, and it does not run again.
    if stop_reason == SHUTDOWN:
        return Outcome(State.CANCELLED, Reason.SHUTDOWN, Reason.LOST if lost else Reason.SHUTDOWN)
    if lost:
        if stop_reason == "cancel":
            return Outcome(State.CANCELLED, None, Reason.LOST)
        # A lost attempt is retried unless the agent was already stopping it.
        if retries_left > 0 and stop_reason is None:
            return Outcome(State.QUEUED, Reason.LOST, Reason.LOST)
        return Outcome(State.FAILED, Reason.LOST, Reason.LOST)
    # A cancel wins over any failure (even a timeout's); a job that exited 0
    # before the agent sent its cancel ends on its own terms.
    if stop_reason == "cancel" or (cancel_requested and exit_code != 0):
        return Outcome(State.CANCELLED, None, None)
    if stop_reason == "timeout":
        return Outcome(State.FAILED, Reason.TIMEOUT, Reason.TIMEOUT)
    if stop_reason == "log_limit":
        return Outcome(State.FAILED, Reason.LOG_LIMIT, Reason.LOG_LIMIT)
    if exit_code == 0 and not oom:
        return Outcome(State.SUCCEEDED, None, None)
    reason = Reason.OOM if oom else Reason.EXIT
    # Only the job's own failures are retried: a timeout, a log limit or a cancel is final.
    if retries_left > 0:
        return Outcome(State.QUEUED, reason, reason)
    return Outcome(State.FAILED, reason, reason)

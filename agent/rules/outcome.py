"""How a finished attempt of a job ends (pure).

One function, ``decide``, maps what the agent knows of the job (a stop it
sent, a cancel request, the retries left) and what Podman says of the
container (its exit code and OOM flag, or that it is gone) to where the job
goes next, and ``retried`` whether a failure is retried under the spec's
``retry_on`` (by reason, and by exit code), saying why. Like the Kubernetes job
controller's ``pod_failure_policy.go``:
plain data in, a small frozen value out; the runtime applies it. Never does
I/O and never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.protocol.states import Reason, State
from agent.protocol.workflow import DEFAULT_RETRY_REASONS

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
        note: for a failed attempt, why it was or was not retried (the
            attempt's ``retry``); None when the job succeeded or was cancelled.
    """

    state: State
    reason: Reason | None
    attempt_reason: Reason | None
    #: Not compared: two outcomes are the same decision whatever their wording.
    note: str | None = field(default=None, compare=False)

    @property
    def retry(self) -> bool:
        """True when the job goes back to the queue for another attempt."""
        return self.state == State.QUEUED


def retried(
    retry_on: dict[str, Any] | None,
    reason: Reason,
    exit_code: int | None,
    retries_left: int,
    *,
    pull_timeout: bool = False,
) -> tuple[bool, str]:
    """Whether an attempt that failed for ``reason`` is retried, and why (or why not).

    Args:
        retry_on: the spec's rule (normalised: ``reasons``, ``exit_codes`` or
            None for any, ``not_exit_codes``), or None: exit, OOM and lost
            attempts are retried, nothing else.
        reason: why the attempt failed.
        exit_code: its exit code, for reason ``exit``.
        retries_left: how many more attempts the job may make.
        pull_timeout: an ``image`` failure was a pull that took too long,
            which is retried without ``retry_on`` too.

    Returns:
        ``(retry, note)``: the note says which part of the rule decided.
    """
    reasons = DEFAULT_RETRY_REASONS if retry_on is None else retry_on["reasons"]
    if retry_on is None and pull_timeout:
        reasons = (*reasons, Reason.IMAGE.value)
    if reason not in reasons:
        where = "without retry_on" if retry_on is None else "(not in retry_on.reasons)"
        return False, f"not retried: {reason} is not retried {where}"
    why = f"{reason} is retried" if retry_on is None else f"{reason} is in retry_on.reasons"
    if reason == Reason.EXIT and retry_on is not None:
        codes, excluded = retry_on["exit_codes"], retry_on["not_exit_codes"]
        if exit_code in excluded:
            return False, f"not retried: exit code {exit_code} is in retry_on.not_exit_codes"
        if codes is not None and exit_code not in codes:
            return False, f"not retried: exit code {exit_code} is not in retry_on.exit_codes"
        if codes is not None:
            why = f"exit code {exit_code} is in retry_on.exit_codes"
    if retries_left <= 0:
        return False, f"not retried: {why}, but no retries are left"
    return True, f"retried: {why} ({retries_left} retries left)"


def _failed(
    reason: Reason, exit_code: int | None, retries_left: int, retry_on: dict | None
) -> Outcome:
    retry, note = retried(retry_on, reason, exit_code, retries_left)
    return Outcome(State.QUEUED if retry else State.FAILED, reason, reason, note)


def decide(
    *,
    stop_reason: str | None,
    cancel_requested: bool,
    retries_left: int,
    exit_code: int | None = None,
    oom: bool = False,
    lost: bool = False,
    retry_on: dict[str, Any] | None = None,
) -> Outcome:
    """Decide how an attempt whose container exited (or vanished) ends.

    Args:
        stop_reason: the stop the agent sent the container (``"cancel"``,
            ``"timeout"``, ``"stalled"``, ``"log_limit"`` or ``"shutdown"``), or None.
        cancel_requested: a client asked to cancel the job (a stop may not
            have been sent yet).
        retries_left: how many more attempts the job may make.
        exit_code: the container's exit code (ignored when ``lost``).
        oom: the kernel's OOM killer ended the container (ignored when ``lost``).
        lost: the container is gone, removed behind the agent's back: nothing
            of how it ended can be read.
        retry_on: the spec's retry rule (``retried``); None: today's.

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
        # A lost attempt may be retried unless the agent was already stopping it.
        if stop_reason is None:
            return _failed(Reason.LOST, None, retries_left, retry_on)
        note = f"not retried: lost while the agent was stopping it ({stop_reason})"
        return Outcome(State.FAILED, Reason.LOST, Reason.LOST, note)
    # A cancel wins over any failure (even a timeout's); a job that exited 0
    # before the agent sent its cancel ends on its own terms.
    if stop_reason == "cancel" or (cancel_requested and exit_code != 0):
        return Outcome(State.CANCELLED, None, None)
    if stop_reason == "timeout":
        # Final unless retry_on names it.
        return _failed(Reason.TIMEOUT, exit_code, retries_left, retry_on)
    if stop_reason == Reason.STALLED:
        return _failed(Reason.STALLED, exit_code, retries_left, retry_on)
    if stop_reason == "log_limit":
        note = "not retried: log_limit is never retried"
        return Outcome(State.FAILED, Reason.LOG_LIMIT, Reason.LOG_LIMIT, note)
    if exit_code == 0 and not oom:
        return Outcome(State.SUCCEEDED, None, None)
    return _failed(Reason.OOM if oom else Reason.EXIT, exit_code, retries_left, retry_on)

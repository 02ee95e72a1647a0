"""agent.rules.outcome: how a finished attempt ends, case by case.

One row per case: what the agent knew of the job (stop sent, cancel asked,
retries left), what Podman said of the container (exit code, OOM, or gone),
and the state, job reason and attempt reason that follow.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.protocol.states import Reason, State
from agent.rules.outcome import Outcome, decide

SUCCEEDED, FAILED, CANCELLED, QUEUED = (
    State.SUCCEEDED,
    State.FAILED,
    State.CANCELLED,
    State.QUEUED,
)
EXIT, OOM, TIMEOUT, LOST = Reason.EXIT, Reason.OOM, Reason.TIMEOUT, Reason.LOST
LOG_LIMIT, SHUTDOWN = Reason.LOG_LIMIT, Reason.SHUTDOWN

# (stop_reason, cancel_requested, retries_left, exit_code, oom) -> (state, reason, attempt reason)
EXITED = [
    # the job's own end
    ((None, False, 0, 0, False), (SUCCEEDED, None, None)),
    ((None, False, 3, 0, False), (SUCCEEDED, None, None)),
    ((None, False, 0, 1, False), (FAILED, EXIT, EXIT)),
    ((None, False, 0, 137, False), (FAILED, EXIT, EXIT)),
    ((None, False, 0, None, False), (FAILED, EXIT, EXIT)),
    ((None, False, 0, 137, True), (FAILED, OOM, OOM)),
    # OOM wins over a zero exit code
    ((None, False, 0, 0, True), (FAILED, OOM, OOM)),
    # the job's own failures are retried while retries are left
    ((None, False, 1, 1, False), (QUEUED, EXIT, EXIT)),
    ((None, False, 2, 137, True), (QUEUED, OOM, OOM)),
    # a timeout is final, whatever the exit code and retries
    (("timeout", False, 0, 143, False), (FAILED, TIMEOUT, TIMEOUT)),
    (("timeout", False, 5, 137, False), (FAILED, TIMEOUT, TIMEOUT)),
    (("timeout", False, 0, 0, False), (FAILED, TIMEOUT, TIMEOUT)),
    (("timeout", False, 0, 137, True), (FAILED, TIMEOUT, TIMEOUT)),
    # output past max_log_bytes (log_limit_action = "fail") is final too, even an exit 0
    (("log_limit", False, 0, 143, False), (FAILED, LOG_LIMIT, LOG_LIMIT)),
    (("log_limit", False, 3, 0, False), (FAILED, LOG_LIMIT, LOG_LIMIT)),
    # a cancel the agent acted on is a cancel, even an exit 0
    (("cancel", True, 0, 143, False), (CANCELLED, None, None)),
    (("cancel", True, 0, 0, False), (CANCELLED, None, None)),
    (("cancel", True, 4, 1, False), (CANCELLED, None, None)),
    (("cancel", True, 0, 137, True), (CANCELLED, None, None)),
    # a cancel asked but not yet sent: a failure becomes the cancel ...
    ((None, True, 0, 1, False), (CANCELLED, None, None)),
    ((None, True, 3, 1, False), (CANCELLED, None, None)),
    ((None, True, 0, None, False), (CANCELLED, None, None)),
    # ... a clean exit that beat it stays the job's own end
    ((None, True, 0, 0, False), (SUCCEEDED, None, None)),
    # ... and so does an OOM kill that left exit code 0 (only exit != 0 is the cancel's)
    ((None, True, 0, 0, True), (FAILED, OOM, OOM)),
    # a cancel asked during a timeout's stop grace wins, unless the job exited 0
    (("timeout", True, 0, 143, False), (CANCELLED, None, None)),
    (("timeout", True, 0, 0, False), (FAILED, TIMEOUT, TIMEOUT)),
    # stopped by the agent's shutdown: cancelled, never failed, never retried,
    # whatever it exited with (143, killed after its grace, a clean 0, an OOM)
    (("shutdown", False, 0, 143, False), (CANCELLED, SHUTDOWN, SHUTDOWN)),
    (("shutdown", False, 3, 137, False), (CANCELLED, SHUTDOWN, SHUTDOWN)),
    (("shutdown", False, 3, 0, False), (CANCELLED, SHUTDOWN, SHUTDOWN)),
    (("shutdown", False, 3, 137, True), (CANCELLED, SHUTDOWN, SHUTDOWN)),
    (("shutdown", True, 2, 1, False), (CANCELLED, SHUTDOWN, SHUTDOWN)),
]

# (stop_reason, cancel_requested, retries_left) -> (state, reason, attempt reason)
LOST_CONTAINER = [
    ((None, False, 0), (FAILED, LOST, LOST)),
    ((None, False, 1), (QUEUED, LOST, LOST)),
    # a cancel asked but not yet sent does not stop a retry (the next pass
    # cancels the queued job)
    ((None, True, 2), (QUEUED, LOST, LOST)),
    ((None, True, 0), (FAILED, LOST, LOST)),
    (("cancel", True, 0), (CANCELLED, None, LOST)),
    (("cancel", True, 3), (CANCELLED, None, LOST)),
    (("timeout", False, 0), (FAILED, LOST, LOST)),
    (("timeout", False, 3), (FAILED, LOST, LOST)),
    # lost while the agent's shutdown was stopping it: the job is cancelled, not retried
    (("shutdown", False, 3), (CANCELLED, SHUTDOWN, LOST)),
    (("shutdown", True, 0), (CANCELLED, SHUTDOWN, LOST)),
]


@pytest.mark.parametrize("given, expected", EXITED, ids=str)
def test_an_exited_container(given, expected):
    stop_reason, cancel_requested, retries_left, exit_code, oom = given
    outcome = decide(
        stop_reason=stop_reason,
        cancel_requested=cancel_requested,
        retries_left=retries_left,
        exit_code=exit_code,
        oom=oom,
    )
    assert outcome == Outcome(*expected)
    assert outcome.retry == (expected[0] == QUEUED)


@pytest.mark.parametrize("given, expected", LOST_CONTAINER, ids=str)
def test_a_lost_container(given, expected):
    stop_reason, cancel_requested, retries_left = given
    outcome = decide(
        stop_reason=stop_reason,
        cancel_requested=cancel_requested,
        retries_left=retries_left,
        lost=True,
    )
    assert outcome == Outcome(*expected)
    assert outcome.retry == (expected[0] == QUEUED)


@pytest.mark.parametrize("exit_code, oom", [(0, False), (1, False), (137, True), (None, False)])
def test_a_lost_container_ignores_exit_code_and_oom(exit_code, oom):
    common = dict(stop_reason=None, cancel_requested=False, retries_left=0, lost=True)
    assert decide(**common, exit_code=exit_code, oom=oom) == decide(**common)


def test_a_retry_is_a_failure_with_retries_left():
    # The same failure, with and without retries: only the state differs.
    common = dict(stop_reason=None, cancel_requested=False, exit_code=3, oom=False)
    final, retried = decide(**common, retries_left=0), decide(**common, retries_left=1)
    assert dataclasses.replace(retried, state=FAILED) == final


def test_the_outcome_is_a_frozen_value():
    outcome = decide(stop_reason=None, cancel_requested=False, retries_left=0, exit_code=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.state = FAILED  # type: ignore[misc]

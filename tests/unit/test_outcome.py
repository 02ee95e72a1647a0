"""agent.rules.outcome: how a finished attempt ends, case by case.

One row per case: what the agent knew of the job (stop sent, cancel asked,
retries left), what Podman said of the container (exit code, OOM, or gone),
and the state, job reason and attempt reason that follow.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.protocol.states import Reason, State
from agent.protocol.workflow import RETRY_REASONS
from agent.rules.outcome import Outcome, decide, retried

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


# -- retry_on ------------------------------------------------------------------

RULE_75 = {"reasons": ["exit", "lost"], "exit_codes": [75], "not_exit_codes": []}


def exited(code, *, oom=False, retry_on=RULE_75, retries_left=2, stop_reason=None):
    return decide(
        stop_reason=stop_reason,
        cancel_requested=False,
        retries_left=retries_left,
        exit_code=code,
        oom=oom,
        retry_on=retry_on,
    )


def test_retry_on_exit_codes_retries_only_those_codes():
    assert exited(75).retry
    assert exited(75).note == "retried: exit code 75 is in retry_on.exit_codes (2 retries left)"
    assert (exited(1).state, exited(1).reason) == (FAILED, "exit")
    assert exited(1).note == "not retried: exit code 1 is not in retry_on.exit_codes"


def test_retry_on_reasons_retries_lost_but_not_oom():
    lost = decide(
        stop_reason=None, cancel_requested=False, retries_left=1, lost=True, retry_on=RULE_75
    )
    assert lost.retry and lost.note == "retried: lost is in retry_on.reasons (1 retries left)"
    oom = exited(137, oom=True)
    assert (oom.state, oom.reason) == (FAILED, "oom")
    assert oom.note == "not retried: oom is not retried (not in retry_on.reasons)"


def test_not_exit_codes_wins_over_the_rest():
    rule = {"reasons": ["exit"], "exit_codes": None, "not_exit_codes": [2]}
    assert exited(3, retry_on=rule).retry
    assert not exited(2, retry_on=rule).retry
    assert exited(2, retry_on=rule).note == "not retried: exit code 2 is in retry_on.not_exit_codes"


def test_a_timeout_is_retried_only_when_retry_on_names_it():
    assert not exited(143, stop_reason="timeout", retry_on=None).retry
    assert exited(143, stop_reason="timeout", retry_on=None).note == (
        "not retried: timeout is not retried without retry_on"
    )
    rule = {"reasons": ["timeout"], "exit_codes": None, "not_exit_codes": []}
    assert exited(143, stop_reason="timeout", retry_on=rule).retry


def test_without_retries_left_the_note_says_so():
    assert exited(75, retries_left=0).note == (
        "not retried: exit code 75 is in retry_on.exit_codes, but no retries are left"
    )
    assert exited(1, retry_on=None, retries_left=0).note == (
        "not retried: exit is retried, but no retries are left"
    )


def test_a_log_limit_is_never_retried_whatever_the_rule():
    rule = {"reasons": list(RETRY_REASONS), "exit_codes": None, "not_exit_codes": []}
    outcome = exited(143, stop_reason="log_limit", retry_on=rule)
    assert not outcome.retry and outcome.note == "not retried: log_limit is never retried"


@pytest.mark.parametrize("reason", ["image", "create"])
def test_image_and_create_failures_are_retried_when_named(reason):
    rule = {"reasons": [reason], "exit_codes": None, "not_exit_codes": []}
    assert retried(rule, reason, None, 1)[0]
    assert not retried(None, reason, None, 1)[0]

"""agent.runtime.workers: one piece of work per job at a time, errors contained,
failing work backed off per job.

Work runs on a real thread pool where the test needs it to be in flight; the
test holds it there with an Event, never with a sleep. The backoff is counted
on a fake monotonic clock, with work run inline.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.protocol.errors import PodmanUnavailable
from agent.runtime.workers import MAX_BACKOFF, Workers
from tests.unit.fakes import Clock, Inline


@pytest.fixture
def pool():
    wakes: list[None] = []
    errors: list[Exception] = []
    workers = Workers(
        ThreadPoolExecutor(max_workers=2),
        wake=lambda: wakes.append(None),
        on_error=errors.append,
    )
    yield workers, wakes, errors
    workers.shutdown()


@pytest.fixture
def inline():
    clock = Clock()
    errors: list[Exception] = []
    workers = Workers(
        Inline(), wake=lambda: None, on_error=errors.append, monotonic=clock.monotonic
    )
    return workers, clock, errors


def test_a_job_is_busy_while_its_work_is_in_flight_and_a_second_hand_off_is_dropped(pool):
    workers, wakes, _ = pool
    release = threading.Event()
    ran: list[str] = []
    assert workers.submit("A", release.wait) is True
    assert workers.submit("A", ran.append, "second") is False  # dropped: A is busy
    workers.submit("B", ran.append, "b")
    assert "A" in workers.busy()
    release.set()
    assert workers.settle(30) is True
    assert workers.busy() == set()
    assert ran == ["b"]
    assert len(wakes) == 2  # every finished piece wakes the loop


def test_settle_times_out_while_work_is_in_flight(pool):
    workers, _, _ = pool
    release = threading.Event()
    workers.submit("A", release.wait)
    assert workers.settle(0) is False
    release.set()
    assert workers.settle(30) is True


def test_errors_are_contained_and_handed_on(pool):
    workers, wakes, errors = pool

    def unavailable():
        raise PodmanUnavailable("no answer")

    def broken():
        raise RuntimeError("bug")

    workers.submit("A", unavailable)
    workers.submit("B", broken)
    assert workers.settle(30) is True
    assert sorted(str(e) for e in errors) == ["bug", "no answer"]
    assert len(wakes) == 2
    assert workers.busy() == set()


def test_work_that_keeps_failing_backs_off_doubling_to_the_cap(inline):
    workers, clock, errors = inline
    tries: list[float] = []

    def fails():
        tries.append(clock.mono)
        raise OSError(28, "No space left on device")

    start = clock.mono
    # The loop hands the work out again at every pass, ten times a second,
    # for ten simulated minutes.
    while clock.mono < start + 600:
        workers.submit("A", fails)
        clock.mono += 0.1
    gaps = [round(b - a) for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert set(gaps[7:]) == {MAX_BACKOFF}
    assert len(tries) == 15  # not the 6,000 a tight loop would make
    assert len(errors) == 15
    assert workers.next_retry() == pytest.approx(tries[-1] + MAX_BACKOFF)


def test_a_backoff_holds_one_job_only_and_a_success_resets_it(inline):
    workers, clock, _ = inline
    outcomes = iter([RuntimeError("first"), RuntimeError("second"), None, RuntimeError("third")])
    ran: list[str] = []

    def flaky():
        outcome = next(outcomes)
        if outcome:
            raise outcome
        ran.append("ok")

    workers.submit("A", flaky)
    assert workers.submit("B", ran.append, "b") is True  # B is not held by A's backoff
    assert workers.submit("A", flaky) is False  # within A's first second
    clock.mono += 1
    assert workers.submit("A", flaky) is True  # fails again: two seconds now
    clock.mono += 1.5
    assert workers.submit("A", flaky) is False
    clock.mono += 0.5
    workers.submit("A", flaky)  # succeeds
    assert ran == ["b", "ok"] and workers.next_retry() is None
    workers.submit("A", flaky)  # fails: back to one second
    assert workers.next_retry() == clock.mono + 1
    clock.mono += 1
    assert workers.next_retry() is None  # due now: nothing ahead to wake for


def test_the_backoff_of_a_job_that_is_gone_is_forgotten(inline):
    workers, clock, _ = inline

    def fails():
        raise RuntimeError("bug")

    workers.submit("A", fails)
    workers.submit("B", fails)
    workers.forget({"B"})
    assert workers.submit("A", fails) is True  # A was forgotten; B still waits
    assert workers.submit("B", fails) is False

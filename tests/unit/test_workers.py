"""agent.runtime.workers: one piece of work per job at a time, errors contained.

Work runs on a real thread pool where the test needs it to be in flight; the
test holds it there with an Event, never with a sleep.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.protocol.errors import PodmanUnavailable
from agent.runtime.workers import Workers


@pytest.fixture
def pool():
    wakes: list[None] = []
    down: list[str] = []
    workers = Workers(
        ThreadPoolExecutor(max_workers=2),
        wake=lambda: wakes.append(None),
        on_unavailable=down.append,
    )
    yield workers, wakes, down
    workers.shutdown()


def test_a_job_is_busy_while_its_work_is_in_flight_and_a_second_hand_off_is_dropped(pool):
    workers, wakes, _ = pool
    release = threading.Event()
    ran: list[str] = []
    workers.submit("A", release.wait)
    workers.submit("A", ran.append, "second")  # dropped: A is busy
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


def test_errors_are_contained_and_podman_down_is_reported(pool):
    workers, wakes, down = pool

    def unavailable():
        raise PodmanUnavailable("no answer")

    def broken():
        raise RuntimeError("bug")

    workers.submit("A", unavailable)
    workers.submit("B", broken)
    assert workers.settle(30) is True
    assert down == ["no answer"]
    assert len(wakes) == 2
    # The job is free again: its next hand-off runs.
    ran: list[str] = []
    workers.submit("B", ran.append, "again")
    assert workers.settle(30) is True and ran == ["again"]

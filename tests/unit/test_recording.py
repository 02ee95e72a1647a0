"""READY waits for the ends a full pass hands out to be recorded, not for their removals.

The controller with a real thread pool, against the fake Podman: a removal
that hangs (or a record that hangs) is held on an event the test releases,
so each assertion is about order, never about time.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from agent.runtime.recording import Recording
from agent.runtime.workers import Workers
from tests.harness import wait_until
from tests.unit import test_controller
from tests.unit.fakes import Inline
from tests.unit.test_controller import build, submit

world = test_controller.world


def _held(podman, method):
    """Make ``podman.<method>`` block until the returned event is set; also
    returns the event set once a call is blocked."""
    entered, release = threading.Event(), threading.Event()
    real = getattr(podman, method)

    def held(*args):
        entered.set()
        release.wait()
        return real(*args)

    setattr(podman, method, held)
    return entered, release


def _one_ended(world):
    """A controller on a real pool, and a job whose container has just exited 0."""
    store, podman, controller, clock = world
    controller = build(store, podman, controller.config, clock, executor=ThreadPoolExecutor(4))
    job_id = submit(store)
    controller.reconcile()
    wait_until(lambda: store.get(job_id)["state"] == "running", what="it runs")
    podman.exit(job_id, 0)
    return store, podman, controller, job_id


def test_settle_returns_once_the_ends_are_recorded_while_their_removals_go_on(world):
    store, podman, controller, clock = world
    controller = build(store, podman, controller.config, clock, executor=ThreadPoolExecutor(4))
    jobs = [submit(store) for _ in range(2)]
    controller.reconcile()
    for job_id in jobs:
        wait_until(lambda j=job_id: store.get(j)["state"] == "running", what="it runs")
    podman.exit(jobs[0], 0)
    podman.exit(jobs[1], 3)
    removing, release = _held(podman, "remove")
    try:
        controller.reconcile(admit=False)  # as the recovery pass
        assert controller.settle(30) is True
        assert (store.get(jobs[0])["state"], store.get(jobs[0])["exit_code"]) == ("succeeded", 0)
        assert (store.get(jobs[1])["state"], store.get(jobs[1])["exit_code"]) == ("failed", 3)
        wait_until(removing.is_set, what="a removal in flight")
        # The jobs stay busy while their removals run: a pass leaves them alone.
        assert controller.workers.busy() == set(jobs)
        assert controller.workers.settle(0) is False
        controller.reconcile()
        assert controller.settle(0) is True
    finally:
        release.set()
    assert controller.workers.settle(30) is True
    assert podman.containers == {}
    for job_id in jobs:  # each end recorded once
        assert [e["state"] for e in store.events(job_id)].count(store.get(job_id)["state"]) == 1


def test_settle_waits_for_a_record_in_flight(world):
    store, podman, controller, job_id = _one_ended(world)
    inspecting, release = _held(podman, "inspect")  # no exit files here: the finish inspects
    try:
        controller.reconcile(admit=False)
        wait_until(inspecting.is_set, what="the inspect in flight")
        assert controller.settle(0) is False
        assert store.get(job_id)["state"] == "running"
    finally:
        release.set()
    assert controller.settle(30) is True
    assert store.get(job_id)["state"] == "succeeded"


def test_a_record_that_fails_is_not_waited_for_and_is_handed_out_again():
    recording = Recording()
    failures = []
    workers = Workers(Inline(), wake=lambda: None, on_error=failures.append)

    def record():
        raise RuntimeError("no answer")

    recording.hand_out(workers, "J", record)
    assert recording.wait(0) is True
    assert [str(exc) for exc in failures] == ["no answer"]


def test_a_hand_off_the_pool_drops_is_not_waited_for():
    recording = Recording()
    workers = Workers(ThreadPoolExecutor(1), wake=lambda: None, on_error=lambda exc: None)
    busy, release = threading.Event(), threading.Event()
    workers.submit("J", lambda: (busy.set(), release.wait()))
    try:
        busy.wait(30)
        recording.hand_out(workers, "J", lambda: lambda: None)  # J is busy: dropped
        assert recording.wait(0) is True
    finally:
        release.set()


def test_the_cleanup_runs_after_the_record_is_counted():
    recording = Recording()
    seen = []

    def record():
        seen.append(("recording", recording.wait(0)))
        return lambda: seen.append(("cleaning", recording.wait(0)))

    recording.hand_out(Workers(Inline(), wake=lambda: None, on_error=print), "J", record)
    assert seen == [("recording", False), ("cleaning", True)]


def test_held_cleanups_wait_for_the_release_and_then_run_on_the_pool():
    recording = Recording()
    workers = Workers(ThreadPoolExecutor(2), wake=lambda: None, on_error=print)
    cleaned, release = [], threading.Event()

    def cleanup(job_id):
        release.wait(30)
        cleaned.append(job_id)

    recording.hold_cleanups()
    for job_id in ("A", "B"):
        recording.hand_out(workers, job_id, lambda j=job_id: lambda: cleanup(j))
    assert recording.wait(30) is True
    assert workers.settle(30) is True  # recorded; nothing runs on the pool meanwhile
    assert cleaned == [] and workers.busy() == set()
    recording.release_cleanups(workers)
    assert workers.busy() == {"A", "B"}  # busy again until their removals are done
    release.set()
    assert workers.settle(30) is True
    assert sorted(cleaned) == ["A", "B"]
    # Released: a cleanup runs right after its record again.
    recording.hand_out(workers, "C", lambda: lambda: cleaned.append("C"))
    assert workers.settle(30) is True
    assert cleaned[-1] == "C"


def test_the_recovery_pass_records_ends_and_leaves_their_removals_to_the_release(world):
    store, podman, controller, job_id = _one_ended(world)
    controller.hold_cleanups()
    controller.reconcile(admit=False)  # as the recovery pass
    assert controller.settle(30) is True
    assert controller.workers.settle(30) is True
    assert store.get(job_id)["state"] == "succeeded"
    assert job_id in podman.containers  # its removal is held back
    controller.release_cleanups()
    assert controller.workers.settle(30) is True
    assert podman.containers == {}

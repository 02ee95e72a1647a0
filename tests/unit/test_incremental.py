"""The incremental loop: a wake acts on its cause, without listing Podman's
containers; the full pass stays on the resync (fakes for Podman, a fake clock)."""

from __future__ import annotations

import threading

from agent.adapters.podman.exits import ExitStatus
from tests.unit.fakes import FakeExits
from tests.unit.test_controller import submit, world  # noqa: F401 (the fixture)


def counting(podman):
    """Count the fake Podman's listings."""
    listed = []
    real = podman.list_ours
    podman.list_ours = lambda: listed.append(1) or real()
    return listed


def test_a_submit_admits_without_a_listing_and_the_resync_lists(world):  # noqa: F811
    store, podman, controller, clock = world
    controller._one_wake()  # the start-up pass: full
    listed = counting(podman)
    job = submit(store)
    controller.wake()
    controller._one_wake()
    assert store.get(job)["state"] == "running"
    assert listed == [], "a submit admits from the database alone"
    clock.now += controller.config.resync_interval
    controller._one_wake()
    assert listed == [1], "the periodic resync is a full pass"


def test_a_cancel_of_a_running_job_signals_it_without_a_listing(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller._one_wake()
    listed = counting(podman)
    store.request_cancel(job)
    controller.wake()
    controller._one_wake()
    assert podman.signals and podman.signals[0][1] == "SIGTERM"
    assert listed == []


def test_a_timeout_is_kept_by_light_passes(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store, timeout=60, stop_timeout=5)
    controller.config.resync_interval = 600  # the deadline comes first
    controller._one_wake()
    listed = counting(podman)
    controller.wake()
    due = controller._one_wake()
    assert due == clock.mono + 60
    clock.now += 60
    controller._one_wake()  # at the deadline, before the resync: a light pass
    assert [sig for _, sig in podman.signals] == ["SIGTERM"]
    assert listed == []
    assert store.get(job)["stop_reason"] == "timeout"


def test_an_end_missed_by_every_notice_is_found_by_the_resync(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller._one_wake()
    podman.exit(job, 0)  # no exit file, no event
    controller.wake()
    controller._one_wake()
    assert store.get(job)["state"] == "running", "nothing told the loop"
    clock.now += controller.config.resync_interval
    controller._one_wake()
    assert store.get(job)["state"] == "succeeded"


def test_an_exit_file_finishes_only_its_job(world):  # noqa: F811
    store, podman, controller, clock = world
    first, second = submit(store), submit(store)
    controller._one_wake()
    listed = counting(podman)
    podman.exit(first, 0)
    podman.exit(second, 0)
    cid = podman.containers[first].id
    done = threading.Event()
    controller.exits.source = FakeExits(
        done, [cid], statuses={cid: ExitStatus(exit_code=0, oom=False)}
    )
    controller.exits.stopped = done
    controller.exits.follow()
    controller._one_wake()
    assert store.get(first)["state"] == "succeeded"
    assert store.get(second)["state"] == "running", "only the job whose file appeared"
    assert listed == []

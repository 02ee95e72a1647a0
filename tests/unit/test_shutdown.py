"""agent.runtime.shutdown: stop_containers_on_exit, against a fake Podman.

The real thing (real containers exiting during the stop, a real SIGTERM) is
tests/faults/test_agent_lifecycle.py; this pins the order (the reason is
recorded before any stop is sent) and the cases a real host makes hard to
hit on purpose: a container removed during its stop, and a stop Podman fails.
"""

from __future__ import annotations

import dataclasses

import pytest

from agent.config import Config
from agent.protocol.errors import PodmanUnavailable
from agent.runtime.changes import ChangeFeed
from agent.runtime.shutdown import stop_running_jobs
from agent.storage.store import Store
from tests.unit.fakes import Clock, FakePodman
from tests.unit.test_controller import build, submit


class StoppingPodman(FakePodman):
    """A fake with ``stop``: each container answers it as ``on_stop`` says."""

    def __init__(self, clock, store):
        super().__init__(clock)
        self.store = store
        self.on_stop: dict[str, str] = {}  # job ID -> "exit 143", "vanish", "fail"
        self.reasons_at_stop: dict[str, str | None] = {}
        self.stops: list[tuple[str, float]] = []

    def stop(self, name_or_id, timeout):
        job_id = next(k for k, c in self.containers.items() if c.id == name_or_id)
        self.reasons_at_stop[job_id] = self.store.get(job_id)["stop_reason"]
        self.stops.append((job_id, timeout))
        action = self.on_stop.get(job_id, "exit 143")
        if action == "fail":
            raise PodmanUnavailable("Podman did not answer when asked to stop it")
        if action == "vanish":
            self.remove(name_or_id)
        else:
            c = self.containers[job_id]
            self.containers[job_id] = dataclasses.replace(
                c, status="exited", exit_code=int(action.split()[1])
            )


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    podman = StoppingPodman(clock, store)
    config = Config(socket=tmp_path / "s", state_dir=tmp_path, max_concurrent=3)
    controller = build(store, podman, config, clock)
    yield store, podman, controller, clock
    store.close()


def _stop(store, podman, controller, clock) -> int:
    return stop_running_jobs(store, podman, controller.finisher, clock=clock, podman_timeout=5)


def test_every_running_job_ends_cancelled_shutdown_and_is_not_retried(world):
    store, podman, controller, clock = world
    ids = [submit(store, retries=3, stop_timeout=7) for _ in range(3)]
    queued = submit(store)
    controller.reconcile()
    podman.on_stop = {ids[1]: "exit 0", ids[2]: "vanish"}
    assert _stop(store, podman, controller, clock) == 3
    # The reason was on record before each stop was sent, and each had its own grace.
    assert podman.reasons_at_stop == dict.fromkeys(ids, "shutdown")
    assert sorted(t for _, t in podman.stops) == [7, 7, 7]
    for job_id in ids:
        job = store.get(job_id)
        assert (job["state"], job["reason"], job["retries_left"]) == ("cancelled", "shutdown", 3)
    attempts = [store.attempts(i)[0] for i in ids]
    assert [a["reason"] for a in attempts] == ["shutdown", "shutdown", "lost"]
    assert [store.get(i)["exit_code"] for i in ids[:2]] == [143, 0]
    assert podman.containers == {}
    assert store.get(queued)["state"] == "queued"  # never started, left to the next start


def test_a_stop_podman_fails_is_ended_by_the_next_start(world):
    store, podman, controller, clock = world
    job_id = submit(store, retries=2)
    controller.reconcile()
    podman.on_stop = {job_id: "fail"}
    _stop(store, podman, controller, clock)
    assert store.get(job_id)["state"] == "running"
    assert store.get(job_id)["stop_reason"] == "shutdown"
    # Down, the container ended after all (the kill came later); the next start's pass:
    podman.exit(job_id, 137)
    controller.reconcile()
    job = store.get(job_id)
    assert (job["state"], job["reason"]) == ("cancelled", "shutdown")
    assert len(store.attempts(job_id)) == 1


def test_nothing_running_sends_nothing(world):
    store, podman, controller, clock = world
    submit(store)
    assert _stop(store, podman, controller, clock) == 0
    assert podman.stops == []

"""The sweeps of strays: what an ended job left goes in one task (agent/runtime/sweeps.py).

Against a fake Podman and a pool whose work waits until the test runs it, as a
real pool's may: the pool takes one task per job at a time, so a second
removal handed out for the same job while the first runs is dropped.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future

import pytest

from agent.adapters.podman import ContainerState
from agent.config import Config
from agent.runtime.changes import ChangeFeed
from agent.runtime.sweeps import Sweeps
from agent.runtime.workers import Workers
from agent.storage.store import Store
from tests.unit.fakes import Clock, FakePodman


class Held(Executor):
    """Keeps the work handed to it until ``run_all``."""

    def __init__(self):
        self.work: list = []

    def submit(self, fn, /, *args, **kwargs):
        self.work.append((fn, args, kwargs))
        return Future()

    def run_all(self) -> None:
        while self.work:
            fn, args, kwargs = self.work.pop(0)
            fn(*args, **kwargs)


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    podman = FakePodman(clock)
    config = Config(socket=tmp_path / "s", state_dir=tmp_path, orphan_grace=30)
    pool = Held()
    workers = Workers(pool, wake=lambda: None, on_error=lambda exc: None, monotonic=clock.monotonic)
    yield store, podman, Sweeps(store, podman, config, workers), pool, clock
    store.close()


def _leave(podman, clock, job_id: str) -> None:
    """A container, a volume and a secret of ``job_id``, as a killed agent leaves them."""
    podman.containers[job_id] = ContainerState(
        id=f"c-{job_id}",
        name=f"choo-{job_id}",
        job_id=job_id,
        attempt=1,
        status="exited",
        created_at=clock.now - 60,
    )
    podman.volumes.add(job_id)
    podman.secrets.append((f"choo-{job_id}-1-TOKEN", job_id))


@pytest.mark.parametrize("known", [True, False], ids=["ended job", "unknown job"])
def test_an_ended_jobs_container_volume_and_secrets_go_in_one_pass(world, known):
    store, podman, sweeps, pool, clock = world
    job_id = "GHOST"
    if known:
        spec = {"image": "img", "command": ["x"], "pull": "missing", "retries": 0}
        job_id = store.add_job(spec, trigger="rpc", queue_limit=10)["id"]
        store.update(job_id, state="failed", exit_code=3)
    _leave(podman, clock, job_id)
    # One pass: the stray container, then the volume sweep, with the pool
    # still busy with the first when the second is handed out.
    sweeps.containers(dict(podman.containers), live=set(), now=clock.now)
    sweeps.volumes_if_due(set(), clock.monotonic())
    pool.run_all()
    assert (podman.containers, podman.volumes, podman.secrets) == ({}, set(), [])


def test_a_queued_jobs_stray_container_goes_but_its_volume_stays(world):
    store, podman, sweeps, pool, clock = world
    spec = {"image": "img", "command": ["x"], "pull": "missing", "retries": 1}
    job_id = store.add_job(spec, trigger="rpc", queue_limit=10)["id"]
    _leave(podman, clock, job_id)  # attempt 1's container; the job waits for attempt 2
    sweeps.containers(dict(podman.containers), live=set(), now=clock.now)
    pool.run_all()
    assert podman.containers == {}
    assert podman.volumes == {job_id}  # its attempts share /out

"""Starting an attempt against a fake Podman: a cancel or the job's timeout
between steps, a Podman too slow to tell what it did, a pull past
pull_timeout, a container of an earlier attempt; and the adapter's rules for
a late reply (``done_once``, ``reached_podman``).

The real thing, through a relay that makes Podman late, lossy or stalled, is
tests/faults/test_slow_podman.py.
"""

from __future__ import annotations

import pytest
import requests

from agent.adapters.joblogs import JobLogs
from agent.adapters.podman import ContainerState, PullTimeout
from agent.adapters.podman.errors import LATE_TRIES, PodmanLate, done_once, reached_podman
from agent.config import Config
from agent.protocol.errors import PodmanUnavailable
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.runtime.launch import Launcher
from agent.storage.store import Store
from tests.unit.fakes import Clock, FakePodman


class ScriptedPodman(FakePodman):
    """A FakePodman whose ``run`` creates, then calls ``checkpoint`` as the
    real one does before the start, or raises what the test sets."""

    def __init__(self, clock):
        super().__init__(clock)
        self.raises: Exception | None = None
        self.between = lambda: None
        self.removed: list[str] = []

    def run(self, job_id, attempt, spec, log_path, *args, checkpoint=lambda: None, **kwargs):
        checkpoint()
        if self.raises is not None:
            raise self.raises
        self.containers[job_id] = ContainerState(
            id=f"c-{job_id}",
            name=f"choo-{job_id}",
            job_id=job_id,
            attempt=attempt,
            status="created",
        )
        self.created.append(f"c-{job_id}")
        self.between()
        checkpoint()
        self.start(f"c-{job_id}")
        return f"c-{job_id}"

    def remove(self, name_or_id):
        self.removed.append(name_or_id)
        self.containers = {
            k: c for k, c in self.containers.items() if name_or_id not in (c.id, c.name)
        }


class Monotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def launch(tmp_path):
    clock, monotonic = Clock(), Monotonic()
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    podman = ScriptedPodman(clock)
    config = Config(socket=tmp_path / "s", state_dir=tmp_path, retry_backoff_base=10)
    unavailable: list[str] = []
    launcher = Launcher(
        store,
        podman,
        JobLogs(tmp_path / "logs"),
        config,
        files=None,
        clock=clock,
        on_unavailable=unavailable.append,
        monotonic=monotonic,
    )
    yield store, podman, launcher, monotonic, unavailable
    store.close()


def starting(store, launcher, **spec) -> dict:
    full = {"image": "img", "command": ["x"], "pull": "missing", "retries": 0, "timeout": None}
    job = store.add_job({**full, **spec}, trigger="rpc", queue_limit=100)
    return launcher.record_starting(job)


def test_a_start_records_running_and_the_timeout_counts_from_starting(launch):
    store, podman, launcher, _, _ = launch
    job = starting(store, launcher)
    assert job["started_at"] is not None  # the attempt began: its timeout counts from here
    launcher.create_and_start(job)
    done = store.get(job["id"])
    assert done["state"] == State.RUNNING
    assert done["started_at"] == job["started_at"]
    assert podman.started == [f"c-{job['id']}"]


def test_a_job_cancelled_before_its_start_never_gets_a_container(launch):
    store, podman, launcher, _, _ = launch
    job = starting(store, launcher)
    store.request_cancel(job["id"])
    launcher.create_and_start(job)
    done = store.get(job["id"])
    assert (done["state"], done["stop_reason"]) == (State.CANCELLED, "cancel")
    assert podman.created == [] and podman.started == []


def test_a_cancel_between_create_and_start_removes_the_container_unstarted(launch):
    store, podman, launcher, _, _ = launch
    job = starting(store, launcher)
    podman.between = lambda: store.request_cancel(job["id"])
    launcher.create_and_start(job)
    assert store.get(job["id"])["state"] == State.CANCELLED
    assert podman.started == []
    assert podman.removed == [f"choo-{job['id']}"] and podman.containers == {}


def test_the_jobs_timeout_ends_a_start_that_outlasts_it(launch):
    store, podman, launcher, monotonic, _ = launch
    job = starting(store, launcher, timeout=30)

    def slow_create() -> None:
        monotonic.now += 31

    podman.between = slow_create
    launcher.create_and_start(job)
    done = store.get(job["id"])
    assert (done["state"], done["reason"]) == (State.FAILED, "timeout")
    assert "while starting" in done["log_tail"]
    assert podman.started == [] and podman.containers == {}


@pytest.mark.parametrize("error", [PodmanLate("late"), PodmanUnavailable("down")])
def test_podman_late_or_down_leaves_the_attempt_starting_for_the_next_pass(launch, error):
    store, podman, launcher, _, unavailable = launch
    job = starting(store, launcher)
    podman.raises = error
    launcher.create_and_start(job)
    after = store.get(job["id"])
    # Not back in the queue: the same attempt goes on once Podman says what it did.
    assert (after["state"], after["attempt"]) == (State.STARTING, 1)
    assert unavailable == [error.message]


@pytest.mark.parametrize(
    ("retries", "state", "attempts_left"), [(0, "failed", 0), (1, "queued", 0)]
)
def test_a_pull_past_pull_timeout_fails_or_is_retried(launch, retries, state, attempts_left):
    store, podman, launcher, _, _ = launch
    job = starting(store, launcher, retries=retries)
    podman.raises = PullTimeout("pulling image img took longer than pull_timeout (600s)")
    launcher.create_and_start(job)
    after = store.get(job["id"])
    assert (after["state"], after["retries_left"]) == (state, attempts_left)
    assert "took longer than pull_timeout" in after["log_tail"]


def test_a_start_of_a_created_container_checks_for_a_cancel_first(launch):
    store, podman, launcher, _, _ = launch
    job = starting(store, launcher)
    container = ContainerState(
        id="c-x", name="choo-x", job_id=job["id"], attempt=1, status="created"
    )
    store.request_cancel(job["id"])
    launcher.start_created(job, container)
    assert store.get(job["id"])["state"] == State.CANCELLED
    assert podman.started == []


# -- the adapter's rules for late replies ----------------------------------------


def test_a_late_act_that_landed_is_not_done_again():
    calls = []

    def act():
        calls.append("act")
        raise PodmanLate("late")

    assert done_once(act, lambda: "made", "make it") == "made"
    assert calls == ["act"]


def test_a_late_act_that_did_not_land_is_done_again_then_given_up():
    calls = []

    def act():
        calls.append("act")
        raise PodmanLate("late")

    with pytest.raises(PodmanLate, match="too late"):
        done_once(act, lambda: None, "make it")
    assert len(calls) == LATE_TRIES


def test_down_is_told_from_late_by_whether_the_request_went_out():
    def chained(*errors: BaseException) -> BaseException:
        for outer, inner in zip(errors, errors[1:], strict=False):
            outer.__cause__ = inner
        return errors[0]

    refused = chained(requests.ConnectionError("aborted"), ConnectionRefusedError())
    missing = chained(requests.ConnectionError("aborted"), FileNotFoundError())
    read_timeout = chained(requests.ReadTimeout("read timed out"), TimeoutError())
    reset = chained(requests.ConnectionError("aborted"), ConnectionResetError())
    assert not reached_podman(refused) and not reached_podman(missing)
    assert reached_podman(read_timeout) and reached_podman(reset)

"""The reconcile pass's decisions, against a fake Podman and a fake clock.

The real thing is covered by tests/integration and tests/faults; this pins the
decision table (OOM, retries and backoff, timeouts and the kill escalation,
capacity, lost and orphaned containers, recovery of a created container)
where a real host cannot produce every case (rootless cgroup v1 ignores memory
limits, so a real OOM kill cannot happen here).
"""

from __future__ import annotations

import inspect
import time

import pytest

from agent.adapters.files import JobFiles
from agent.adapters.joblogs import JobLogs
from agent.adapters.podman import ContainerState, Podman
from agent.adapters.podman.exits import ExitFiles
from agent.config import Config
from agent.runtime import ports
from agent.runtime.changes import ChangeFeed
from agent.runtime.controller import Controller
from agent.storage.store import Store
from tests.unit.fakes import Clock, FakeEvents, FakeExits, FakeFiles, FakePodman, Inline


def build(store, podman, config, clock, **extras):
    return Controller(
        store,
        podman,
        FakeEvents(),
        JobLogs(config.state_dir / "logs"),
        config,
        **{
            "clock": clock,
            "monotonic": getattr(clock, "monotonic", clock),
            "sleep": getattr(clock, "sleep", time.sleep),
            "executor": Inline(),
            **extras,
        },
    )


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    podman = FakePodman(clock)
    config = Config(
        socket=tmp_path / "s",
        state_dir=tmp_path,
        max_concurrent=2,
        retry_backoff_base=10,
        retry_backoff_cap=60,
        # The exact doubling; full jitter is test_retry_jitter's.
        retry_jitter=False,
        orphan_grace=30,
    )
    yield store, podman, build(store, podman, config, clock), clock
    store.close()


def submit(store, **spec):
    full = {
        "image": "img",
        "command": ["x"],
        "pull": "missing",
        "retries": 0,
        "stop_timeout": 5,
        "timeout": None,
        **spec,
    }
    return store.add_job(full, trigger="rpc", queue_limit=100)["id"]


def test_launch_then_success_records_before_removing(world):
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    assert store.get(job)["state"] == "running"
    podman.exit(job, 0)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["exit_code"], record["log_tail"]) == ("succeeded", 0, None)
    assert podman.containers == {}


def test_oom_is_its_own_reason_with_the_log_tail(world):
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 137, oom=True)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"]) == ("failed", "oom")
    assert record["log_tail"] == "last words of attempt 1"
    assert store.attempts(job)[0]["oom"] is True


def test_retry_waits_for_backoff_then_runs_a_new_attempt(world):
    store, podman, controller, clock = world
    job = submit(store, retries=2)
    controller.reconcile()
    podman.exit(job, 1)
    controller.reconcile()  # records the failure (the worker then wakes the loop)
    record = store.get(job)
    assert record["state"] == "queued" and record["not_before"] == clock.now + 10
    assert controller.reconcile() == clock.now + 10  # the pass it woke sleeps until then
    clock.now += 9
    controller.reconcile()
    assert store.get(job)["state"] == "queued"
    clock.now += 1
    controller.reconcile()
    assert store.get(job)["state"] == "running"
    podman.exit(job, 1)
    controller.reconcile()
    assert store.get(job)["not_before"] == clock.now + 20  # doubled
    assert [a["trigger"] for a in store.attempts(job)] == ["rpc", "retry"]


def test_timeout_sends_sigterm_then_sigkill_after_the_grace(world):
    store, podman, controller, clock = world
    job = submit(store, timeout=60)
    controller.reconcile()
    cid = podman.containers[job].id
    assert controller.reconcile() == clock.now + 60
    clock.now += 60
    assert controller.reconcile() == clock.now + 5
    assert podman.signals == [(cid, "SIGTERM")]
    clock.now += 5
    controller.reconcile()
    assert podman.signals == [(cid, "SIGTERM"), (cid, "SIGKILL")]
    podman.exit(job, 137)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "timeout", 137)


def test_a_stop_the_shipper_asked_for_is_sent_and_ends_failed_log_limit(world):
    store, podman, controller, clock = world
    job = submit(store, retries=2)
    controller.reconcile()
    cid = podman.containers[job].id
    store.update(job, stop_reason="log_limit")  # the shipper, on log_limit_action = "fail"
    assert controller.reconcile() == clock.now + 5
    assert podman.signals == [(cid, "SIGTERM")]
    assert store.get(job)["stop_sent_at"] == clock.now
    controller.reconcile()
    assert podman.signals == [(cid, "SIGTERM")]  # sent once
    clock.now += 5
    controller.reconcile()
    assert podman.signals == [(cid, "SIGTERM"), (cid, "SIGKILL")]
    podman.exit(job, 143)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"]) == ("failed", "log_limit")  # never retried


def test_capacity_and_priority(world):
    store, podman, controller, clock = world
    low = [submit(store) for _ in range(2)]
    high = submit(store, priority=5)
    controller.reconcile()
    running = {j for j in [*low, high] if store.get(j)["state"] == "running"}
    assert running == {high, low[0]}


def test_lost_container(world):
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    podman.containers.clear()
    controller.reconcile()
    assert (store.get(job)["state"], store.get(job)["reason"]) == ("failed", "lost")


def test_created_container_of_a_starting_job_is_started_not_recreated(world):
    store, podman, controller, clock = world
    job = submit(store)
    store.transition(job, "starting", new_attempt="rpc")
    podman.containers[job] = ContainerState(
        id="made-before-crash", name=f"choo-{job}", job_id=job, attempt=1, status="created"
    )
    controller.reconcile()
    assert podman.started == ["made-before-crash"] and podman.created == []
    assert store.get(job)["state"] == "running"


def test_orphans_are_removed_only_after_the_grace(world):
    store, podman, controller, clock = world
    podman.containers["GHOST"] = ContainerState(
        id="ghost",
        name="choo-GHOST",
        job_id="GHOST",
        attempt=1,
        status="exited",
        created_at=clock.now - 10,
    )
    controller.reconcile()
    assert "GHOST" in podman.containers
    clock.now += 30
    controller.reconcile()
    assert "GHOST" not in podman.containers


def test_a_container_killed_and_removed_by_someone_else_is_lost(world, monkeypatch):
    store, podman, controller, clock = world
    monkeypatch.setattr("agent.runtime.finish.REMOVAL_SETTLE", 0.2)
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 137)  # `podman rm -f`: the kill is seen first ...
    seen = podman.inspect(podman.containers[job].id)

    def inspect(cid):  # ... and the container is gone a moment later
        if podman.containers:
            podman.containers.clear()
            return seen
        return None

    podman.inspect = inspect
    controller.reconcile()
    assert (store.get(job)["state"], store.get(job)["reason"]) == ("failed", "lost")


def test_a_sigkill_whose_container_stays_is_an_exit(world, monkeypatch):
    store, podman, controller, clock = world
    monkeypatch.setattr("agent.runtime.finish.REMOVAL_SETTLE", 0.2)
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 137)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "exit", 137)


def test_the_recovery_pass_does_not_start_queued_jobs(world):
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile(admit=False)
    assert store.get(job)["state"] == "queued" and podman.created == []
    controller.reconcile()
    assert store.get(job)["state"] == "running"


def test_out_is_packed_and_recorded_before_the_container_is_removed(world):
    store, podman, controller, clock = world
    files = FakeFiles()
    controller = build(store, podman, controller.config, clock, files=files)
    job = submit(store)
    controller.reconcile()
    cid = podman.containers[job].id
    podman.exit(job, 0)
    controller.reconcile()
    assert podman.read_outs == [(cid, True)]  # read while the container existed
    assert files.packed == [job]
    assert store.get(job)["artifacts"]["state"] == "packed"
    assert podman.containers == {}


def test_stray_volumes_are_swept_at_most_once_a_minute(world):
    store, podman, controller, clock = world
    queued = submit(store)
    store.update(queued, not_before=clock.now + 3600)  # waits for a retry: keeps its volume
    podman.volumes = {queued, "GONE"}
    controller.reconcile()
    assert podman.volumes == {queued}
    podman.volumes.add("LATER")
    clock.now += 59
    controller.reconcile()
    assert podman.volumes == {queued, "LATER"}
    clock.now += 1
    controller.reconcile()
    assert podman.volumes == {queued}


# -- the fakes cannot drift from the real adapters ---------------------------


def _shape(function):
    """Parameter names, kinds and which have defaults (default values and
    annotations may differ: a fake need not repeat them)."""
    return [
        (p.name, p.kind, p.default is not p.empty)
        for p in inspect.signature(function).parameters.values()
    ]


def _members(protocol):
    return sorted(
        name for name, value in vars(protocol).items() if callable(value) and name[0] != "_"
    )


@pytest.mark.parametrize(
    "protocol, real, fake",
    [
        (ports.PodmanPort, Podman, FakePodman),
        (ports.EventSource, Podman, FakeEvents),
        (ports.ExitSource, ExitFiles, FakeExits),
        (ports.ArtifactFiles, JobFiles, FakeFiles),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_the_real_adapter_and_the_fake_match_the_port(protocol, real, fake):
    assert _members(protocol), "a port lists at least one method"
    for name in _members(protocol):
        wanted = _shape(getattr(protocol, name))
        assert _shape(getattr(real, name)) == wanted, f"{real.__name__}.{name}"
        assert _shape(getattr(fake, name)) == wanted, f"{fake.__name__}.{name}"


def test_a_timeout_with_retries_left_is_final_and_keeps_its_container(world):
    """A timeout is never retried, so under keep_containers its container stays
    (it is not cleaned up as if another attempt needed its name)."""
    store, podman, controller, clock = world
    controller.config.keep_containers = True
    podman.volumes.add(job := submit(store, timeout=60, retries=2))
    controller.reconcile()
    clock.now += 60
    controller.reconcile()  # SIGTERM
    podman.exit(job, 143)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"]) == ("failed", "timeout")
    assert job in podman.containers and job in podman.volumes


# -- deadlines on the monotonic clock ------------------------------------------


def test_a_wall_clock_step_forward_does_not_time_a_job_out_early(world):
    store, podman, controller, clock = world
    job = submit(store, timeout=60)
    controller.reconcile()
    clock.step(3600)  # NTP moves the wall clock an hour ahead
    controller.reconcile()
    assert podman.signals == []
    clock.now += 59
    controller.reconcile()
    assert podman.signals == [] and store.get(job)["stop_reason"] is None
    clock.now += 1
    controller.reconcile()
    cid = podman.containers[job].id
    assert podman.signals == [(cid, "SIGTERM")]
    clock.step(3600)  # the stop grace (5 s) does not end early either
    controller.reconcile()
    assert podman.signals == [(cid, "SIGTERM")]
    clock.now += 5
    controller.reconcile()
    assert podman.signals == [(cid, "SIGTERM"), (cid, "SIGKILL")]
    controller.reconcile()  # the kill is repeated a second later, not at every pass
    assert podman.signals == [(cid, "SIGTERM"), (cid, "SIGKILL")]
    clock.now += 1
    controller.reconcile()
    assert podman.signals[-1] == (cid, "SIGKILL") and len(podman.signals) == 3


def test_a_wall_clock_step_does_not_end_a_retry_backoff_early(world):
    store, podman, controller, clock = world
    job = submit(store, retries=1)
    controller.reconcile()
    podman.exit(job, 1)
    controller.reconcile()
    assert store.get(job)["state"] == "queued"  # due in 10 s
    clock.step(3600)
    controller.reconcile()
    assert store.get(job)["state"] == "queued"
    clock.now += 10
    controller.reconcile()
    assert store.get(job)["state"] == "running"


def test_a_job_started_before_a_restart_times_out_by_its_recorded_start(world):
    """No monotonic anchor survives a restart: the recorded (wall-clock) start is
    read once, at the first pass, and counted on the monotonic clock from there."""
    store, podman, controller, clock = world
    job = submit(store, timeout=60)
    controller.reconcile()
    store.update(job, started_at=clock.now - 50)  # it ran 50 s before this agent started
    restarted = build(store, podman, controller.config, clock)
    assert restarted.reconcile() == clock.mono + 10
    clock.step(-3600)  # a step back does not delay it either
    clock.now += 10
    restarted.reconcile()
    assert podman.signals == [(podman.containers[job].id, "SIGTERM")]


def test_retry_on_lost_leaves_an_oom_kill_final_and_says_why(world):
    store, podman, controller, clock = world
    rule = {"reasons": ["exit", "lost"], "exit_codes": [75], "not_exit_codes": []}
    job = submit(store, retries=2, retry_on=rule)
    controller.reconcile()
    podman.exit(job, 137, oom=True)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"], record["retries_left"]) == ("failed", "oom", 2)
    assert store.attempts(job)[0]["retry"] == (
        "not retried: oom is not retried (not in retry_on.reasons)"
    )


def test_retry_on_an_exit_code_retries_it_and_records_the_rule(world):
    store, podman, controller, clock = world
    rule = {"reasons": ["exit"], "exit_codes": [75], "not_exit_codes": []}
    job = submit(store, retries=1, retry_on=rule)
    controller.reconcile()
    podman.exit(job, 75)
    controller.reconcile()
    assert store.get(job)["state"] == "queued"
    assert store.events(job)[-1]["detail"]["retry"] == (
        "retried: exit code 75 is in retry_on.exit_codes (1 retries left)"
    )
    clock.now += 10
    controller.reconcile()
    podman.exit(job, 75)
    controller.reconcile()
    assert store.get(job)["state"] == "failed"
    assert [a["retry"] for a in store.attempts(job)] == [
        "retried: exit code 75 is in retry_on.exit_codes (1 retries left)",
        "not retried: exit code 75 is in retry_on.exit_codes, but no retries are left",
    ]


def test_a_job_silent_past_its_idle_timeout_is_stopped_and_fails_stalled(world):
    store, podman, controller, clock = world
    job = submit(store, idle_timeout=30)
    controller.reconcile()
    log = controller.launcher.logs.path(job, 1)
    log.write_bytes(b"line 1\n")
    assert controller.reconcile() == clock.now + 30  # counted from the last growth seen
    clock.now += 20
    with log.open("ab") as out:
        out.write(b"line 2\n")  # it printed: the window starts again
    assert controller.reconcile() == clock.now + 30
    clock.now += 29
    controller.reconcile()
    assert podman.signals == []
    clock.now += 1
    controller.reconcile()
    cid = podman.containers[job].id
    assert podman.signals == [(cid, "SIGTERM")]
    assert store.get(job)["stop_reason"] == "stalled"
    podman.exit(job, 143)
    controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["reason"]) == ("failed", "stalled")


def test_the_earlier_of_timeout_and_idle_timeout_wakes_the_loop(world):
    store, podman, controller, clock = world
    job = submit(store, timeout=20, idle_timeout=30)
    controller.reconcile()
    assert controller.reconcile() == clock.now + 20
    clock.now += 20
    controller.reconcile()
    assert store.get(job)["stop_reason"] == "timeout"

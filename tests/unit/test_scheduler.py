"""The scheduler and retention on a real database, a fake clock and no Podman.

Jobs are only queued here (no controller runs them); tests move them through
their states with the store, as the controller would.
"""

from __future__ import annotations

import pytest

from agent.adapters.files import JobFiles
from agent.adapters.joblogs import JobLogs
from agent.api.peers import Peer
from agent.api.schedules import Schedules
from agent.api.service import Service
from agent.config import Config
from agent.protocol.errors import InvalidParams, InvalidTransition, NoSuchSchedule
from agent.protocol.methods import (
    JobRef,
    PruneParams,
    ScheduleAddParams,
    ScheduleListParams,
    ScheduleRef,
    ScheduleTriggerParams,
    SubmitParams,
)
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.runtime.scheduler import Scheduler
from agent.storage.store import Store
from tests.unit.fakes import Clock, t

SPEC = {"image": "alpine", "command": ["true"]}


@pytest.fixture
def config(tmp_path):
    return Config(state_dir=tmp_path / "state", workspace_roots=[str(tmp_path / "ws")])


@pytest.fixture
def store(config):
    store = Store(config.database, ChangeFeed())
    store.open()
    yield store
    store.close()


@pytest.fixture
def service(store, config):
    return Service(
        store,
        store.feed,
        JobLogs(config.state_dir / "logs"),
        config,
        wake=lambda: None,
        status=dict,
        files=JobFiles(config.state_dir, config),
    )


@pytest.fixture
def clock():
    return Clock(t("2026-01-05 10:00:10"))


@pytest.fixture
def scheduler(store, service, config, clock):
    return Scheduler(store, service, config, files=service.files, clock=clock)


def schedules(scheduler) -> Schedules:
    """The schedule.* use cases over ``scheduler``."""
    return Schedules(scheduler.store, scheduler, scheduler.jobs)


def add_schedule(scheduler, name, cron, spec, **options):
    return schedules(scheduler).add(ScheduleAddParams(name, cron, spec, **options))


def add(scheduler, name="every-minute", **options):
    options.setdefault("timezone", "UTC")
    return add_schedule(scheduler, name, "* * * * *", dict(SPEC), **options)


def runs(store, name="every-minute"):
    return store.schedule_runs(name)


def finish(store, job_id, state=State.SUCCEEDED):
    store.transition(job_id, State.STARTING, new_attempt="schedule")
    store.transition(job_id, State.RUNNING)
    store.transition(job_id, state)


# -- firing ----------------------------------------------------------------------------


def test_a_new_schedule_fires_at_the_next_match_not_before(scheduler, store, clock):
    row = add(scheduler)
    assert row["next_fire"] == t("2026-01-05 10:01:00")
    clock.now = t("2026-01-05 10:00:59")
    assert scheduler.tick() == t("2026-01-05 10:01:00")
    assert runs(store) == []
    clock.now = t("2026-01-05 10:01:00.05")
    scheduler.tick()
    (job,) = runs(store)
    assert (job["trigger"], job["schedule"], job["catch_up"]) == ("schedule", "every-minute", False)
    assert job["scheduled_for"] == t("2026-01-05 10:01:00")
    assert job["state"] == "queued" and job["spec"]["image"] == "alpine"
    schedule = store.get_schedule("every-minute")
    assert (schedule["last_fire"], schedule["last_job"]) == (t("2026-01-05 10:01:00"), job["id"])
    # The same minute never fires twice.
    scheduler.tick()
    assert len(runs(store)) == 1


def test_each_minute_fires_once(scheduler, store, clock):
    add(scheduler, concurrency="allow")
    for minute in range(1, 6):
        clock.now = t(f"2026-01-05 10:0{minute}:00.5")
        scheduler.tick()
        scheduler.tick()
    assert [j["scheduled_for"] for j in reversed(runs(store))] == [
        t(f"2026-01-05 10:0{m}:00") for m in range(1, 6)
    ]


# -- catch-up --------------------------------------------------------------------------


def test_downtime_is_caught_up_once_and_marked(scheduler, store, clock):
    add(scheduler)
    clock.now = t("2026-01-05 10:17:45")  # the agent was down since 10:00:10
    scheduler.tick()
    scheduler.tick()
    (job,) = runs(store)
    assert job["catch_up"] is True and job["trigger"] == "schedule"
    assert job["scheduled_for"] == t("2026-01-05 10:17:00")
    events = store.events(job["id"])
    assert events[0]["detail"] == {
        "trigger": "schedule",
        "schedule": "every-minute",
        "catch_up": True,
    }
    # A fresh scheduler (an agent restart) does not catch up again.
    Scheduler(store, scheduler.jobs, scheduler.config, clock=clock).tick()
    assert len(runs(store)) == 1


def test_without_catch_up_missed_fires_are_recorded_as_skipped(scheduler, store, clock):
    add(scheduler, catch_up=False)
    clock.now = t("2026-01-05 11:00:45")
    scheduler.tick()
    assert runs(store) == []
    schedule = store.get_schedule("every-minute")
    assert "missed" in schedule["last_skip"]
    assert schedule["last_fire"] == t("2026-01-05 11:00:00")


# -- concurrency policies --------------------------------------------------------------


def fire(scheduler, clock, minute):
    clock.now = t(f"2026-01-05 10:{minute:02d}:00.1")
    scheduler.tick()


def test_allow_lets_runs_overlap(scheduler, store, clock):
    add(scheduler, concurrency="allow")
    fire(scheduler, clock, 1)
    fire(scheduler, clock, 2)
    assert [j["state"] for j in runs(store)] == ["queued", "queued"]


def test_forbid_skips_while_a_run_is_unfinished(scheduler, store, clock):
    add(scheduler, concurrency="forbid")
    fire(scheduler, clock, 1)
    (first,) = runs(store)
    fire(scheduler, clock, 2)
    assert [j["id"] for j in runs(store)] == [first["id"]]
    schedule = store.get_schedule("every-minute")
    assert "forbid" in schedule["last_skip"] and first["id"] in schedule["last_skip"]
    assert schedule["last_fire"] == t("2026-01-05 10:02:00")
    finish(store, first["id"])
    fire(scheduler, clock, 3)
    assert len(runs(store)) == 2
    assert store.get_schedule("every-minute")["last_skip"] is None


def test_replace_cancels_the_unfinished_run_and_starts_anew(scheduler, store, clock):
    add(scheduler, concurrency="replace")
    fire(scheduler, clock, 1)
    (first,) = runs(store)
    fire(scheduler, clock, 2)
    newest, oldest = runs(store)
    assert oldest["id"] == first["id"] and oldest["state"] == "cancelled"
    assert newest["state"] == "queued"


def test_trigger_by_hand_obeys_the_policy_and_keeps_the_timing(scheduler, store, clock):
    add(scheduler, concurrency="forbid")
    result = schedules(scheduler).trigger(ScheduleTriggerParams("every-minute", trigger="cli"))
    job = result["job"]
    assert (job["trigger"], job["schedule"], job["scheduled_for"]) == ("cli", "every-minute", None)
    again = schedules(scheduler).trigger(ScheduleTriggerParams("every-minute"))
    assert again["job"] is None and "forbid" in again["skipped"]
    schedule = store.get_schedule("every-minute")
    assert schedule["last_fire"] == t("2026-01-05 10:00:10")  # cron timing unchanged
    assert schedule["last_job"] == job["id"]


def test_trigger_by_hand_refuses_internal_triggers(scheduler):
    add(scheduler)
    with pytest.raises(InvalidParams, match="trigger"):
        schedules(scheduler).trigger(ScheduleTriggerParams("every-minute", trigger="schedule"))


def test_a_full_queue_skips_a_fire_and_moves_on(scheduler, store, clock, config):
    config.queue_limit = 0
    add(scheduler)
    fire(scheduler, clock, 1)
    assert runs(store) == []
    schedule = store.get_schedule("every-minute")
    assert "queue is full" in schedule["last_skip"]
    assert schedule["last_fire"] == t("2026-01-05 10:01:00")


# -- history and management ------------------------------------------------------------


def test_history_limit_removes_old_finished_runs(scheduler, store, clock):
    add(scheduler, history_limit=2)
    for minute in range(1, 5):
        fire(scheduler, clock, minute)
        finish(store, runs(store)[0]["id"], State.FAILED if minute == 2 else State.SUCCEEDED)
    fire(scheduler, clock, 5)  # queued: unfinished runs do not count
    kept = runs(store)
    assert [j["scheduled_for"] for j in kept] == [
        t("2026-01-05 10:05:00"),
        t("2026-01-05 10:04:00"),
        t("2026-01-05 10:03:00"),
    ]


def test_add_validates_everything_before_storing(scheduler, store):
    with pytest.raises(InvalidParams, match="^cron"):
        add_schedule(scheduler, "bad", "every day", dict(SPEC))
    with pytest.raises(InvalidParams, match="^image"):
        add_schedule(scheduler, "bad", "* * * * *", {"command": ["true"]})
    with pytest.raises(InvalidParams, match="^concurrency"):
        add_schedule(scheduler, "bad", "* * * * *", dict(SPEC), concurrency="never")
    with pytest.raises(InvalidParams, match="^workspace"):
        add_schedule(scheduler, "bad", "* * * * *", {**SPEC, "workspace": "/etc"})
    assert store.schedules() == []
    add(scheduler)
    with pytest.raises(InvalidParams, match="exists"):
        add(scheduler)


def test_list_get_and_remove(scheduler, store, clock):
    add(scheduler)
    add(scheduler, name="other")
    assert [s["name"] for s in schedules(scheduler).list(ScheduleListParams())] == [
        "every-minute",
        "other",
    ]
    fire(scheduler, clock, 1)
    assert len(schedules(scheduler).list(ScheduleListParams("other"))["active"]) == 1
    removed = schedules(scheduler).remove(ScheduleRef("other"))
    assert removed["name"] == "other"
    with pytest.raises(NoSuchSchedule):
        schedules(scheduler).list(ScheduleListParams("other"))
    with pytest.raises(NoSuchSchedule):
        schedules(scheduler).remove(ScheduleRef("other"))
    assert len(runs(store, "other")) == 1  # its runs stay


# -- removal and retention -------------------------------------------------------------


def submit(service, **fields):
    return service.submit(SubmitParams({**SPEC, **fields}), peer=Peer(pid=1, uid=0, gid=0))


def test_remove_refuses_an_unfinished_job(service, store):
    job = submit(service)
    with pytest.raises(InvalidTransition, match="only a finished job"):
        service.remove(JobRef(job["id"][:10]))
    assert store.get(job["id"])["state"] == "queued"


def test_remove_deletes_the_record_and_its_files(service, store, tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "f").write_text("x")
    job = submit(service, workspace=str(tmp_path / "ws"))
    snapshot = job["workspace"]["snapshot"]
    assert (tmp_path / "state" / "jobs" / job["id"] / "workspace" / "f").exists()
    finish(store, job["id"])
    assert service.remove(JobRef(job["id"]))["id"] == job["id"]
    assert store.job_ids() == set()
    assert not (tmp_path / "state" / "jobs" / job["id"]).exists() and snapshot


def test_prune_removes_exactly_the_old_finished_jobs(service, store):
    old_ok, old_failed, recent, running, queued = (submit(service)["id"] for _ in range(5))
    finish(store, old_ok)
    finish(store, old_failed, State.FAILED)
    finish(store, recent)
    store.transition(running, State.STARTING, new_attempt="rpc")
    store.transition(running, State.RUNNING)
    store.update(old_ok, ended_at=1000.0)
    store.update(old_failed, ended_at=1000.0)
    assert service.prune(PruneParams(older_than="1d", state="failed"))["removed"] == [old_failed]
    assert service.prune(PruneParams(older_than="1d"))["removed"] == [old_ok]
    assert store.job_ids() == {recent, running, queued}
    # Even with an age of zero, unfinished jobs are never touched.
    assert service.prune(PruneParams(older_than=0))["removed"] == [recent]
    assert store.job_ids() == {running, queued}


def test_prune_refuses_unfinished_states(service):
    with pytest.raises(InvalidParams, match="only finished jobs"):
        service.prune(PruneParams(state="running"))


def test_retention_pass_prunes_on_its_own(scheduler, service, store, config):
    job = submit(service)["id"]
    keep = submit(service)["id"]
    finish(store, job)
    finish(store, keep)
    store.update(job, ended_at=1000.0)
    scheduler.tick()
    assert store.job_ids() == {keep}
    config.retention = 0.0  # off: nothing more is pruned
    store.update(keep, ended_at=1000.0)
    scheduler._pruned_at = float("-inf")
    scheduler.tick()
    assert store.job_ids() == {keep}

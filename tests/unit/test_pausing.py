"""Pausing: the admission rule's pauses and runtime limits, their storage, the
queue.* and schedule.suspend/resume use cases, and a suspended schedule's skips.

A real SQLite store throughout; no Podman (tests/integration/test_pausing.py
runs the same against the real agent).
"""

from __future__ import annotations

import pytest

from agent.api import suspending
from agent.api.peers import Peer
from agent.api.schedules import Schedules
from agent.cli.workflow import queue_lines
from agent.protocol.errors import InvalidParams, NoSuchSchedule, Unauthorized
from agent.protocol.methods import ScheduleAddParams, ScheduleRef, ScheduleTriggerParams
from agent.protocol.pausing import MAX_LIMIT, LimitParams, QueueRef
from agent.rules.admission import QueueControl, admit
from agent.runtime.scheduler import Scheduler
from tests.unit.fakes import Clock, t

NOW = 1_000_000.0
ALICE = Peer(pid=11, uid=5001, gid=5001)
BOB = Peer(pid=12, uid=5002, gid=5002)


def job(id: str, state: str = "queued", name: str | None = None) -> dict:
    return {
        "id": id,
        "state": state,
        "name": name,
        "priority": 0,
        "not_before": None,
        "cancel_requested": False,
    }


def chosen(jobs, control, name_limits=None, max_concurrent=4) -> list[str]:
    picked = admit(
        jobs,
        max_concurrent=max_concurrent,
        name_limits=name_limits or {},
        now=NOW,
        control=control,
    )
    return [j["id"] for j in picked]


# -- the rule ----------------------------------------------------------------------


def test_a_paused_queue_admits_nothing_however_free():
    jobs = [job("A", name="build"), job("B")]
    assert chosen(jobs, QueueControl()) == ["A", "B"]
    assert chosen(jobs, QueueControl(paused=True)) == []


def test_a_paused_name_holds_back_its_jobs_only():
    jobs = [job("A", name="build"), job("B", name="test"), job("C")]
    assert chosen(jobs, QueueControl(paused_names=frozenset({"build"}))) == ["B", "C"]


def test_a_runtime_limit_replaces_the_configured_one_and_may_be_zero():
    jobs = [job("R", "running", name="build"), job("A", name="build"), job("B", name="build")]
    assert chosen(jobs, QueueControl(), name_limits={"build": 1}) == []
    control = QueueControl(limits={"build": 3})
    assert chosen(jobs, control, name_limits={"build": 1}) == ["A", "B"]
    assert chosen(jobs, QueueControl(limits={"build": 0})) == []
    # A limit below what runs stops nobody: no more start.
    running = [job("R1", "running", name="x"), job("R2", "running", name="x"), job("Q", name="x")]
    assert chosen(running, QueueControl(limits={"x": 1})) == []


def test_the_limits_in_force_and_the_status_summary():
    control = QueueControl(paused=True, paused_names=frozenset({"b", "a"}), limits={"a": 0})
    assert control.name_limits({"a": 2, "c": 5}) == {"a": 0, "c": 5}
    assert control.summary() == "queue paused; names paused: a, b"
    assert QueueControl(paused_names=frozenset({"a"})).summary() == "names paused: a"
    assert QueueControl(limits={"a": 1}).summary() is None


# -- storage -----------------------------------------------------------------------


def test_pauses_and_limits_are_stored_once_and_cleared_rows_go(feed_store):
    assert feed_store.set_paused("build", True, at=5.0, by=0)
    assert not feed_store.set_paused("build", True, at=6.0, by=0)  # already: nothing written
    assert feed_store.set_paused(None, True, at=7.0, by=None)
    assert feed_store.pauses() == [
        {"name": None, "since": 7.0, "by": None},
        {"name": "build", "since": 5.0, "by": 0},
    ]
    assert feed_store.set_limit("build", 2) and not feed_store.set_limit("build", 2)
    assert feed_store.set_paused("build", False, at=8.0, by=0)
    control = feed_store.queue_control()
    assert control.paused and not control.paused_names and dict(control.limits) == {"build": 2}
    assert feed_store.set_limit("build", None)
    assert feed_store.set_paused(None, False, at=9.0, by=None)
    assert list(feed_store.models.QueueControl.select()) == []


# -- queue.* -----------------------------------------------------------------------


def test_pause_and_resume_say_whether_anything_changed(feed_service):
    woken = []
    feed_service.wake = lambda: woken.append(1)
    change = feed_service.pause(QueueRef())
    assert change["changed"] and change["queue"]["paused"]
    assert change["queue"]["pauses"][0]["name"] is None
    assert not feed_service.pause(QueueRef())["changed"]
    assert feed_service.pause(QueueRef(name="build"))["queue"]["pauses"][1]["name"] == "build"
    assert feed_service.resume(QueueRef())["changed"]
    again = feed_service.resume(QueueRef())
    assert not again["changed"] and not again["queue"]["paused"]
    assert [p["name"] for p in again["queue"]["pauses"]] == ["build"]
    assert len(woken) == 3  # only the changes wake the controller
    assert feed_service.info()["queue"]["pauses"][0]["name"] == "build"
    assert feed_service.queue_state() == feed_service.info()["queue"]


def test_only_admins_pause_or_limit_and_anyone_may_read_a_limit(feed_service):
    with pytest.raises(Unauthorized, match=r"only an admin .* may pause the queue"):
        feed_service.pause(QueueRef(), peer=ALICE)
    with pytest.raises(Unauthorized, match="may resume jobs named build"):
        feed_service.resume(QueueRef(name="build"), peer=ALICE)
    with pytest.raises(Unauthorized, match="may limit jobs named build"):
        feed_service.limit(LimitParams(name="build", limit=1), peer=ALICE)
    with pytest.raises(Unauthorized):
        feed_service.limit(LimitParams(name="build", default=True), peer=ALICE)
    assert feed_service.limit(LimitParams(name="build"), peer=ALICE)["limit"] is None
    assert feed_service.store.queue_control() == QueueControl()


def test_a_limit_is_shown_set_ahead_of_time_and_cleared_to_the_config(feed_service):
    feed_service.config.name_limits = {"build": 3}
    assert feed_service.limit(LimitParams(name="build")) == {
        "name": "build",
        "limit": 3,
        "source": "config",
        "default": 3,
        "changed": False,
    }
    set_ = feed_service.limit(LimitParams(name="build", limit=0))
    assert (set_["limit"], set_["source"], set_["changed"]) == (0, "runtime", True)
    ahead = feed_service.limit(LimitParams(name="not-yet-seen", limit=2))
    assert (ahead["limit"], ahead["default"]) == (2, None)
    queue = feed_service.info()["queue"]
    assert queue["name_limits"] == {"build": 0, "not-yet-seen": 2}
    assert queue["runtime_limits"] == {"build": 0, "not-yet-seen": 2}
    cleared = feed_service.limit(LimitParams(name="build", default=True))
    assert (cleared["limit"], cleared["source"], cleared["changed"]) == (3, "config", True)
    assert not feed_service.limit(LimitParams(name="build", default=True))["changed"]
    assert feed_service.limit(LimitParams(name="x"))["source"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (LimitParams(name="build", limit=-1), "limit: expected a whole number from 0"),
        (LimitParams(name="build", limit=1.5), "limit: expected a whole number from 0"),
        (LimitParams(name="build", limit=True), "limit: expected a whole number from 0"),
        (LimitParams(name="build", limit=MAX_LIMIT + 1), f"from 0 to {MAX_LIMIT}"),
        (LimitParams(name="build", limit=1, default=True), "not both"),
        (LimitParams(name="build", default="yes"), "default: expected true or false"),
        (LimitParams(name="-bad"), "name: expected a job name"),
        (LimitParams(name=5), "name: expected a job name"),
    ],
)
def test_bad_limit_params_are_refused_naming_the_param(feed_service, params, message):
    with pytest.raises(InvalidParams, match=message):
        feed_service.limit(params)


def test_a_pause_of_a_bad_name_is_refused(feed_service):
    with pytest.raises(InvalidParams, match="name: expected a job name"):
        feed_service.pause(QueueRef(name="a b"))


def test_queue_lines_say_what_is_paused_and_limited():
    queue = {
        "paused": False,
        "pauses": [{"name": "build", "since": NOW, "by": 0}],
        "name_limits": {"build": 2, "test": 1},
        "runtime_limits": {"build": 2},
    }
    first, limits = queue_lines(queue)
    assert first.startswith("queue:      admitting, but paused: jobs named build since ")
    assert first.endswith("(by uid 0)")
    assert limits == "name limits: build 2 (runtime), test 1"
    idle = {"paused": False, "pauses": [], "name_limits": {}, "runtime_limits": {}}
    assert queue_lines(idle) == ["queue:      admitting"]
    assert queue_lines(None) == []


# -- schedule.suspend / schedule.resume --------------------------------------------


@pytest.fixture
def clock():
    return Clock(t("2026-01-05 10:00:10"))


@pytest.fixture
def schedules(feed_service, clock) -> Schedules:
    scheduler = Scheduler(feed_service.store, feed_service, feed_service.config, clock=clock)
    return Schedules(feed_service.store, scheduler, feed_service)


def add(schedules, peer=None, catch_up=True):
    spec = {"image": "alpine", "command": ["true"]}
    params = ScheduleAddParams("minutely", "* * * * *", spec, catch_up=catch_up, timezone="UTC")
    return schedules.add(params, peer=peer)


def test_a_suspended_schedule_skips_its_fires_and_resume_catches_none_up(
    schedules, clock, feed_store
):
    add(schedules)
    change = suspending.suspend(schedules, ScheduleRef("minutely"))
    assert change["changed"] and change["schedule"]["suspended_at"] == clock.now
    assert not suspending.suspend(schedules, ScheduleRef("minutely"))["changed"]
    clock.now = t("2026-01-05 10:01:00.05")
    schedules.scheduler.tick()
    assert feed_store.schedule_runs("minutely") == []
    row = feed_store.get_schedule("minutely")
    assert row["last_skip"] == "2026-01-05T10:01:00+00:00: suspended"
    skips = "SELECT value FROM tally WHERE name = 'schedule_skips'"
    assert feed_store.db.execute_sql(skips).fetchall() == [(1.0,)]  # choo_schedule_skips_total
    # Several fires go by while suspended: none of them is made up later.
    clock.now = t("2026-01-05 10:05:30")
    resumed = suspending.resume(schedules, ScheduleRef("minutely"))
    assert resumed["changed"] and resumed["schedule"]["suspended_at"] is None
    assert resumed["schedule"]["next_fire"] == t("2026-01-05 10:06:00")
    schedules.scheduler.tick()
    assert feed_store.schedule_runs("minutely") == []
    clock.now = t("2026-01-05 10:06:00.05")
    schedules.scheduler.tick()
    assert len(feed_store.schedule_runs("minutely")) == 1
    assert not suspending.resume(schedules, ScheduleRef("minutely"))["changed"]


def test_missed_fires_of_a_suspended_schedule_are_skips_not_catch_ups(schedules, clock, feed_store):
    add(schedules)
    suspending.suspend(schedules, ScheduleRef("minutely"))
    clock.now = t("2026-01-05 12:00:00")  # the agent was down meanwhile
    schedules.scheduler.up_since = clock.now
    schedules.scheduler.tick()
    assert feed_store.schedule_runs("minutely") == []
    assert feed_store.get_schedule("minutely")["last_skip"].endswith(": suspended")


def test_a_suspended_schedule_still_runs_by_hand(schedules):
    add(schedules)
    suspending.suspend(schedules, ScheduleRef("minutely"))
    result = schedules.trigger(ScheduleTriggerParams("minutely"))
    assert result["job"] is not None


def test_its_owner_may_suspend_a_schedule_and_others_may_not(schedules, feed_service):
    feed_service.check_workspace = lambda path, peer: None
    add(schedules, peer=ALICE)
    assert suspending.suspend(schedules, ScheduleRef("minutely"), peer=ALICE)["changed"]
    with pytest.raises(Unauthorized, match="only its owner, root, .* may resume it"):
        suspending.resume(schedules, ScheduleRef("minutely"), peer=BOB)
    with pytest.raises(NoSuchSchedule, match="no schedule named 'nope'"):
        suspending.suspend(schedules, ScheduleRef("nope"))

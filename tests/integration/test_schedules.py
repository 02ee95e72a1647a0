"""Schedules through a real agent and real containers, on a test clock.

Cron has minute granularity, so the agent's schedule clock is moved instead of
waiting: ``CHOO_CLOCK_OFFSET_FILE`` names a file holding seconds added to the
time the schedules see (see choo-agent(8)). Concurrency policies are driven
with ``chooctl schedule run``, which obeys them like a cron fire does.
"""

from __future__ import annotations

import json
import signal

import pytest

from agent.protocol.errors import InvalidParams
from tests.harness import wait_until
from tests.schedule_clock import OffsetClock

#: What the agent logs once its scheduler's first pass (the catch-up) is done.
FIRST_PASS = "schedules checked since the start"

pytestmark = pytest.mark.podman


@pytest.fixture
def clock(tmp_path):
    return OffsetClock(tmp_path / "clock-offset")


@pytest.fixture
def sched_agent(make_agent, clock):
    agent = make_agent(max_concurrent=8)
    agent.env = {"CHOO_CLOCK_OFFSET_FILE": str(clock.path)}
    return agent.start(env=agent.env)


def runs(agent, name):
    return [j for j in agent.call("job.list", all=True)["jobs"] if j["schedule"] == name]


def test_every_minute_schedule_runs_on_time(sched_agent, clock, image):
    agent = sched_agent
    minute = clock.before_next(60, 30)  # no fire due while we set up
    added = agent.chooctl("schedule", "add", "tick", "* * * * *", image, "sh", "-c", "echo tick")
    assert added.returncode == 0, added.stderr
    assert runs(agent, "tick") == []
    clock.advance(minute - 1 - clock.now())  # a second before the fire
    job = wait_until(lambda: runs(agent, "tick"), timeout=15, message="schedule did not fire")[0]
    assert clock.now() >= minute, "fired early"
    assert (job["trigger"], job["scheduled_for"], job["catch_up"]) == ("schedule", minute, False)
    done = agent.call("job.wait", id=job["id"], timeout=60)
    assert done["state"] == "succeeded"
    assert agent.chooctl("logs", job["id"]).stdout == "tick\n"
    listed = json.loads(agent.chooctl("schedule", "ls", "--json").stdout)
    assert listed[0]["last_job"] == job["id"]
    assert listed[0]["next_fire"] == minute + 60
    assert agent.chooctl("schedule", "ls", "-q").stdout == "tick\n"
    assert len(runs(agent, "tick")) == 1  # not again within the same minute


def start_long(agent, name, policy, image):
    added = agent.chooctl(
        "schedule",
        "add",
        "--concurrency",
        policy,
        "--stop-timeout",
        "1",
        name,
        "0 0 1 1 *",
        image,
        "sleep",
        "300",
    )
    assert added.returncode == 0, added.stderr


def trigger(agent, name):
    done = agent.chooctl("schedule", "run", "--json", name)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def running(agent, job_id):
    return agent.call("job.get", id=job_id)["state"] == "running"


def test_concurrency_policies_with_real_containers(sched_agent, image):
    agent = sched_agent
    for policy in ("allow", "forbid", "replace"):
        start_long(agent, policy, policy, image)
    first = {p: trigger(agent, p)["job"]["id"] for p in ("allow", "forbid", "replace")}
    for job_id in first.values():
        wait_until(lambda job_id=job_id: running(agent, job_id), message="run did not start")

    # allow: a second run alongside the first.
    second = trigger(agent, "allow")["job"]["id"]
    wait_until(lambda: running(agent, second))
    assert running(agent, first["allow"])

    # forbid: skipped while the first runs; no job is made.
    skipped = trigger(agent, "forbid")
    assert skipped["job"] is None and "forbid" in skipped["skipped"]
    assert [j["id"] for j in runs(agent, "forbid")] == [first["forbid"]]
    text = agent.chooctl("schedule", "run", "forbid")
    assert text.returncode == 0 and "skipped" in text.stderr

    # replace: the first is cancelled (its container stopped), the new one runs.
    replaced = trigger(agent, "replace")
    assert replaced["cancelled"] == [first["replace"]]
    ended = agent.call("job.wait", id=first["replace"], timeout=60)
    assert ended["state"] == "cancelled"
    wait_until(lambda: running(agent, replaced["job"]["id"]))
    assert replaced["job"]["trigger"] == "cli"

    for name in ("allow", "forbid", "replace"):
        for job in runs(agent, name):
            if job["state"] not in ("succeeded", "failed", "cancelled"):
                agent.call("job.cancel", id=job["id"])
                agent.call("job.wait", id=job["id"], timeout=60)
    assert agent.chooctl("schedule", "rm", "allow", "forbid", "replace").returncode == 0
    assert json.loads(agent.chooctl("schedule", "ls", "--json").stdout) == []


def test_downtime_is_caught_up_exactly_once(sched_agent, clock, image):
    agent = sched_agent
    clock.before_next(3600, 1800)  # no fire due while we set up
    added = agent.chooctl("schedule", "add", "--concurrency", "forbid", "nightly", "0 * * * *",
                          image, "true")  # fmt: skip
    assert added.returncode == 0, added.stderr
    agent.chooctl("schedule", "add", "--no-catch-up", "lazy", "0 * * * *", image, "true")
    assert agent.stop(signal.SIGTERM) == 0
    clock.advance(2 * 3600)  # two hours of downtime: two fires missed
    agent.start(env=agent.env)
    job = wait_until(lambda: runs(agent, "nightly"), timeout=15, message="no catch-up run")[0]
    assert (job["trigger"], job["catch_up"]) == ("schedule", True)
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    lazy = json.loads(agent.chooctl("schedule", "ls", "--json").stdout)[0]
    assert lazy["name"] == "lazy" and "missed" in lazy["last_skip"]
    assert runs(agent, "lazy") == []
    # Another restart with no time passed: nothing more to catch up.
    checked = agent.log().count(FIRST_PASS)
    assert agent.stop(signal.SIGTERM) == 0
    agent.start(env=agent.env)
    wait_until(lambda: agent.log().count(FIRST_PASS) > checked, message="the first schedule pass")
    assert [j["id"] for j in runs(agent, "nightly")] == [job["id"]]


def test_a_schedule_cannot_wait_on_a_job(sched_agent, image):
    """Every fire is a new job: one dependency for all of them is refused at add."""
    agent = sched_agent
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})["id"]
    added = agent.chooctl("schedule", "add", "--after", job, "chained", "0 3 * * *", image, "true")
    assert added.returncode == 125 and "template cannot hold --after" in added.stderr
    spec = {"image": image, "command": ["true"], "after": [job]}
    with pytest.raises(InvalidParams, match="a schedule's runs cannot wait on a job"):
        agent.call("schedule.add", name="chained", cron="0 3 * * *", spec=spec)
    agent.wait_state(job, "succeeded")
    wait_until(lambda: not agent.containers(), message="the job's container removed")
    assert json.loads(agent.chooctl("schedule", "ls", "--json").stdout) == []

"""Pausing through the real agent and Podman: ``chooctl pause``/``resume`` of the
whole queue and of one name while jobs run and across a restart, ``chooctl
limit`` at runtime, ``chooctl schedule suspend``/``resume``, and who may.

A job held back is shown to have been passed over by a loop pass that
demonstrably ran after it was queued (another job it let start, or a stop it
carried out), never by waiting a while.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from agent.protocol.errors import InvalidParams
from tests import other_uids
from tests.harness import HOLD, release, wait_until
from tests.integration.test_systemd import NotifySocket, start_as_systemd
from tests.other_uids import ADMIN, ADMIN_GROUP, ALICE, BOB, chooctl, host_uid, start_open
from tests.schedule_clock import OffsetClock

pytestmark = pytest.mark.podman
open_socket_dir = other_uids.open_socket_dir


def ok(done) -> str:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    return done.stdout


def submit(agent, *args) -> str:
    return ok(agent.chooctl("submit", "-q", *args)).strip()


def state(agent, job_id) -> str:
    return agent.call("job.get", id=job_id)["state"]


def passed_over(agent, job_id, witness) -> None:
    """Stop the running ``witness``: the pass that stops it also admits what it
    may, so ``job_id``, queued before, staying queued after is the pause's doing."""
    ok(agent.chooctl("cancel", witness))
    assert agent.call("job.wait", id=witness, timeout=60)["state"] == "cancelled"
    assert state(agent, job_id) == "queued"


def test_pausing_the_whole_queue_holds_new_jobs_while_running_ones_go_on_across_a_restart(
    make_agent, image
):
    agent = make_agent(max_concurrent=4).start()
    finishing = submit(agent, "--name", "keep", image, "sh", "-c", HOLD)
    witness = submit(agent, "--name", "keep", image, "sh", "-c", HOLD)
    agent.wait_state(finishing, "running", timeout=60)
    agent.wait_state(witness, "running", timeout=60)
    assert ok(agent.chooctl("pause")) == "the queue paused\n"
    assert ok(agent.chooctl("pause")) == "the queue was already paused\n"
    waiting = submit(agent, image, "echo", "after the pause")
    # A running job goes on to its end.
    release(agent.podman_url, finishing)
    assert agent.call("job.wait", id=finishing, timeout=60)["state"] == "succeeded"
    listed = agent.chooctl("ps")
    assert waiting in ok(listed) and "chooctl: paused: the queue;" in listed.stderr
    info = ok(agent.chooctl("info"))
    assert "queue:      paused: the queue since " in info

    # The pause is on disk: after a restart the queue is still paused.
    assert agent.stop(signal.SIGTERM) == 0
    agent.start()
    agent.wait_state(witness, "running", timeout=60)  # adopted, still running
    queue = agent.call("agent.info")["queue"]
    assert queue["paused"] is True and queue["pauses"][0]["name"] is None
    assert agent.call("queue.state") == queue
    passed_over(agent, waiting, witness)

    resumed = ok(agent.chooctl("resume"))
    assert resumed == "the queue resumed\n"
    assert agent.call("job.wait", id=waiting, timeout=60)["state"] == "succeeded"
    assert agent.output_lines(waiting) == ["after the pause"]
    again = agent.chooctl("resume")
    assert ok(again) == "the queue was not paused; nothing to resume\n"
    assert "paused" not in agent.chooctl("ps").stderr
    assert "queue:      admitting" in ok(agent.chooctl("info"))
    assert "the queue paused by uid" in agent.log() and "the queue resumed by uid" in agent.log()


def test_pausing_one_name_holds_only_its_jobs_across_a_restart(make_agent, image):
    agent = make_agent(max_concurrent=4).start()
    running = submit(agent, "--name", "build", image, "sh", "-c", HOLD)
    agent.wait_state(running, "running", timeout=60)
    change = json.loads(ok(agent.chooctl("pause", "--name", "build", "--json")))
    assert change["changed"] is True
    assert change["queue"]["pauses"][0]["name"] == "build"
    held = submit(agent, "--name", "build", image, "true")
    # A job of another name, queued after it, starts and ends: the pass passed it over.
    other = submit(agent, "--name", "test", image, "true")
    assert agent.call("job.wait", id=other, timeout=60)["state"] == "succeeded"
    assert state(agent, held) == "queued"
    assert "admitting, but paused: jobs named build since" in ok(agent.chooctl("info"))

    assert agent.stop(signal.SIGTERM) == 0
    agent.start()
    after = submit(agent, "--name", "other", image, "true")
    assert agent.call("job.wait", id=after, timeout=60)["state"] == "succeeded"
    assert state(agent, held) == "queued"
    assert agent.call("agent.info")["queue"]["paused"] is False

    # The running job of that name went on all along.
    assert state(agent, running) == "running"
    release(agent.podman_url, running)
    assert agent.call("job.wait", id=running, timeout=60)["state"] == "succeeded"
    nothing = ok(agent.chooctl("resume"))  # the whole queue was never paused
    assert nothing.startswith("the queue was not paused; nothing to resume\n")
    assert "still paused: jobs named build" in nothing
    assert ok(agent.chooctl("resume", "--name", "build")) == "jobs named build resumed\n"
    assert agent.call("job.wait", id=held, timeout=60)["state"] == "succeeded"
    bad = agent.chooctl("pause", "--name", "no spaces")
    assert bad.returncode != 0 and "name: expected a job name" in bad.stderr


def test_a_limit_set_at_runtime_replaces_the_configured_one_and_outlives_a_restart(
    make_agent, image
):
    agent = make_agent(max_concurrent=4, name_limits={"lim": 2}).start()
    assert ok(agent.chooctl("limit", "lim")) == "lim: 2 (config file)\n"
    assert ok(agent.chooctl("limit", "lim", "1")) == "lim: 1 (runtime; config file: 2)\n"
    first = submit(agent, "--name", "lim", image, "sh", "-c", HOLD)
    agent.wait_state(first, "running", timeout=60)
    second = submit(agent, "--name", "lim", image, "sh", "-c", HOLD)
    other = submit(agent, "--name", "free", image, "true")
    assert agent.call("job.wait", id=other, timeout=60)["state"] == "succeeded"
    assert state(agent, second) == "queued"  # 1 of lim runs: its runtime limit
    assert "name limits: lim 1 (runtime)" in ok(agent.chooctl("info"))

    assert agent.stop(signal.SIGTERM) == 0
    agent.start()
    shown = json.loads(ok(agent.chooctl("limit", "--json", "lim")))
    assert (shown["limit"], shown["source"], shown["default"]) == (1, "runtime", 2)
    # A name no job has yet may be limited ahead of time; N is checked.
    assert ok(agent.chooctl("limit", "later", "0")) == "later: 0 (runtime; config file: none)\n"
    negative = agent.chooctl("limit", "lim", "--", "-1")
    assert negative.returncode != 0 and "-1 is not in the range x>=0" in negative.stderr
    fraction = agent.chooctl("limit", "lim", "1.5")
    assert fraction.returncode != 0 and "'1.5' is not a valid integer" in fraction.stderr
    both = agent.chooctl("limit", "lim", "3", "--default")
    assert both.returncode != 0 and "give N or --default, not both" in both.stderr
    with agent.client() as client, pytest.raises(InvalidParams, match="from 0 to 100000"):
        client.call("queue.limit", name="lim", limit=-3)

    # Back to the config file's 2: the second one starts.
    assert ok(agent.chooctl("limit", "lim", "--default")) == "lim: 2 (config file)\n"
    agent.wait_state(second, "running", timeout=60)
    for job_id in (first, second):
        release(agent.podman_url, job_id)
        assert agent.call("job.wait", id=job_id, timeout=60)["state"] == "succeeded"
    assert agent.call("agent.info")["queue"]["runtime_limits"] == {"later": 0}


def schedule(agent, name="tick") -> dict:
    return agent.call("schedule.list", name=name)


def runs(agent, name="tick") -> list[dict]:
    return [j for j in agent.call("job.list", all=True)["jobs"] if j["schedule"] == name]


def test_a_suspended_schedule_skips_its_fires_across_a_restart_and_resumes_without_catching_up(
    make_agent, image, tmp_path
):
    clock = OffsetClock(tmp_path / "clock-offset")
    env = {"CHOO_CLOCK_OFFSET_FILE": str(clock.path)}
    agent = make_agent(max_concurrent=4).start(env=env)
    clock.before_next(3600, 1800)  # no fire due while we set up
    ok(agent.chooctl("schedule", "add", "tick", "0 * * * *", image, "true"))
    assert ok(agent.chooctl("schedule", "suspend", "tick")) == "tick: suspended\n"
    assert ok(agent.chooctl("schedule", "suspend", "tick")) == "tick: was already suspended\n"
    assert "suspended" in ok(agent.chooctl("schedule", "ls")).splitlines()[1]
    hour = clock.before_next(3600, 2)
    skipped = wait_until(
        lambda: (schedule(agent)["last_skip"] or "").endswith(": suspended"),
        timeout=15,
        message="the suspended schedule's fire was not recorded as skipped",
    )
    assert skipped and runs(agent) == []
    assert schedule(agent)["last_fire"] == hour
    metrics = ok(agent.chooctl("metrics"))
    assert 'choo_schedule_skips_total{schedule="tick"} 1' in metrics

    # Suspended across a restart, with two hours of downtime: no catch-up run.
    assert agent.stop(signal.SIGTERM) == 0
    clock.advance(2 * 3600)
    agent.start(env=env)
    wait_until(
        lambda: schedule(agent)["last_fire"] > hour,
        timeout=15,
        message="the fires missed while down were not recorded as skipped",
    )
    row = schedule(agent)
    assert row["suspended_at"] is not None and row["last_skip"].endswith(": suspended")
    assert runs(agent) == []

    resumed = ok(agent.chooctl("schedule", "resume", "tick"))
    assert resumed.startswith("tick: resumed; next run ")
    assert schedule(agent)["suspended_at"] is None
    assert ok(agent.chooctl("schedule", "resume", "tick")) == (
        "tick: was not suspended; nothing to resume\n"
    )
    nxt = clock.before_next(3600, 2)
    (job,) = wait_until(
        lambda: runs(agent), timeout=15, message="the resumed schedule did not fire"
    )
    assert (job["scheduled_for"], job["catch_up"]) == (nxt, False)
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    assert len(runs(agent)) == 1


def test_only_admins_pause_and_limit_and_a_schedule_owner_suspends_their_own(
    make_agent, open_socket_dir, image
):
    users = {who: host_uid(who) for who in (ALICE, BOB, ADMIN)}
    agent = start_open(
        make_agent,
        open_socket_dir,
        allowed_users=[str(uid) for uid in users.values()],
        admin_groups=[ADMIN_GROUP],
    )
    refused = chooctl(ALICE, agent.socket, "pause")
    assert refused.returncode == 125
    assert "only an admin (root, the agent's user or a member of admin_groups)" in refused.stderr
    assert "may pause the queue" in refused.stderr
    assert chooctl(ALICE, agent.socket, "limit", "build", "1").returncode == 125
    assert chooctl(BOB, agent.socket, "resume", "--name", "build").returncode == 125
    assert agent.call("agent.info")["queue"]["pauses"] == []
    # Reading a limit is anyone's.
    assert ok(chooctl(ALICE, agent.socket, "limit", "build")) == (
        "build: no limit (max_concurrent applies)\n"
    )
    assert ok(chooctl(ADMIN, agent.socket, "pause", "--name", "build")) == (
        "jobs named build paused\n"
    )
    pause = agent.call("agent.info")["queue"]["pauses"][0]
    assert (pause["name"], pause["by"]) == ("build", users[ADMIN])
    assert ok(chooctl(ADMIN, agent.socket, "limit", "build", "3")).startswith("build: 3 (runtime")

    ok(chooctl(ALICE, agent.socket, "schedule", "add", "nightly", "0 3 * * *", image, "true"))
    refused = chooctl(BOB, agent.socket, "schedule", "suspend", "nightly")
    assert refused.returncode == 125 and "may suspend it" in refused.stderr
    assert ok(chooctl(ALICE, agent.socket, "schedule", "suspend", "nightly")) == (
        "nightly: suspended\n"
    )
    row = agent.call("schedule.list", name="nightly")
    assert row["suspended_by"] == users[ALICE]
    assert chooctl(BOB, agent.socket, "schedule", "resume", "nightly").returncode == 125
    assert ok(chooctl(ADMIN, agent.socket, "schedule", "resume", "nightly")).startswith(
        "nightly: resumed"
    )


@pytest.fixture
def notify():
    """systemd's side of sd_notify (tests/integration/test_systemd.py), at a short path."""
    directory = Path(tempfile.mkdtemp(prefix="choo-pause-"))
    listener = NotifySocket(directory / "notify")
    yield listener
    listener.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_the_systemd_status_says_what_is_paused_across_a_restart(make_agent, notify):
    agent = make_agent()
    env = {"NOTIFY_SOCKET": str(notify.path)}
    start_as_systemd(agent, env)
    ready = notify.wait_for("READY", "1")
    agent.wait_ready()
    ok(agent.chooctl("pause"))
    paused = notify.wait_for("STATUS", "0 running, 0 queued; queue paused", start=ready)
    ok(agent.chooctl("pause", "--name", "build"))
    both = notify.wait_for(
        "STATUS", "0 running, 0 queued; queue paused; names paused: build", start=paused
    )
    assert agent.stop(signal.SIGTERM) == 0
    start_as_systemd(agent, env)
    again = notify.wait_for("READY", "1", start=both + 1)
    status = notify.fields()[again]["STATUS"]
    assert status == "0 running, 0 queued; queue paused; names paused: build"
    agent.wait_ready()
    ok(agent.chooctl("resume"))
    ok(agent.chooctl("resume", "--name", "build"))
    notify.wait_for("STATUS", "0 running, 0 queued", start=again)

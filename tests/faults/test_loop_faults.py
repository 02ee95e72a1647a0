"""The reconcile loop of a real agent in a faulty world: its database locked by
another process for 15 s, one job's Podman call that never answers, and a
job whose end cannot be recorded (its inspect always fails) for a while.

Real agent, real rootless Podman, real SQLite file; the hung call comes from
the fault-injecting relay (tests/podman_relay.py). A read error (disk I/O) is
tested at the unit level (tests/unit/test_loop_faults.py): no file system
here fails reads on demand for an unprivileged test.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from agent.protocol.errors import StorageError
from tests.harness import HOLD, release, wait_until
from tests.podman_relay import Rule

pytestmark = pytest.mark.podman

#: How long the database stays locked: past the agent's busy timeout (10 s),
#: so writes fail rather than wait.
LOCK_SECONDS = 15.0


def degraded(agent) -> str:
    return agent.call("agent.info")["degraded"] or ""


def test_a_database_locked_for_15_s_degrades_the_agent_and_it_recovers(make_agent, image):
    agent = make_agent().start()
    held = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", HOLD]})["id"]
    agent.wait_state(held, "running")
    lock = sqlite3.connect(agent.state_dir / "choo.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    # The lock is the fault itself: it lasts 15 s, and at least until what
    # the test checks under it was seen.
    fifteen = threading.Event()
    threading.Timer(LOCK_SECONDS, fifteen.set).start()
    refused: list[StorageError] = []

    def submit() -> None:
        try:
            agent.call("job.submit", spec={"image": image, "command": ["true"]})
        except StorageError as exc:
            refused.append(exc)

    submitting = threading.Thread(target=submit)
    try:
        submitting.start()
        release(agent.podman_url, held)  # it ends: recording that needs a write
        wait_until(lambda: "database" in degraded(agent), 60, "degraded by the database")
        reason = degraded(agent)
        assert reason.startswith("database: ") and "locked" in reason, reason
        submitting.join(120)
        assert refused, "a submit under the lock was accepted"
        assert "locked by another process" in refused[0].message, refused[0].message
        assert agent.call("job.get", id=held)["state"] == "running"  # its end is not recorded
        fifteen.wait()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert agent.wait_state(held, "succeeded", timeout=60)["exit_code"] == 0
    wait_until(lambda: agent.call("agent.info")["degraded"] is None, 30, "degraded cleared")
    # The loop thread lives on: a job submitted after the lock runs.
    after = agent.call("job.submit", spec={"image": image, "command": ["echo", "after"]})["id"]
    assert agent.wait_state(after, "succeeded", timeout=60)["exit_code"] == 0
    assert agent.output_lines(after) == ["after"]
    assert "degraded: database: " in agent.log()


def test_a_hung_kill_of_one_job_holds_no_other(podman_relay, make_agent, image):
    # A long Podman timeout: the hung kill stays in flight while the others run.
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=120).start()
    # It ignores SIGTERM, so only the (hung) kill path could end it.
    spec = {"image": image, "command": ["sh", "-c", f"trap '' TERM; {HOLD}"], "stop_timeout": 1}
    stuck = agent.call("job.submit", spec=spec)["id"]
    agent.wait_state(stuck, "running")
    (container,) = [c for c in agent.containers() if f"choo-{stuck}" in c["Names"]]
    kill = rf"/containers/{container['Id']}/kill"
    podman_relay.add(Rule("POST", kill, hang=True))
    try:
        agent.call("job.cancel", id=stuck)
        wait_until(lambda: podman_relay.count("POST", kill), 30, "the kill sent (and hung)")
        others = [
            agent.call("job.submit", spec={"image": image, "command": ["echo", str(n)]})["id"]
            for n in range(10)
        ]
        for n, job in enumerate(others):
            assert agent.wait_state(job, "succeeded", timeout=120)["exit_code"] == 0
            assert agent.output_lines(job) == [str(n)]
        # The stuck job has not ended: its stop is still in flight.
        assert agent.call("job.get", id=stuck)["state"] == "running"
    finally:
        podman_relay.clear()  # the hung reply is dropped: the stop goes on
    final = agent.wait_state(stuck, "cancelled", timeout=120)
    assert final["state"] == "cancelled"


def test_a_finish_that_keeps_failing_backs_off_then_succeeds(podman_relay, make_agent, image):
    agent = make_agent(podman_url=podman_relay.url).start()
    # Not root: the finish of a job with a host directory at /out reads its
    # end from the exit file alone; one with a volume inspects to find it.
    spec = {"image": image, "command": ["sh", "-c", HOLD], "user": "1000"}
    job = agent.call("job.submit", spec=spec)["id"]
    agent.wait_state(job, "running")
    (container,) = [c for c in agent.containers() if f"choo-{job}" in c["Names"]]
    inspect = rf"/containers/{container['Id']}/json"
    # Every inspect of its container loses its reply: recording its end fails.
    podman_relay.add(Rule("GET", inspect, drop=True))
    try:
        release(agent.podman_url, job)
        # The agent's own tries, as it logs them (podman exec inspects too).
        wait_until(lambda: f"work on job {job} failed: " in agent.log(), 60, "the first try")
        first = time.monotonic()
        wait_until(lambda: "failed again (4 in a row)" in agent.log(), 60, "three retries")
        # Retried after 1, 2 and 4 s, not at every pass (a tight loop makes
        # hundreds in that time). A lower bound only: a slow machine waits longer.
        assert time.monotonic() - first >= 6
        assert agent.call("job.get", id=job)["state"] == "running"
    finally:
        podman_relay.clear()
    assert agent.wait_state(job, "succeeded", timeout=90)["exit_code"] == 0

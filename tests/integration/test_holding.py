"""Holding (``--hold``, ``chooctl release``) and delaying (``--delay``,
``--not-before``) through the real agent and Podman."""

from __future__ import annotations

import time

import pytest

from tests.harness import HOLD, release

pytestmark = pytest.mark.podman


def submit(agent, *args):
    done = agent.chooctl("submit", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_held_job_starts_only_once_released_and_across_a_restart(agent, image):
    held = submit(agent, "--hold", image, "echo", "released")
    # A job submitted after it runs first: the held one takes no turn.
    other = submit(agent, image, "sh", "-c", HOLD)
    agent.wait_state(other, "running")
    assert f"{held}" in agent.chooctl("ps").stdout
    assert "queued (held)" in agent.chooctl("ps").stdout
    release(agent.podman_url, other)
    assert agent.call("job.wait", id=other, timeout=60)["state"] == "succeeded"
    agent.stop()
    agent.start()
    # The other job's end woke the loop, as did the restart: still held.
    assert agent.call("job.get", id=held)["state"] == "queued"
    someone_else = agent.chooctl("release", other)
    assert someone_else.returncode != 0 and "not held" in someone_else.stderr
    done = agent.chooctl("release", held[:12])
    assert done.returncode == 0 and done.stdout.strip() == held
    job = agent.call("job.wait", id=held, timeout=60)
    assert job["state"] == "succeeded" and job["held"] is False
    events = agent.call("job.get", id=held)["events"]
    assert [e["kind"] for e in events if e["kind"] == "released"] == ["released"]


def test_a_delayed_job_starts_no_sooner_than_its_delay(agent, image):
    before = time.time()
    job_id = submit(agent, "--delay", "3s", image, "true")
    assert "queued (not before" in agent.chooctl("ps").stdout
    job = agent.call("job.wait", id=job_id, timeout=60)
    assert job["state"] == "succeeded"
    assert job["started_at"] >= before + 3
    assert job["not_before"] >= before + 3


def test_not_before_a_time_and_not_both(agent, image):
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    job_id = submit(agent, "--not-before", future, image, "true")
    job = agent.call("job.get", id=job_id)
    assert job["state"] == "queued" and job["not_before"] > time.time() + 3000
    both = agent.chooctl("submit", "--not-before", future, "--delay", "1m", image, "true")
    assert both.returncode != 0 and "not both" in both.stderr
    agent.call("job.cancel", id=job_id)

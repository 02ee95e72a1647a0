"""Timeouts, retries with backoff, OOM: each asserted on the job and its attempts."""

from __future__ import annotations

import json

import pytest

from tests.harness import podman, wait_until

pytestmark = pytest.mark.podman


def test_timeout_stops_the_job_and_fails_it(make_agent, image):
    agent = make_agent().start()
    job = agent.call(
        "job.submit",
        spec={"image": image, "command": ["sleep", "300"], "timeout": "1s", "stop_timeout": 1},
    )
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert (ended["state"], ended["reason"]) == ("failed", "timeout")
    assert ended["exit_code"] == 137  # sleep as PID 1 ignores SIGTERM: killed after the grace
    assert ended["ended_at"] - ended["started_at"] >= 2
    wait_until(lambda: agent.containers() == [], what="no container left")


def test_default_timeout_from_config(make_agent, image):
    agent = make_agent(default_timeout=1.0, default_stop_timeout=0.5).start()
    job = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    assert job["spec"]["timeout"] == 1.0
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert ended["reason"] == "timeout"


def test_retries_with_exponential_backoff(make_agent, image):
    # Exact doubling: no jitter (the default draws a random part of each wait).
    agent = make_agent(retry_backoff_base=0.5, retry_backoff_cap=10, retry_jitter=False).start()
    job = agent.call(
        "job.submit", spec={"image": image, "command": ["sh", "-c", "exit 7"], "retries": 2}
    )
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert (ended["state"], ended["reason"], ended["exit_code"]) == ("failed", "exit", 7)
    attempts = agent.call("job.get", id=job["id"])["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert [a["exit_code"] for a in attempts] == [7, 7, 7]
    assert [a["trigger"] for a in attempts] == ["rpc", "retry", "retry"]
    assert len({a["container_id"] for a in attempts}) == 3
    gaps = [b["started_at"] - a["ended_at"] for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0, gaps


def _limits_enforced(url: str) -> bool:
    info = json.loads(podman("--url", url, "info", "--format", "json").stdout)
    return info["host"]["cgroupVersion"] == "v2" or not info["host"]["security"]["rootless"]


def test_oom_kill_is_reason_oom(make_agent, podman_service, image):
    if not _limits_enforced(podman_service.url):
        pytest.skip("rootless Podman on cgroup v1 ignores memory limits on this host")
    agent = make_agent().start()
    job = agent.call(
        "job.submit",
        spec={
            "image": image,
            "command": ["sh", "-c", "head -c 200000000 /dev/zero | tail"],
            "resources": {"memory": "16m"},
        },
    )
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert (ended["state"], ended["reason"]) == ("failed", "oom")
    assert agent.call("job.get", id=job["id"])["attempts"][0]["oom"] is True
    wait_until(lambda: agent.containers() == [], what="no container left")

"""What Podman enforces is asked in the background: a slow ``GET /info`` never
holds up the agent's start, and ``agent.info`` waits for it only a moment."""

from __future__ import annotations

import threading

import pytest

from agent.adapters.podman import connection
from agent.adapters.podman.connection import Connection
from agent.protocol.errors import PodmanUnavailable

HOST = {"host": {"cgroupVersion": "v1", "security": {"rootless": True}, "cgroupControllers": []}}


class SlowInfo:
    """A podman-py client whose ``info()`` answers when the test lets it."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked = 0
        self.release = threading.Event()

    def info(self):
        self.asked += 1
        self.release.wait(10)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def podman_with(client: SlowInfo) -> Connection:
    podman = Connection("unix:///nonexistent/podman.sock", agent_id="A1", timeout=5)
    podman.client = client
    return podman


@pytest.fixture(autouse=True)
def long_wait(monkeypatch):
    """Answers the tests let through come well within the wait, however slow the box."""
    monkeypatch.setattr(connection, "LIMITS_WAIT", 10)


def test_an_answer_on_its_way_is_reported_as_unknown_yet_then_kept(monkeypatch):
    monkeypatch.setattr(connection, "LIMITS_WAIT", 0.05)
    client = SlowInfo([HOST])
    podman = podman_with(client)
    podman.ask_resource_limits()
    podman.ask_resource_limits()  # one ask at a time
    assert podman.resource_limits() == {
        "enforced": None,
        "reason": "unknown yet: Podman has not answered `info`",
    }
    client.release.set()
    podman._asking.join(5)
    limits = podman.resource_limits()
    assert limits["enforced"] is False
    assert limits["reason"] == "rootless Podman on cgroup v1 ignores resource limits"
    assert podman.resource_limits() is limits
    assert client.asked == 1


def test_an_answer_within_the_wait_is_returned_at_once():
    client = SlowInfo([HOST])
    client.release.set()
    assert podman_with(client).resource_limits()["cgroup_version"] == "v1"


def test_a_failed_ask_says_why_and_the_next_call_asks_again():
    client = SlowInfo([PodmanUnavailable("Podman is down"), HOST])
    client.release.set()
    podman = podman_with(client)
    podman.ask_resource_limits()
    podman._asking.join(5)
    assert podman.resource_limits()["rootless"] is True
    assert client.asked == 2


def test_a_failure_is_reported_until_podman_answers():
    client = SlowInfo([PodmanUnavailable("Podman is down"), RuntimeError("boom")])
    client.release.set()
    podman = podman_with(client)
    podman.ask_resource_limits()
    podman._asking.join(5)
    reason = podman.resource_limits()["reason"]
    assert reason == "unknown: asking Podman failed: RuntimeError('boom')"

"""Shared fixtures: a real rootless Podman service, real agents in temp dirs.

Tests that need Podman run as an unprivileged user with rootless Podman and a
readable journal; ``make test`` arranges all of that (and runs the suite as
user choo-test when invoked as root). How tests wait (never by sleeping) is
tests/harness.py's business.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest

from tests.harness import IMAGE, AgentProcess, PodmanService, podman, volumes_of, wait_until
from tests.podman_relay import PodmanRelay


@pytest.fixture(scope="session")
def image() -> str:
    if os.getuid() == 0:
        pytest.fail("the Podman tests run rootless: use 'make test' (it runs them as choo-test)")
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: use 'make test', which installs it")
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"test image {IMAGE} is missing: use 'make test', which builds it")
    return IMAGE


@pytest.fixture(scope="session")
def podman_service(image, tmp_path_factory):
    service = PodmanService(tmp_path_factory.mktemp("podman"))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def podman_relay(podman_service, tmp_path):
    """A fault-injecting relay in front of the tests' Podman (tests/podman_relay.py).

    Point an agent at it with ``make_agent(podman_url=podman_relay.url)``, and
    ask for this fixture *before* ``make_agent`` so the relay outlives the agents.
    """
    relay = PodmanRelay(str(podman_service.path), tmp_path / "relay.sock").start()
    yield relay
    relay.clear()
    relay.close()


def out_volumes(agent: AgentProcess) -> list[str]:
    """The names of the agent's /out volumes (``choo-out-<ID>``) Podman holds."""
    return [name for name in volumes_of(agent) if name.startswith("choo-out-")]


@pytest.fixture
def make_agent(podman_service, tmp_path):
    """Factory for agents; each is stopped, and its containers and /out volumes
    checked, at teardown.

    A running agent first gets the time to finish the removals an end it
    recorded handed out (a test may stop right after ``job.wait``)."""
    agents: list[AgentProcess] = []

    def make(**settings) -> AgentProcess:
        root = tmp_path / f"agent{len(agents)}"
        root.mkdir()
        agent = AgentProcess(root, podman_service.url, {"resync_interval": 2.0, **settings})
        agents.append(agent)
        return agent

    yield make
    leftovers, volumes = [], []
    for agent in agents:
        if agent.agent_id and agent.process is not None and agent.process.poll() is None:
            with contextlib.suppress(AssertionError):  # what is left is reported below
                wait_until(lambda a=agent: not out_volumes(a), 30, "no /out volume", 0.2)
        agent.stop()
        if agent.agent_id:
            leftovers += agent.containers()
            agent.remove_containers()
            volumes += out_volumes(agent)
            for name in out_volumes(agent):
                podman("--url", agent.podman_url, "volume", "rm", "-f", name, check=False)
    assert not leftovers, f"containers left behind: {[c['Names'] for c in leftovers]}"
    assert not volumes, f"/out volumes left behind: {volumes}"


@pytest.fixture
def agent(make_agent) -> AgentProcess:
    return make_agent().start()

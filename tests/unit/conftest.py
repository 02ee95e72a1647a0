"""Unit-test fixtures: a real SQLite Store and a Service wired to one change feed.

The agent's composition root (agent/daemon.py) hands the Store and the Service
the same ChangeFeed: the store publishes each committed event there, and the
service's waits (job.wait, events.subscribe, log follows) block on it. A test
that builds them by hand with two feeds gets a service that never hears the
store; these fixtures build them the one way. No Podman, no journal, no
scheduler: a test that needs one adds it.
"""

from __future__ import annotations

import pytest

from agent.adapters.files import JobFiles
from agent.adapters.joblogs import JobLogs
from agent.api.service import Service
from agent.config import Config
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store


@pytest.fixture
def unit_config(tmp_path) -> Config:
    """A Config whose socket, state and workspace roots all live under ``tmp_path``."""
    return Config(
        socket=tmp_path / "agent.sock",
        state_dir=tmp_path / "state",
        workspace_roots=[str(tmp_path / "ws")],
    )


@pytest.fixture
def change_feed() -> ChangeFeed:
    """The one feed the store publishes to and the service waits on."""
    return ChangeFeed()


@pytest.fixture
def feed_store(unit_config, change_feed):
    """An open Store on ``unit_config.database`` publishing to ``change_feed``."""
    store = Store(unit_config.database, change_feed)
    store.open()
    yield store
    store.close()


@pytest.fixture
def feed_service(feed_store, change_feed, unit_config) -> Service:
    """A Service over ``feed_store`` waiting on the same ``change_feed``."""
    return Service(
        feed_store,
        change_feed,
        JobLogs(unit_config.state_dir / "logs"),
        unit_config,
        wake=lambda: None,
        status=dict,
        files=JobFiles(unit_config.state_dir, unit_config),
    )

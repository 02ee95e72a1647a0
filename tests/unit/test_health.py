"""The loop's health: one late Podman reply is not an outage; the database's trouble is."""

from __future__ import annotations

import logging

from agent.adapters.podman.errors import PodmanLate
from agent.protocol.errors import PodmanUnavailable, StorageError
from agent.runtime.health import DATABASE, PODMAN, PODMAN_STRIKES, Health

LATE = PodmanLate("Podman did not answer in time when asked to start container choo-X")


def test_one_late_reply_between_answers_never_degrades_the_agent(caplog):
    health = Health()
    with caplog.at_level(logging.INFO, logger="agent.runtime.health"):
        for _ in range(10):
            health.work_failed(LATE)  # a worker's start came back late ...
            assert health.degraded is None
            health.set(PODMAN, None)  # ... and the next pass's listing worked
    assert not health.troubled(PODMAN)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "not yet degraded" in caplog.text


def test_podman_failing_in_a_row_degrades_then_clears():
    health = Health()
    for _ in range(PODMAN_STRIKES - 1):
        health.work_failed(LATE)
    assert health.degraded is None
    cause, _delay = health.pass_failed(PodmanUnavailable("Podman did not answer: refused"))
    assert cause == PODMAN
    assert health.degraded == "Podman did not answer: refused"
    health.set(PODMAN, "Podman did not answer: still refused")  # a newer reason shows at once
    assert health.degraded == "Podman did not answer: still refused"
    health.set(PODMAN, None)
    assert health.degraded is None
    # Forgotten: it takes as many failures in a row again.
    health.work_failed(LATE)
    assert health.degraded is None


def test_the_database_degrades_at_once():
    health = Health()
    health.work_failed(StorageError("the database is locked by another process"))
    assert health.troubled(DATABASE)
    assert health.degraded == "database: the database is locked by another process"
    health.pass_succeeded(database=True)
    assert health.degraded is None

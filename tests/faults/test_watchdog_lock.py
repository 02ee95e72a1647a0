"""A database locked for long while submits keep coming: degraded, but the watchdog is petted.

A real agent started as systemd would (a fake ``$NOTIFY_SOCKET`` with
``WATCHDOG_USEC``, tests/integration/test_systemd.py's), a real SQLite file
locked by this process (``BEGIN EXCLUSIVE``), and twenty clients submitting
through the real socket all along. Each write of the agent meets SQLite's
busy timeout; queued one behind the other on the agent's own write lock
they used to hold the loop's write for minutes, and systemd's watchdog
fired on a loop that was only waiting. (That a truly hung loop stops the
pets: test_systemd.py's ``test_no_watchdog_while_the_controller_loop_hangs``.)
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

import pytest

from agent.protocol.errors import StorageError
from agent.protocol.states import TERMINAL
from tests.harness import HOLD, release, wait_until
from tests.integration.test_systemd import NotifySocket, start_as_systemd

pytestmark = pytest.mark.podman

#: The watchdog period systemd would enforce (the unit's is 60 s).
WATCHDOG_SECONDS = 40
SUBMITTERS = 20


@pytest.fixture
def notify():
    folder = Path(tempfile.mkdtemp(prefix="choo-wd-"))  # AF_UNIX paths are short
    listener = NotifySocket(folder / "notify")
    yield listener
    listener.close()
    shutil.rmtree(folder, ignore_errors=True)


def degraded(agent) -> str:
    return agent.call("agent.info")["degraded"] or ""


def test_a_long_lock_under_many_submits_degrades_but_keeps_the_watchdog_petted(
    make_agent, image, notify
):
    agent = make_agent()
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": str(WATCHDOG_SECONDS * 1_000_000),
        "WATCHDOG_PID": "self",
    }
    start_as_systemd(agent, env)
    notify.wait_for("READY", "1")
    held = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", HOLD]})["id"]
    agent.wait_state(held, "running")
    lock = sqlite3.connect(agent.state_dir / "choo.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    done = threading.Event()
    refused: list[StorageError] = []

    def submit_all_along() -> None:
        with agent.client(timeout=900) as client:
            while not done.is_set():
                try:
                    client.call("job.submit", spec={"image": image, "command": ["true"]})
                except StorageError as exc:
                    refused.append(exc)

    submitters = [threading.Thread(target=submit_all_along) for _ in range(SUBMITTERS)]
    try:
        for thread in submitters:
            thread.start()
        release(agent.podman_url, held)  # its end needs a write: the loop then probes
        wait_until(lambda: "database" in degraded(agent), 120, "degraded by the database")
        seen = len(notify.fields())
        # Three pets in a row, each within the period systemd would allow.
        for _ in range(3):
            seen = notify.wait_for("WATCHDOG", "1", start=seen, timeout=WATCHDOG_SECONDS) + 1
        reason = degraded(agent)
        assert reason.startswith("database: ") and "locked" in reason, reason
        assert agent.process.poll() is None
        assert refused and "locked by another process" in refused[0].message
        assert agent.call("job.get", id=held)["state"] == "running"  # its end waits
    finally:
        done.set()
        lock.execute("ROLLBACK")
        lock.close()
        for thread in submitters:
            thread.join(120)
    assert agent.wait_state(held, "succeeded", timeout=60)["exit_code"] == 0
    wait_until(lambda: degraded(agent) == "", 60, "degraded cleared")
    after = agent.call("job.submit", spec={"image": image, "command": ["echo", "after"]})["id"]
    assert agent.wait_state(after, "succeeded", timeout=60)["exit_code"] == 0
    # What was accepted under the lock runs too.
    wait_until(
        lambda: all(j["state"] in TERMINAL for j in agent.call("job.list", all=True)["jobs"]),
        120,
        "every accepted job ended",
    )

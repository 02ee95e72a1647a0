"""A bulk prune killed by a real SIGKILL part way: the database holds every job
whole or not at all, its counts are right, and the next prune finishes the work;
and the folders a removal left (the agent died between the rows and the files)
are swept at the next start.

A child process prunes a real SQLite file in batches of 200 jobs and, inside
the second batch's transaction (its rows deleted, not yet committed), says so
and waits; the test then kills it with SIGKILL. No Podman is needed for that
one; the sweep's test runs real jobs on a real agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.protocol import spec as specs
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store
from tests.bench_history import build_history
from tests.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
HISTORY = 1000
BATCH = 200

#: The child: prune everything prunable, stopping inside the second batch.
CHILD = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from agent.runtime.changes import ChangeFeed
from agent.storage import jobs
from agent.storage.store import Store

jobs._BATCH = {BATCH}

class Paused(Store):
    batches = 0

    def _delete_finished(self, ids):
        gone = super()._delete_finished(ids)
        self.batches += 1
        print(f"batch {{self.batches}} deleted {{len(gone)}}", flush=True)
        if self.batches == 2:
            sys.stdin.readline()  # killed here, inside the transaction
        return gone

store = Paused(Path(sys.argv[1]), ChangeFeed())
store.open()
store.remove_jobs(store.prunable(ended_before=time.time()))
print("finished", flush=True)
"""


def sql(path: Path, query: str, *args) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as con:
        return con.execute(query, args).fetchall()


def whole_or_gone(path: Path) -> dict[str, int]:
    """Check every invariant a prune must keep; the jobs left, by state."""
    assert sql(path, "PRAGMA quick_check") == [("ok",)]
    assert sql(path, "PRAGMA foreign_key_check") == []
    counted = dict(sql(path, "SELECT state, n FROM job_count WHERE n != 0"))
    actual = dict(sql(path, "SELECT state, COUNT(*) FROM job GROUP BY state"))
    assert counted == actual
    # Every history job left has all its rows: 1 attempt, 4 events, 2 labels.
    partial = sql(
        path,
        "SELECT job.id FROM job WHERE job.id IN (SELECT job_id FROM job_label"
        " WHERE key = 'kind' AND value = 'bench') AND ("
        " (SELECT COUNT(*) FROM attempt WHERE job_id = job.id) != 1"
        " OR (SELECT COUNT(*) FROM event WHERE job_id = job.id) != 4"
        " OR (SELECT COUNT(*) FROM job_label WHERE job_id = job.id) != 2)",
    )
    assert partial == []
    return actual


@pytest.fixture
def history(tmp_path) -> tuple[Path, str, str]:
    """A database of ``HISTORY`` finished jobs, plus a finished job a queued one
    waits on and a running job; their IDs."""
    path = tmp_path / "state" / "choo.db"
    build_history(path, jobs=HISTORY)
    store = Store(path, ChangeFeed())
    store.open()
    try:
        spec = specs.normalize({"image": "alpine", "command": ["true"]})
        waited = store.add_job(spec, trigger="rpc", queue_limit=10)["id"]
        store.transition(waited, State.STARTING, new_attempt="rpc")
        store.transition(waited, State.RUNNING)
        store.transition(waited, State.SUCCEEDED, exit_code=0)
        after = specs.normalize({"image": "alpine", "command": ["true"], "after": [{"id": waited}]})
        store.add_job(after, trigger="rpc", queue_limit=10)
        running = store.add_job(spec, trigger="rpc", queue_limit=10)["id"]
        store.transition(running, State.STARTING, new_attempt="rpc")
        store.transition(running, State.RUNNING)
    finally:
        store.close()
    return path, waited, running


def test_a_prune_killed_mid_batch_leaves_every_job_whole_or_gone(history):
    path, waited, running = history
    tallies = sql(path, "SELECT name, labels, value FROM tally ORDER BY name, labels")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == f"batch 1 deleted {BATCH}"
        assert child.stdout.readline().strip() == f"batch 2 deleted {BATCH}"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL

    # The first batch is gone, the second (killed before its commit) is whole.
    left = whole_or_gone(path)
    assert left[State.SUCCEEDED] + left[State.FAILED] == HISTORY + 1 - BATCH
    # Removing jobs never changes the metrics' counters (they outlive prunes).
    assert sql(path, "SELECT name, labels, value FROM tally ORDER BY name, labels") == tallies

    store = Store(path, ChangeFeed())
    store.open()
    try:
        removed = store.remove_jobs(store.prunable(ended_before=time.time()))
    finally:
        store.close()
    assert len(removed) == HISTORY - BATCH
    left = whole_or_gone(path)
    # What remains: the job another waits on, that waiter, the running job.
    assert left == {State.SUCCEEDED: 1, State.QUEUED: 1, State.RUNNING: 1}
    assert sql(path, "SELECT id FROM job WHERE state != 'queued' ORDER BY id") == sorted(
        [(waited,), (running,)]
    )
    assert sql(path, "SELECT COUNT(*) FROM job_dependency") == [(1,)]
    assert json.loads(sql(path, "SELECT spec FROM job WHERE state = 'queued'")[0][0])["after"]


def test_folders_of_jobs_removed_behind_the_agents_back_go_at_the_next_start(make_agent, image):
    agent = make_agent().start()
    spec = {"image": image, "command": ["echo", "hello"]}
    gone, kept = (agent.call("job.submit", spec=spec)["id"] for _ in range(2))
    for job_id in (gone, kept):
        assert agent.call("job.wait", id=job_id, timeout=60)["state"] == State.SUCCEEDED
    logs, files = agent.state_dir / "logs", agent.state_dir / "jobs"
    # Each job has a folder of files too; and folders named as no job is.
    for folder in (files / gone, files / kept, logs / "not-a-job", files / "not-a-job"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "x").write_text("x")
    agent.stop()
    # The rows go as a prune's do, the folders stay: as if it died in between.
    with contextlib.closing(sqlite3.connect(agent.state_dir / "choo.db")) as con:
        con.execute("PRAGMA foreign_keys = 1")
        con.execute("DELETE FROM job WHERE id = ?", (gone,))
        con.commit()
    assert (logs / gone).is_dir()

    agent.start()
    wait_until(
        lambda: not (logs / gone).exists() and not (files / gone).exists(),
        what="the folders of the removed job to be swept",
    )
    assert "folders of jobs that have no record" in agent.log_path.read_text()
    # A job that exists keeps its folders; a folder not named as a job ID stays.
    assert [path.name for path in (logs / kept).iterdir()] == ["1.log"]
    for folder in (files / kept, logs / "not-a-job", files / "not-a-job"):
        assert (folder / "x").read_text() == "x"

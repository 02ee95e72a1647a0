"""The start-up sweep of folders a removal left (agent/api/removal.py): a real
Store on a real SQLite file, real folders under the state dir."""

from __future__ import annotations

import os
import time

import pytest
from ulid import ULID

from agent.api import removal
from agent.protocol import spec as specs

SPEC = specs.normalize({"image": "alpine", "command": ["true"]})


def folder(path, age: float = 100.0):
    """Make ``path`` with a file in it, last changed ``age`` seconds ago."""
    path.mkdir(parents=True)
    (path / "1.log").write_text("x")
    when = time.time() - age
    os.utime(path, (when, when))
    return path


@pytest.fixture
def roots(feed_service):
    return feed_service.job_logs.root, feed_service.files.root


def test_only_folders_of_jobs_without_a_record_made_before_the_start_go(feed_service, roots):
    logs, files = roots
    job = feed_service.store.add_job(SPEC, trigger="rpc", queue_limit=10)["id"]
    orphan, fresh = str(ULID()), str(ULID())
    kept = [
        folder(logs / job),
        folder(files / job),
        folder(logs / fresh, age=-10),  # changed after the start: a submit under way
        folder(logs / "notes"),
        folder(logs / orphan.lower()),  # not how a job ID is written
    ]
    gone = [folder(logs / orphan), folder(files / orphan)]

    assert feed_service.sweep_leftovers(made_before=time.time()) == 2
    assert [path for path in gone if path.exists()] == []
    assert [path for path in kept if not path.exists()] == []


def test_many_orphans_are_looked_up_in_batches(feed_service, roots, monkeypatch):
    logs, _ = roots
    monkeypatch.setattr(removal, "_SWEEP_BATCH", 2)
    job = feed_service.store.add_job(SPEC, trigger="rpc", queue_limit=10)["id"]
    orphans = [folder(logs / str(ULID())) for _ in range(5)]
    mine = folder(logs / job)
    asked = []
    states_of = feed_service.store.states_of
    monkeypatch.setattr(
        feed_service.store, "states_of", lambda ids: asked.append(len(ids)) or states_of(ids)
    )

    assert feed_service.sweep_leftovers(made_before=time.time()) == 5
    assert asked == [2, 2, 2]
    assert not any(path.exists() for path in orphans) and mine.exists()


def test_no_folders_at_all_is_nothing_to_do(feed_service):
    assert feed_service.sweep_leftovers(made_before=time.time()) == 0

"""A schema 7 database (frozen in frozen_schemas.py) upgrades through schema 8:
its schedules gain the suspension columns (none suspended), and the queue's
pauses and runtime limits get their table, empty."""

from __future__ import annotations

import contextlib
import json
import sqlite3

from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store
from tests.unit.frozen_schemas import V7_SCHEMA, assert_as_new, sql

AGENT_ID = "01JD0000000000000000000000"
JOB = "01JD0000000000000000000030"
SPEC = {"image": "alpine", "command": ["true"], "name": "build", "labels": {}}


def make_v7(path):
    """A v7 database with one queued job of name ``build`` and one schedule."""
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V7_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", "7"), ("agent_id", AGENT_ID)]
        )
        con.execute(
            "INSERT INTO job (id, name, state, priority, trigger, spec, labels, attempt,"
            " retries_left, cancel_requested, submitted_at) VALUES"
            " (?, 'build', 'queued', 0, 'cli', ?, '{}', 0, 0, 0, 40.0)",
            (JOB, json.dumps(SPEC)),
        )
        con.execute(
            "INSERT INTO schedule (name, cron, spec, concurrency, catch_up, history_limit,"
            " created_at, created_by, last_fire, last_skip) VALUES"
            " ('nightly', '@daily', ?, 'allow', 1, 10, 30.0, 1000, 30.0, '1970: missed')",
            (json.dumps(SPEC),),
        )


def test_v7_database_gains_suspension_and_an_empty_queue_control(tmp_path):
    path = tmp_path / "choo.db"
    make_v7(path)
    store = Store(path, ChangeFeed())
    store.open()
    try:
        nightly = store.get_schedule("nightly")
        assert nightly["suspended_at"] is None and nightly["suspended_by"] is None
        assert nightly["last_skip"] == "1970: missed" and nightly["created_by"] == 1000
        control = store.queue_control()
        assert not control.paused and not control.paused_names and not control.limits
        assert store.get(JOB)["state"] == "queued"
        # The new features work on the upgraded file.
        assert store.set_paused("build", True, at=50.0, by=0)
        assert store.set_limit("build", 2)
        store.update_schedule("nightly", suspended_at=60.0, suspended_by=1000)
        assert store.queue_control().paused_names == {"build"}
        assert store.get_schedule("nightly")["suspended_at"] == 60.0
    finally:
        store.close()
    assert_as_new(path, tmp_path)


def test_v7_upgrade_keeps_the_tally_of_skips_counting(tmp_path):
    path = tmp_path / "choo.db"
    make_v7(path)
    store = Store(path, ChangeFeed())
    store.open()
    try:
        store.update_schedule("nightly", last_skip="2026-01-01T00:00:00+00:00: suspended")
    finally:
        store.close()
    rows = sql(path, "SELECT labels, value FROM tally WHERE name = 'schedule_skips'")
    assert rows == [(json.dumps({"schedule": "nightly"}, separators=(",", ":")), 1.0)]

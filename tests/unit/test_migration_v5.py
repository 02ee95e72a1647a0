"""A schema 4 database (frozen in frozen_schemas.py) upgrades through schema 5:
its attempts gain usage columns, empty for the attempts that ran before."""

from __future__ import annotations

import contextlib
import sqlite3

from agent.runtime.changes import ChangeFeed
from agent.storage.store import SCHEMA_VERSION, Store
from tests.unit.frozen_schemas import V4_SCHEMA

JOB = "01JD0000000000000000000020"
SPEC = '{"image": "alpine", "command": ["true"], "labels": {}}'


def make_v4(path):
    """A v4 database with one finished job and its attempt."""
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V4_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("schema_version", "4"), ("agent_id", "01JD0000000000000000000000")],
        )
        con.execute(
            "INSERT INTO job (id, name, state, priority, trigger, spec, labels, attempt,"
            " retries_left, cancel_requested, submitted_at, started_at, ended_at) VALUES"
            " (?, 'n', 'succeeded', 0, 'cli', ?, '{}', 1, 0, 0, 40.0, 41.0, 43.5)",
            (JOB, SPEC),
        )
        con.execute(
            "INSERT INTO attempt (job_id, number, trigger, oom, started_at, ended_at)"
            " VALUES (?, 1, 'cli', 0, 41.0, 43.5)",
            (JOB,),
        )


def master(path):
    with contextlib.closing(sqlite3.connect(path)) as con:
        return sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))


def test_v4_attempts_gain_empty_usage_and_the_schema_of_a_new_file(tmp_path):
    path = tmp_path / "choo.db"
    make_v4(path)
    store = Store(path, ChangeFeed())
    store.open()
    try:
        (attempt,) = store.attempts(JOB)
        assert attempt["usage"] == {
            "cpu_seconds": None,
            "memory_peak": None,
            "io_read": None,
            "io_write": None,
            "pids_peak": None,
            "wall_seconds": 2.5,
            "queue_wait": None,
            "sampled": None,
        }
        assert store.summaries()[0]["usage"] == {"cpu_seconds": None, "memory_peak": None}
        store.update_attempt(JOB, 1, cpu_seconds=1.5, memory_peak=1 << 20, usage_sampled=True)
        assert store.summaries()[0]["usage"] == {"cpu_seconds": 1.5, "memory_peak": 1 << 20}
    finally:
        store.close()
    fresh = Store(tmp_path / "fresh" / "choo.db", ChangeFeed())
    (tmp_path / "fresh").mkdir()
    fresh.open()
    fresh.close()
    assert master(path) == master(tmp_path / "fresh" / "choo.db")
    assert SCHEMA_VERSION >= 5

"""A database written by an older agent opens, upgraded, with its history intact.

The v1 schema below is frozen: it is what choo-agent 0.1.0 (SCHEMA_VERSION 1)
created, copied from its sqlite_master. Never edit it; add the next version's
frozen DDL beside it when the schema moves again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest

from agent.protocol import spec as specs
from agent.protocol.errors import AmbiguousPrefix, StorageError
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import SCHEMA_VERSION, Store
from tests.unit.frozen_schemas import V4_SCHEMA, schema, sql

V1_SCHEMA = """
CREATE TABLE "job" ("id" VARCHAR(26) NOT NULL PRIMARY KEY, "name" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "exit_code" INTEGER, "priority" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "labels" TEXT NOT NULL, "attempt" INTEGER NOT NULL, "retries_left" INTEGER NOT NULL, "cancel_requested" INTEGER NOT NULL, "submitted_at" REAL NOT NULL, "started_at" REAL, "ended_at" REAL, "not_before" REAL, "stop_sent_at" REAL, "stop_reason" VARCHAR(255), "submitter_uid" INTEGER, "submitter_pid" INTEGER, "log_tail" TEXT);
CREATE INDEX "job_name" ON "job" ("name");
CREATE INDEX "job_state" ON "job" ("state");
CREATE TABLE "attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "number" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "container_id" VARCHAR(255), "started_at" REAL, "ended_at" REAL, "exit_code" INTEGER, "reason" VARCHAR(255), "oom" INTEGER NOT NULL, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "attempt_job_id" ON "attempt" ("job_id");
CREATE UNIQUE INDEX "attempt_job_id_number" ON "attempt" ("job_id", "number");
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "time" REAL NOT NULL, "kind" VARCHAR(255) NOT NULL, "state" VARCHAR(255), "detail" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
"""  # noqa: E501

AGENT_ID = "01JD0000000000000000000000"
FINISHED = "01JD0000000000000000000001"
RUNNING = "01JD0000000000000000000002"
V1_SPEC = {
    "image": "alpine",
    "command": ["sh", "-c", "exit 3"],
    "name": "nightly",
    "env": {},
    "workdir": None,
    "user": None,
    "timeout": None,
    "stop_timeout": 10.0,
    "resources": {},
    "pull": "missing",
    "retries": 0,
    "network": "none",
    "labels": {"team": "ci"},
    "priority": 0,
}


def make_v1(path):
    """A v1 database holding a failed job with its attempt and events, and a running one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V1_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("agent_id", AGENT_ID)]
        )
        job = (
            "INSERT INTO job (id, name, state, reason, exit_code, priority, trigger, spec, labels,"
            " attempt, retries_left, cancel_requested, submitted_at, started_at, ended_at,"
            " log_tail) VALUES (?, 'nightly', ?, ?, ?, 0, 'cli', ?, '{\"team\": \"ci\"}',"
            " 1, 0, 0, 100.0, 101.0, ?, ?)"
        )
        con.execute(job, (FINISHED, "failed", "exit", 3, json.dumps(V1_SPEC), 102.0, "boom"))
        con.execute(job, (RUNNING, "running", None, None, json.dumps(V1_SPEC), None, None))
        con.execute(
            "INSERT INTO attempt (job_id, number, trigger, container_id, started_at, ended_at,"
            " exit_code, reason, oom) VALUES (?, 1, 'cli', 'c0ffee', 101.0, 102.0, 3, 'exit', 0)",
            (FINISHED,),
        )
        for state in ("queued", "starting", "running", "failed"):
            con.execute(
                "INSERT INTO event (job_id, time, kind, state, detail) VALUES (?, 100.0, 'state',"
                " ?, '{}')",
                (FINISHED, state),
            )


@pytest.fixture
def upgraded(tmp_path):
    path = tmp_path / "state" / "choo.db"
    make_v1(path)
    store = Store(path, ChangeFeed())
    store.open()
    yield store, path
    store.close()


def test_v1_database_is_upgraded_and_keeps_its_identity(upgraded):
    store, path = upgraded
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert store.agent_id == AGENT_ID


def test_v1_jobs_attempts_and_events_survive(upgraded):
    store, _ = upgraded
    job = store.get(FINISHED)
    assert (job["state"], job["reason"], job["exit_code"], job["log_tail"]) == (
        "failed",
        "exit",
        3,
        "boom",
    )
    assert job["spec"] == V1_SPEC
    assert job["trigger"] == "cli"
    assert [a["container_id"] for a in store.attempts(FINISHED)] == ["c0ffee"]
    assert [e["state"] for e in store.events(FINISHED)] == [
        "queued",
        "starting",
        "running",
        "failed",
    ]


def test_v1_jobs_read_with_the_new_fields_defaulted(upgraded):
    store, _ = upgraded
    finished, running = store.get(FINISHED), store.get(RUNNING)
    assert finished["artifacts"]["state"] == "none"  # it ended before artifacts existed
    assert running["artifacts"]["state"] == "pending"
    assert finished["workspace"] is None
    assert (finished["schedule"], finished["scheduled_for"], finished["catch_up"]) == (
        None,
        None,
        False,
    )


def test_upgraded_database_takes_the_new_features(upgraded):
    store, path = upgraded
    store.add_schedule(
        name="nightly",
        cron="0 3 * * *",
        timezone=None,
        spec={"image": "alpine"},
        concurrency="forbid",
        catch_up=True,
        history_limit=3,
        created_at=1.0,
        created_by=None,
        last_fire=1.0,
    )
    assert [s["name"] for s in store.schedules()] == ["nightly"]
    store.transition(
        RUNNING,
        State.SUCCEEDED,
        artifacts_state="packed",
        artifacts_path="/x",
        artifacts_size=3,
        artifacts_sha256="ab",
    )
    assert store.get(RUNNING)["artifacts"]["size"] == 3
    assert ("job_schedule",) in sql(path, "SELECT name FROM sqlite_master WHERE type = 'index'")
    assert [r["id"] for r in store.remove_jobs([FINISHED])] == [FINISHED]
    # The v1 foreign keys cascade: the attempt and events went with the job.
    assert sql(path, f"SELECT COUNT(*) FROM attempt WHERE job_id = '{FINISHED}'") == [(0,)]


def test_upgrade_happens_once(tmp_path):
    path = tmp_path / "choo.db"
    make_v1(path)
    for _ in range(2):
        store = Store(path, ChangeFeed())
        store.open()
        assert store.get(FINISHED)["state"] == "failed"
        store.close()


def test_a_failed_upgrade_leaves_the_v1_database_as_it_was(tmp_path, monkeypatch):
    from agent.storage import migrations

    path = tmp_path / "choo.db"
    make_v1(path)

    def broken(db):
        migrations._v1_to_v2(db)
        raise StorageError("disk on fire")

    monkeypatch.setitem(migrations.STEPS, 1, broken)
    store = Store(path, ChangeFeed())
    with pytest.raises(StorageError):
        store.open()
    store.close()
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    columns = [row[1] for row in sql(path, "PRAGMA table_info(job)")]
    assert "artifacts_state" not in columns


#: What choo-agent created at SCHEMA_VERSION 2 (frozen, from its sqlite_master).
V2_SCHEMA = """
CREATE TABLE "job" ("id" VARCHAR(26) NOT NULL PRIMARY KEY, "name" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "exit_code" INTEGER, "priority" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "labels" TEXT NOT NULL, "attempt" INTEGER NOT NULL, "retries_left" INTEGER NOT NULL, "cancel_requested" INTEGER NOT NULL, "submitted_at" REAL NOT NULL, "started_at" REAL, "ended_at" REAL, "not_before" REAL, "stop_sent_at" REAL, "stop_reason" VARCHAR(255), "submitter_uid" INTEGER, "submitter_pid" INTEGER, "log_tail" TEXT, "schedule" VARCHAR(255), "scheduled_for" REAL, "catch_up" INTEGER, "workspace" TEXT, "workspace_size" INTEGER, "artifacts_state" VARCHAR(255), "artifacts_path" TEXT, "artifacts_size" INTEGER, "artifacts_sha256" VARCHAR(255), "artifacts_message" TEXT);
CREATE INDEX "job_name" ON "job" ("name");
CREATE INDEX "job_state" ON "job" ("state");
CREATE INDEX "job_schedule" ON "job" ("schedule");
CREATE TABLE "attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "number" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "container_id" VARCHAR(255), "started_at" REAL, "ended_at" REAL, "exit_code" INTEGER, "reason" VARCHAR(255), "oom" INTEGER NOT NULL, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "attempt_job_id" ON "attempt" ("job_id");
CREATE UNIQUE INDEX "attempt_job_id_number" ON "attempt" ("job_id", "number");
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "time" REAL NOT NULL, "kind" VARCHAR(255) NOT NULL, "state" VARCHAR(255), "detail" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "schedule" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "cron" VARCHAR(255) NOT NULL, "timezone" VARCHAR(255), "spec" TEXT NOT NULL, "concurrency" VARCHAR(255) NOT NULL, "catch_up" INTEGER NOT NULL, "history_limit" INTEGER NOT NULL, "created_at" REAL NOT NULL, "created_by" INTEGER, "last_fire" REAL NOT NULL, "last_job" VARCHAR(255), "last_skip" TEXT);
CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
"""  # noqa: E501


def test_v2_database_gains_the_log_columns(tmp_path):
    path = tmp_path / "choo.db"
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V2_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", "2"), ("agent_id", AGENT_ID)]
        )
        con.execute(
            "INSERT INTO job (id, state, priority, trigger, spec, labels, attempt, retries_left,"
            " cancel_requested, submitted_at) VALUES (?, 'running', 0, 'cli', ?, '{}', 1, 0, 0,"
            " 100.0)",
            (RUNNING, json.dumps(V1_SPEC)),
        )
        con.execute(
            "INSERT INTO attempt (job_id, number, trigger, oom) VALUES (?, 1, 'cli', 0)",
            (RUNNING,),
        )
    store = Store(path, ChangeFeed())
    store.open()
    try:
        assert store.get(RUNNING)["log_lost"] is None
        assert store.get(RUNNING)["log_dropped"] is None
        assert store.attempts(RUNNING)[0]["log_shipped"] is None
        store.update_attempt(RUNNING, 1, log_shipped=42)
        store.update(RUNNING, log_lost=7, log_dropped=9)
        assert store.attempts(RUNNING)[0]["log_shipped"] == 42
        assert store.get(RUNNING)["log_lost"] == 7
        assert store.get(RUNNING)["log_dropped"] == 9
    finally:
        store.close()
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


#: What choo-agent created at SCHEMA_VERSION 3 (frozen, from its sqlite_master).
V3_SCHEMA = """
CREATE TABLE "job" ("id" VARCHAR(26) NOT NULL PRIMARY KEY, "name" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "exit_code" INTEGER, "priority" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "labels" TEXT NOT NULL, "attempt" INTEGER NOT NULL, "retries_left" INTEGER NOT NULL, "cancel_requested" INTEGER NOT NULL, "submitted_at" REAL NOT NULL, "started_at" REAL, "ended_at" REAL, "not_before" REAL, "stop_sent_at" REAL, "stop_reason" VARCHAR(255), "submitter_uid" INTEGER, "submitter_pid" INTEGER, "log_tail" TEXT, "schedule" VARCHAR(255), "scheduled_for" REAL, "catch_up" INTEGER, "workspace" TEXT, "workspace_size" INTEGER, "artifacts_state" VARCHAR(255), "artifacts_path" TEXT, "artifacts_size" INTEGER, "artifacts_sha256" VARCHAR(255), "artifacts_message" TEXT, "log_lost" INTEGER, "log_dropped" INTEGER);
CREATE INDEX "job_name" ON "job" ("name");
CREATE INDEX "job_state" ON "job" ("state");
CREATE INDEX "job_schedule" ON "job" ("schedule");
CREATE TABLE "attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "number" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "container_id" VARCHAR(255), "started_at" REAL, "ended_at" REAL, "exit_code" INTEGER, "reason" VARCHAR(255), "oom" INTEGER NOT NULL, "log_shipped" INTEGER, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "attempt_job_id" ON "attempt" ("job_id");
CREATE UNIQUE INDEX "attempt_job_id_number" ON "attempt" ("job_id", "number");
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "time" REAL NOT NULL, "kind" VARCHAR(255) NOT NULL, "state" VARCHAR(255), "detail" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "schedule" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "cron" VARCHAR(255) NOT NULL, "timezone" VARCHAR(255), "spec" TEXT NOT NULL, "concurrency" VARCHAR(255) NOT NULL, "catch_up" INTEGER NOT NULL, "history_limit" INTEGER NOT NULL, "created_at" REAL NOT NULL, "created_by" INTEGER, "last_fire" REAL NOT NULL, "last_job" VARCHAR(255), "last_skip" TEXT);
CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
"""  # noqa: E501

V3_JOBS = {
    # id: (state, labels, ended_at)
    "01JD0000000000000000000010": ("succeeded", {"team": "ci", "tier": "gold"}, 50.0),
    "01JD0000000000000000000011": ("failed", {"team": "ci"}, 60.0),
    "01JD0000000000000000000012": ("running", {}, None),
    "01JD0000000000000000000013": ("queued", {"team": "web"}, None),
}


def make_v3(path):
    """A v3 database holding jobs in several states, most of them labelled."""
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V3_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", "3"), ("agent_id", AGENT_ID)]
        )
        for job_id, (state, labels, ended_at) in V3_JOBS.items():
            con.execute(
                "INSERT INTO job (id, name, state, priority, trigger, spec, labels, attempt,"
                " retries_left, cancel_requested, submitted_at, ended_at, log_tail) VALUES"
                " (?, 'nightly', ?, 0, 'cli', ?, ?, 1, 0, 0, 40.0, ?, 'x')",
                (
                    job_id,
                    state,
                    json.dumps({**V1_SPEC, "labels": labels}),
                    json.dumps(labels),
                    ended_at,
                ),
            )
            con.execute(
                "INSERT INTO attempt (job_id, number, trigger, oom) VALUES (?, 1, 'cli', 0)",
                (job_id,),
            )


@pytest.fixture
def from_v3(tmp_path):
    path = tmp_path / "choo.db"
    make_v3(path)
    store = Store(path, ChangeFeed())
    store.open()
    yield store, path
    store.close()


def test_v3_database_ends_with_the_schema_of_a_new_one(from_v3, tmp_path):
    _, path = from_v3
    fresh = Store(tmp_path / "fresh.db", ChangeFeed())
    fresh.open()
    fresh.close()
    assert schema(path) == schema(tmp_path / "fresh.db")
    indexes = {row[0] for row in sql(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"job_state_id", "job_name_id"} <= indexes
    assert not {"job_state", "job_name"} & indexes
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


def test_v3_labels_are_copied_into_their_table(from_v3):
    store, path = from_v3
    expected = sorted(
        (job_id, key, value)
        for job_id, (_, labels, _) in V3_JOBS.items()
        for key, value in labels.items()
    )
    assert sorted(sql(path, "SELECT job_id, key, value FROM job_label")) == expected
    assert [j["id"] for j in store.summaries(labels={"team": "ci"})] == [
        "01JD0000000000000000000011",
        "01JD0000000000000000000010",
    ]
    assert [j["id"] for j in store.summaries(labels={"team": "ci", "tier": "gold"})] == [
        "01JD0000000000000000000010"
    ]


def test_v3_jobs_are_counted_and_the_count_follows_new_changes(from_v3):
    store, _ = from_v3
    assert store.counts() == {
        "queued": 1,
        "starting": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    store.transition("01JD0000000000000000000013", State.CANCELLED)
    store.remove_jobs(["01JD0000000000000000000010", "01JD0000000000000000000011"])
    assert store.counts() == {
        "queued": 0,
        "starting": 0,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 1,
    }


def test_v3_prefixes_since_and_prune_work_after_the_upgrade(from_v3):
    store, path = from_v3
    assert store.resolve("01jd0000000000000000000012") == "01JD0000000000000000000012"
    with pytest.raises(AmbiguousPrefix):
        store.resolve("01jd")
    assert store.prunable(ended_before=55.0) == ["01JD0000000000000000000010"]
    store.remove_jobs(store.prunable(ended_before=55.0))
    assert sql(
        path, "SELECT COUNT(*) FROM job_label WHERE job_id = '01JD0000000000000000000010'"
    ) == [(0,)]
    assert sql(
        path, "SELECT COUNT(*) FROM attempt WHERE job_id = '01JD0000000000000000000010'"
    ) == [(0,)]


def test_v1_database_goes_all_the_way_to_the_label_table(upgraded):
    store, _ = upgraded
    assert [j["id"] for j in store.summaries(labels={"team": "ci"})] == [RUNNING, FINISHED]
    assert store.counts()["failed"] == 1 and store.counts()["running"] == 1


def test_v5_database_gains_the_notification_outbox(tmp_path):
    # A v5 file is a v6 one without the outbox (the step adds a table only).
    path = tmp_path / "choo.db"
    store = Store(path, ChangeFeed())
    store.open()
    job = store.add_job(specs.normalize({"image": "alpine"}), trigger="cli", queue_limit=10)
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.execute("DROP TABLE notification")
        # ...and without what schema 7 adds after it (workflow control).
        con.execute("DROP TABLE job_dependency")
        con.execute('DROP INDEX "job_rerun_of"')
        # ...and what schema 8 adds (pausing).
        con.execute("DROP TABLE queue_control")
        for table, column in (
            ("attempt", "retry"),
            ("job", "held"),
            ("job", "rerun_of"),
            ("schedule", "suspended_at"),
            ("schedule", "suspended_by"),
            # ...and schema 9's copies of the spec.
            ("job", "image"),
            ("job", "command"),
            ("job", "after_ids"),
        ):
            con.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    upgraded = Store(path, ChangeFeed())
    upgraded.notify_plan = lambda record: [("ops", "any")]
    upgraded.open()
    try:
        upgraded.transition(job["id"], State.CANCELLED)
        assert [n["target"] for n in upgraded.notifications(job["id"])] == ["ops"]
    finally:
        upgraded.close()
    assert schema(path) == schema(_fresh(tmp_path))
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


def _fresh(tmp_path):
    fresh = Store(tmp_path / "fresh5.db", ChangeFeed())
    fresh.open()
    fresh.close()
    return tmp_path / "fresh5.db"


def test_v4_database_gains_the_dependency_table_and_takes_dependencies(tmp_path):
    path = tmp_path / "choo.db"
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V4_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", "4"), ("agent_id", AGENT_ID)]
        )
        con.execute(
            "INSERT INTO job (id, name, state, priority, trigger, spec, labels, attempt,"
            " retries_left, cancel_requested, submitted_at, ended_at) VALUES"
            " (?, NULL, 'failed', 0, 'cli', ?, '{}', 1, 0, 0, 40.0, 50.0)",
            (FINISHED, json.dumps(V1_SPEC)),
        )
    store = Store(path, ChangeFeed())
    store.open()
    try:
        after = [{"id": FINISHED, "condition": "failed"}]
        waiter = store.add_job({**V1_SPEC, "after": after}, trigger="cli", queue_limit=10)
        assert store.get(FINISHED)["spec"].get("after") is None  # an old spec reads as it was
        assert store.prunable(ended_before=100.0) == []  # waited on
        store.transition(waiter["id"], "cancelled")
        assert store.prunable(ended_before=100.0) == [FINISHED]
    finally:
        store.close()
    fresh = Store(tmp_path / "fresh" / "choo.db", ChangeFeed())
    (tmp_path / "fresh").mkdir()
    fresh.open()
    fresh.close()
    assert schema(path) == schema(tmp_path / "fresh" / "choo.db")
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]

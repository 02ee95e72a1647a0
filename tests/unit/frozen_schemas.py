"""Schemas as choo-agent created them at earlier versions, frozen from their
sqlite_master, for the tests that upgrade an old file, and how those tests read
a file (through a connection of their own: committed data only)."""

import contextlib
import sqlite3

from agent.runtime.changes import ChangeFeed
from agent.storage.models import SCHEMA_VERSION
from agent.storage.store import Store


def sql(path, query, *args):
    """The rows of ``query`` on the database at ``path``, through a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as con:
        return con.execute(query, args).fetchall()


def schema(path):
    """Every table, index and trigger of the database at ``path``, sorted."""
    return sorted(sql(path, "SELECT type, name, tbl_name, sql FROM sqlite_master"))


def assert_as_new(path, scratch):
    """The upgraded database at ``path`` has the schema a new one gets (made under
    the directory ``scratch``) and the current schema version."""
    fresh = scratch / "fresh" / "choo.db"
    fresh.parent.mkdir()
    made = Store(fresh, ChangeFeed())
    made.open()
    made.close()
    assert schema(path) == schema(fresh)
    assert sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


#: What choo-agent created at SCHEMA_VERSION 4.
V4_SCHEMA = """
CREATE TABLE "job" ("id" VARCHAR(26) NOT NULL PRIMARY KEY, "name" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "exit_code" INTEGER, "priority" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "labels" TEXT NOT NULL, "attempt" INTEGER NOT NULL, "retries_left" INTEGER NOT NULL, "cancel_requested" INTEGER NOT NULL, "submitted_at" REAL NOT NULL, "started_at" REAL, "ended_at" REAL, "not_before" REAL, "stop_sent_at" REAL, "stop_reason" VARCHAR(255), "submitter_uid" INTEGER, "submitter_pid" INTEGER, "log_tail" TEXT, "schedule" VARCHAR(255), "scheduled_for" REAL, "catch_up" INTEGER, "workspace" TEXT, "workspace_size" INTEGER, "artifacts_state" VARCHAR(255), "artifacts_path" TEXT, "artifacts_size" INTEGER, "artifacts_sha256" VARCHAR(255), "artifacts_message" TEXT, "log_lost" INTEGER, "log_dropped" INTEGER);
CREATE INDEX "job_schedule" ON "job" ("schedule");
CREATE INDEX "job_state_id" ON "job" ("state", "id");
CREATE INDEX "job_name_id" ON "job" ("name", "id");
CREATE TABLE "attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "number" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "container_id" VARCHAR(255), "started_at" REAL, "ended_at" REAL, "exit_code" INTEGER, "reason" VARCHAR(255), "oom" INTEGER NOT NULL, "log_shipped" INTEGER, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "attempt_job_id_number" ON "attempt" ("job_id", "number");
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "time" REAL NOT NULL, "kind" VARCHAR(255) NOT NULL, "state" VARCHAR(255), "detail" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "job_label" ("job_id" VARCHAR(26) NOT NULL, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL, PRIMARY KEY ("job_id", "key"), FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX "joblabel_key_value_job_id" ON "job_label" ("key", "value", "job_id");
CREATE TABLE "schedule" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "cron" VARCHAR(255) NOT NULL, "timezone" VARCHAR(255), "spec" TEXT NOT NULL, "concurrency" VARCHAR(255) NOT NULL, "catch_up" INTEGER NOT NULL, "history_limit" INTEGER NOT NULL, "created_at" REAL NOT NULL, "created_by" INTEGER, "last_fire" REAL NOT NULL, "last_job" VARCHAR(255), "last_skip" TEXT);
CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
CREATE TABLE "job_count" ("state" VARCHAR(255) NOT NULL PRIMARY KEY, "n" INTEGER NOT NULL);
CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" BEGIN INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END;
CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; END;
CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" WHEN OLD."state" IS NOT NEW."state" BEGIN UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END;
"""  # noqa: E501

#: What choo-agent created at SCHEMA_VERSION 7.
V7_SCHEMA = """
CREATE TABLE "job" ("id" VARCHAR(26) NOT NULL PRIMARY KEY, "name" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "exit_code" INTEGER, "priority" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "labels" TEXT NOT NULL, "attempt" INTEGER NOT NULL, "retries_left" INTEGER NOT NULL, "cancel_requested" INTEGER NOT NULL, "submitted_at" REAL NOT NULL, "started_at" REAL, "ended_at" REAL, "not_before" REAL, "stop_sent_at" REAL, "stop_reason" VARCHAR(255), "submitter_uid" INTEGER, "submitter_pid" INTEGER, "log_tail" TEXT, "schedule" VARCHAR(255), "scheduled_for" REAL, "catch_up" INTEGER, "workspace" TEXT, "workspace_size" INTEGER, "artifacts_state" VARCHAR(255), "artifacts_path" TEXT, "artifacts_size" INTEGER, "artifacts_sha256" VARCHAR(255), "artifacts_message" TEXT, "log_lost" INTEGER, "log_dropped" INTEGER, "held" INTEGER, "rerun_of" VARCHAR(255));
CREATE INDEX "job_schedule" ON "job" ("schedule");
CREATE INDEX "job_rerun_of" ON "job" ("rerun_of");
CREATE INDEX "job_state_id" ON "job" ("state", "id");
CREATE INDEX "job_name_id" ON "job" ("name", "id");
CREATE TABLE "attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "number" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "container_id" VARCHAR(255), "started_at" REAL, "ended_at" REAL, "exit_code" INTEGER, "reason" VARCHAR(255), "oom" INTEGER NOT NULL, "log_shipped" INTEGER, "queue_wait" REAL, "cpu_seconds" REAL, "memory_peak" INTEGER, "io_read" INTEGER, "io_write" INTEGER, "pids_peak" INTEGER, "usage_sampled" INTEGER, "retry" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "attempt_job_id_number" ON "attempt" ("job_id", "number");
CREATE TABLE "job_dependency" ("job_id" VARCHAR(26) NOT NULL, "on" VARCHAR(26) NOT NULL, "condition" VARCHAR(255) NOT NULL, PRIMARY KEY ("job_id", "on"), FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX "dependency_on_job_id" ON "job_dependency" ("on", "job_id");
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "time" REAL NOT NULL, "kind" VARCHAR(255) NOT NULL, "state" VARCHAR(255), "detail" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "job_label" ("job_id" VARCHAR(26) NOT NULL, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL, PRIMARY KEY ("job_id", "key"), FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX "joblabel_key_value_job_id" ON "job_label" ("key", "value", "job_id");
CREATE TABLE "notification" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "target" VARCHAR(255) NOT NULL, "event" VARCHAR(255) NOT NULL, "key" VARCHAR(255) NOT NULL, "status" VARCHAR(255) NOT NULL, "tries" INTEGER NOT NULL, "created_at" REAL NOT NULL, "next_at" REAL NOT NULL, "delivered_at" REAL, "last_error" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "notification_job_id_target" ON "notification" ("job_id", "target");
CREATE INDEX "notification_status_next_at" ON "notification" ("status", "next_at");
CREATE TABLE "schedule" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "cron" VARCHAR(255) NOT NULL, "timezone" VARCHAR(255), "spec" TEXT NOT NULL, "concurrency" VARCHAR(255) NOT NULL, "catch_up" INTEGER NOT NULL, "history_limit" INTEGER NOT NULL, "created_at" REAL NOT NULL, "created_by" INTEGER, "last_fire" REAL NOT NULL, "last_job" VARCHAR(255), "last_skip" TEXT);
CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
CREATE TABLE "job_count" ("state" VARCHAR(255) NOT NULL PRIMARY KEY, "n" INTEGER NOT NULL);
CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" BEGIN INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END;
CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; END;
CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" WHEN OLD."state" IS NOT NEW."state" BEGIN UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END;
CREATE TABLE "tally" ("name" VARCHAR(255) NOT NULL, "labels" TEXT NOT NULL, "value" REAL NOT NULL, PRIMARY KEY ("name", "labels")) WITHOUT ROWID;
CREATE TRIGGER "tally_job_insert" AFTER INSERT ON "job" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('jobs_submitted', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_fire" AFTER INSERT ON "job" WHEN NEW."schedule" IS NOT NULL BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_fires', json_object('schedule', NEW."schedule"), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_catch_up" AFTER INSERT ON "job" WHEN NEW."schedule" IS NOT NULL AND NEW."catch_up" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_catch_ups', json_object('schedule', NEW."schedule"), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_job_end" AFTER UPDATE OF "state" ON "job" WHEN NEW."state" IN ('succeeded', 'failed', 'cancelled') AND OLD."state" NOT IN ('succeeded', 'failed', 'cancelled') BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('jobs_ended', json_object('state', NEW."state", 'reason', COALESCE(NEW."reason", '')), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_success" AFTER UPDATE OF "state" ON "job" WHEN NEW."state" = 'succeeded' AND OLD."state" IS NOT NEW."state" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('last_success', json_object('name', COALESCE(NEW."name", '')), NEW."ended_at") ON CONFLICT ("name", "labels") DO UPDATE SET "value" = MAX("value", excluded."value"); END;
CREATE TRIGGER "tally_schedule_success" AFTER UPDATE OF "state" ON "job" WHEN NEW."state" = 'succeeded' AND OLD."state" IS NOT NEW."state" AND NEW."schedule" IS NOT NULL BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_last_success', json_object('schedule', NEW."schedule"), NEW."ended_at") ON CONFLICT ("name", "labels") DO UPDATE SET "value" = MAX("value", excluded."value"); END;
CREATE TRIGGER "tally_attempt_insert" AFTER INSERT ON "attempt" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('attempts_started', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";INSERT INTO "tally" ("name", "labels", "value") SELECT 'queue_wait_seconds_bucket', json_object('le', b.value), 1 FROM json_each('["0.1","0.5","1","5","10","30","60","300","900","1800","3600","7200","21600","86400","+Inf"]') AS b WHERE b.value = '+Inf' OR COALESCE(NEW."queue_wait", 0) <= CAST(b.value AS REAL) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + 1;INSERT INTO "tally" ("name", "labels", "value") VALUES ('queue_wait_seconds_sum', '{}', COALESCE(NEW."queue_wait", 0)) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";INSERT INTO "tally" ("name", "labels", "value") VALUES ('queue_wait_seconds_count', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_retry" AFTER INSERT ON "attempt" WHEN NEW."number" > 1 BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('retries', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_attempt_end" AFTER UPDATE OF "ended_at" ON "attempt" WHEN OLD."ended_at" IS NULL AND NEW."ended_at" IS NOT NULL BEGIN INSERT INTO "tally" ("name", "labels", "value") SELECT 'run_seconds_bucket', json_object('le', b.value), 1 FROM json_each('["0.1","0.5","1","5","10","30","60","300","900","1800","3600","7200","21600","86400","+Inf"]') AS b WHERE b.value = '+Inf' OR MAX(0, NEW."ended_at" - COALESCE(NEW."started_at", NEW."ended_at")) <= CAST(b.value AS REAL) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + 1;INSERT INTO "tally" ("name", "labels", "value") VALUES ('run_seconds_sum', '{}', MAX(0, NEW."ended_at" - COALESCE(NEW."started_at", NEW."ended_at"))) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";INSERT INTO "tally" ("name", "labels", "value") VALUES ('run_seconds_count', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_log" AFTER UPDATE OF "log_shipped" ON "attempt" WHEN NEW."log_shipped" > COALESCE(OLD."log_shipped", 0) BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('log_bytes', '{}', NEW."log_shipped" - COALESCE(OLD."log_shipped", 0)) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_skip" AFTER UPDATE OF "last_skip" ON "schedule" WHEN NEW."last_skip" IS NOT NULL AND NEW."last_skip" IS NOT OLD."last_skip" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_skips', json_object('schedule', NEW."name"), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
"""  # noqa: E501

#: What choo-agent created at SCHEMA_VERSION 8.
V8_SCHEMA = """
CREATE TABLE "job" ("id" VARCHAR(26) NOT NULL PRIMARY KEY, "name" VARCHAR(255), "state" VARCHAR(255) NOT NULL, "reason" VARCHAR(255), "exit_code" INTEGER, "priority" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "labels" TEXT NOT NULL, "attempt" INTEGER NOT NULL, "retries_left" INTEGER NOT NULL, "cancel_requested" INTEGER NOT NULL, "submitted_at" REAL NOT NULL, "started_at" REAL, "ended_at" REAL, "not_before" REAL, "stop_sent_at" REAL, "stop_reason" VARCHAR(255), "submitter_uid" INTEGER, "submitter_pid" INTEGER, "log_tail" TEXT, "schedule" VARCHAR(255), "scheduled_for" REAL, "catch_up" INTEGER, "workspace" TEXT, "workspace_size" INTEGER, "artifacts_state" VARCHAR(255), "artifacts_path" TEXT, "artifacts_size" INTEGER, "artifacts_sha256" VARCHAR(255), "artifacts_message" TEXT, "log_lost" INTEGER, "log_dropped" INTEGER, "held" INTEGER, "rerun_of" VARCHAR(255));
CREATE INDEX "job_schedule" ON "job" ("schedule");
CREATE INDEX "job_rerun_of" ON "job" ("rerun_of");
CREATE INDEX "job_state_id" ON "job" ("state", "id");
CREATE INDEX "job_name_id" ON "job" ("name", "id");
CREATE TABLE "attempt" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "number" INTEGER NOT NULL, "trigger" VARCHAR(255) NOT NULL, "container_id" VARCHAR(255), "started_at" REAL, "ended_at" REAL, "exit_code" INTEGER, "reason" VARCHAR(255), "oom" INTEGER NOT NULL, "log_shipped" INTEGER, "queue_wait" REAL, "cpu_seconds" REAL, "memory_peak" INTEGER, "io_read" INTEGER, "io_write" INTEGER, "pids_peak" INTEGER, "usage_sampled" INTEGER, "retry" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "attempt_job_id_number" ON "attempt" ("job_id", "number");
CREATE TABLE "job_dependency" ("job_id" VARCHAR(26) NOT NULL, "on" VARCHAR(26) NOT NULL, "condition" VARCHAR(255) NOT NULL, PRIMARY KEY ("job_id", "on"), FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX "dependency_on_job_id" ON "job_dependency" ("on", "job_id");
CREATE TABLE "event" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "time" REAL NOT NULL, "kind" VARCHAR(255) NOT NULL, "state" VARCHAR(255), "detail" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE INDEX "event_job_id" ON "event" ("job_id");
CREATE TABLE "job_label" ("job_id" VARCHAR(26) NOT NULL, "key" VARCHAR(255) NOT NULL, "value" VARCHAR(255) NOT NULL, PRIMARY KEY ("job_id", "key"), FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE) WITHOUT ROWID;
CREATE INDEX "joblabel_key_value_job_id" ON "job_label" ("key", "value", "job_id");
CREATE TABLE "notification" ("id" INTEGER NOT NULL PRIMARY KEY, "job_id" VARCHAR(26) NOT NULL, "target" VARCHAR(255) NOT NULL, "event" VARCHAR(255) NOT NULL, "key" VARCHAR(255) NOT NULL, "status" VARCHAR(255) NOT NULL, "tries" INTEGER NOT NULL, "created_at" REAL NOT NULL, "next_at" REAL NOT NULL, "delivered_at" REAL, "last_error" TEXT, FOREIGN KEY ("job_id") REFERENCES "job" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "notification_job_id_target" ON "notification" ("job_id", "target");
CREATE INDEX "notification_status_next_at" ON "notification" ("status", "next_at");
CREATE TABLE "queue_control" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "paused_at" REAL, "paused_by" INTEGER, "limit" INTEGER);
CREATE TABLE "schedule" ("name" VARCHAR(255) NOT NULL PRIMARY KEY, "cron" VARCHAR(255) NOT NULL, "timezone" VARCHAR(255), "spec" TEXT NOT NULL, "concurrency" VARCHAR(255) NOT NULL, "catch_up" INTEGER NOT NULL, "history_limit" INTEGER NOT NULL, "created_at" REAL NOT NULL, "created_by" INTEGER, "last_fire" REAL NOT NULL, "last_job" VARCHAR(255), "last_skip" TEXT, "suspended_at" REAL, "suspended_by" INTEGER);
CREATE TABLE "meta" ("key" VARCHAR(255) NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
CREATE TABLE "job_count" ("state" VARCHAR(255) NOT NULL PRIMARY KEY, "n" INTEGER NOT NULL);
CREATE TRIGGER "job_count_insert" AFTER INSERT ON "job" BEGIN INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END;
CREATE TRIGGER "job_count_delete" AFTER DELETE ON "job" BEGIN UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; END;
CREATE TRIGGER "job_count_update" AFTER UPDATE OF "state" ON "job" WHEN OLD."state" IS NOT NEW."state" BEGIN UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1) ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END;
CREATE TABLE "tally" ("name" VARCHAR(255) NOT NULL, "labels" TEXT NOT NULL, "value" REAL NOT NULL, PRIMARY KEY ("name", "labels")) WITHOUT ROWID;
CREATE TRIGGER "tally_job_insert" AFTER INSERT ON "job" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('jobs_submitted', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_fire" AFTER INSERT ON "job" WHEN NEW."schedule" IS NOT NULL BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_fires', json_object('schedule', NEW."schedule"), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_catch_up" AFTER INSERT ON "job" WHEN NEW."schedule" IS NOT NULL AND NEW."catch_up" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_catch_ups', json_object('schedule', NEW."schedule"), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_job_end" AFTER UPDATE OF "state" ON "job" WHEN NEW."state" IN ('succeeded', 'failed', 'cancelled') AND OLD."state" NOT IN ('succeeded', 'failed', 'cancelled') BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('jobs_ended', json_object('state', NEW."state", 'reason', COALESCE(NEW."reason", '')), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_success" AFTER UPDATE OF "state" ON "job" WHEN NEW."state" = 'succeeded' AND OLD."state" IS NOT NEW."state" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('last_success', json_object('name', COALESCE(NEW."name", '')), NEW."ended_at") ON CONFLICT ("name", "labels") DO UPDATE SET "value" = MAX("value", excluded."value"); END;
CREATE TRIGGER "tally_schedule_success" AFTER UPDATE OF "state" ON "job" WHEN NEW."state" = 'succeeded' AND OLD."state" IS NOT NEW."state" AND NEW."schedule" IS NOT NULL BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_last_success', json_object('schedule', NEW."schedule"), NEW."ended_at") ON CONFLICT ("name", "labels") DO UPDATE SET "value" = MAX("value", excluded."value"); END;
CREATE TRIGGER "tally_attempt_insert" AFTER INSERT ON "attempt" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('attempts_started', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";INSERT INTO "tally" ("name", "labels", "value") SELECT 'queue_wait_seconds_bucket', json_object('le', b.value), 1 FROM json_each('["0.1","0.5","1","5","10","30","60","300","900","1800","3600","7200","21600","86400","+Inf"]') AS b WHERE b.value = '+Inf' OR COALESCE(NEW."queue_wait", 0) <= CAST(b.value AS REAL) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + 1;INSERT INTO "tally" ("name", "labels", "value") VALUES ('queue_wait_seconds_sum', '{}', COALESCE(NEW."queue_wait", 0)) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";INSERT INTO "tally" ("name", "labels", "value") VALUES ('queue_wait_seconds_count', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_retry" AFTER INSERT ON "attempt" WHEN NEW."number" > 1 BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('retries', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_attempt_end" AFTER UPDATE OF "ended_at" ON "attempt" WHEN OLD."ended_at" IS NULL AND NEW."ended_at" IS NOT NULL BEGIN INSERT INTO "tally" ("name", "labels", "value") SELECT 'run_seconds_bucket', json_object('le', b.value), 1 FROM json_each('["0.1","0.5","1","5","10","30","60","300","900","1800","3600","7200","21600","86400","+Inf"]') AS b WHERE b.value = '+Inf' OR MAX(0, NEW."ended_at" - COALESCE(NEW."started_at", NEW."ended_at")) <= CAST(b.value AS REAL) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + 1;INSERT INTO "tally" ("name", "labels", "value") VALUES ('run_seconds_sum', '{}', MAX(0, NEW."ended_at" - COALESCE(NEW."started_at", NEW."ended_at"))) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";INSERT INTO "tally" ("name", "labels", "value") VALUES ('run_seconds_count', '{}', 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_log" AFTER UPDATE OF "log_shipped" ON "attempt" WHEN NEW."log_shipped" > COALESCE(OLD."log_shipped", 0) BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('log_bytes', '{}', NEW."log_shipped" - COALESCE(OLD."log_shipped", 0)) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
CREATE TRIGGER "tally_skip" AFTER UPDATE OF "last_skip" ON "schedule" WHEN NEW."last_skip" IS NOT NULL AND NEW."last_skip" IS NOT OLD."last_skip" BEGIN INSERT INTO "tally" ("name", "labels", "value") VALUES ('schedule_skips', json_object('schedule', NEW."name"), 1) ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value"; END;
"""  # noqa: E501

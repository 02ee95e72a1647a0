"""Schemas as choo-agent created them at earlier versions, frozen from their
sqlite_master, for the tests that upgrade an old file."""

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

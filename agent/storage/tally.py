"""The metrics' counters kept by SQLite itself: the ``tally`` table's triggers.

Each trigger adds to a row of ``tally`` (name, labels as a JSON object, value)
in the transaction of the write that it counts: a job submitted or ended, an
attempt started or ended (its queue wait and run time into histograms), log
bytes shipped, a schedule's fire, catch-up or skip, a success's time. The
counters so survive restarts and prunes (``agent.api.metrics`` reads them).
This module only declares SQL; models.py creates the triggers with the table.
"""

from __future__ import annotations

#: The upper bounds, in seconds, of the queue-wait and run-time histograms.
HISTOGRAM_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


def _tally(name: str, labels: str = "'{}'", amount: str = "1") -> str:
    """SQL adding ``amount`` to the tally ``name`` with ``labels`` (a JSON object)."""
    return (
        f'INSERT INTO "tally" ("name", "labels", "value") VALUES (\'{name}\', {labels}, {amount})'
        ' ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + excluded."value";'
    )


def _observe(name: str, value: str) -> str:
    """SQL counting ``value`` into the histogram ``name``: its buckets, sum and count."""
    bounds = ",".join(f'"{bound:g}"' for bound in HISTOGRAM_BUCKETS)
    return (
        f'INSERT INTO "tally" ("name", "labels", "value")'
        f" SELECT '{name}_bucket', json_object('le', b.value), 1"
        f" FROM json_each('[{bounds},\"+Inf\"]') AS b"
        f" WHERE b.value = '+Inf' OR {value} <= CAST(b.value AS REAL)"
        ' ON CONFLICT ("name", "labels") DO UPDATE SET "value" = "value" + 1;'
        + _tally(f"{name}_sum", amount=value)
        + _tally(f"{name}_count")
    )


def _latest(name: str, labels: str, value: str) -> str:
    """SQL keeping the largest ``value`` seen for ``name`` with ``labels``."""
    return (
        f'INSERT INTO "tally" ("name", "labels", "value") VALUES (\'{name}\', {labels}, {value})'
        ' ON CONFLICT ("name", "labels") DO UPDATE SET "value" = MAX("value", excluded."value");'
    )


_ENDED = "('succeeded', 'failed', 'cancelled')"
#: Keep ``tally`` in every write's own transaction: the metrics' counters then
#: survive restarts and prunes, and cost a read of a few rows to export.
TALLY_TRIGGERS = (
    'CREATE TRIGGER IF NOT EXISTS "tally_job_insert" AFTER INSERT ON "job" BEGIN '
    + _tally("jobs_submitted")
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_fire" AFTER INSERT ON "job"'
    ' WHEN NEW."schedule" IS NOT NULL BEGIN '
    + _tally("schedule_fires", "json_object('schedule', NEW.\"schedule\")")
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_catch_up" AFTER INSERT ON "job"'
    ' WHEN NEW."schedule" IS NOT NULL AND NEW."catch_up" BEGIN '
    + _tally("schedule_catch_ups", "json_object('schedule', NEW.\"schedule\")")
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_job_end" AFTER UPDATE OF "state" ON "job"'
    f' WHEN NEW."state" IN {_ENDED} AND OLD."state" NOT IN {_ENDED} BEGIN '
    + _tally(
        "jobs_ended",
        "json_object('state', NEW.\"state\", 'reason', COALESCE(NEW.\"reason\", ''))",
    )
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_success" AFTER UPDATE OF "state" ON "job"'
    ' WHEN NEW."state" = \'succeeded\' AND OLD."state" IS NOT NEW."state" BEGIN '
    + _latest("last_success", "json_object('name', COALESCE(NEW.\"name\", ''))", 'NEW."ended_at"')
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_schedule_success" AFTER UPDATE OF "state" ON "job"'
    ' WHEN NEW."state" = \'succeeded\' AND OLD."state" IS NOT NEW."state"'
    ' AND NEW."schedule" IS NOT NULL BEGIN '
    + _latest(
        "schedule_last_success", "json_object('schedule', NEW.\"schedule\")", 'NEW."ended_at"'
    )
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_attempt_insert" AFTER INSERT ON "attempt" BEGIN '
    + _tally("attempts_started")
    + _observe("queue_wait_seconds", 'COALESCE(NEW."queue_wait", 0)')
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_retry" AFTER INSERT ON "attempt"'
    ' WHEN NEW."number" > 1 BEGIN ' + _tally("retries") + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_attempt_end" AFTER UPDATE OF "ended_at" ON "attempt"'
    ' WHEN OLD."ended_at" IS NULL AND NEW."ended_at" IS NOT NULL BEGIN '
    + _observe("run_seconds", 'MAX(0, NEW."ended_at" - COALESCE(NEW."started_at", NEW."ended_at"))')
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_log" AFTER UPDATE OF "log_shipped" ON "attempt"'
    ' WHEN NEW."log_shipped" > COALESCE(OLD."log_shipped", 0) BEGIN '
    + _tally("log_bytes", amount='NEW."log_shipped" - COALESCE(OLD."log_shipped", 0)')
    + " END",
    'CREATE TRIGGER IF NOT EXISTS "tally_skip" AFTER UPDATE OF "last_skip" ON "schedule"'
    ' WHEN NEW."last_skip" IS NOT NULL AND NEW."last_skip" IS NOT OLD."last_skip" BEGIN '
    + _tally("schedule_skips", "json_object('schedule', NEW.\"name\")")
    + " END",
)

"""Schema migrations of the jobs database, one function per version step.

``upgrade(db, version, target)`` brings a database recorded at ``version`` up
to ``models.SCHEMA_VERSION`` inside the caller's transaction (SQLite DDL is
transactional, so a failed upgrade leaves the old schema intact). Each step
only adds: columns are nullable so old rows stay valid, and no step ever
rewrites or drops data (an index a better one replaces may go). A new table
is made from its declaration in models.py (a later step that changes it
starts from that). Add a step here, change the models and bump
``SCHEMA_VERSION`` in models.py, and extend tests/unit/test_migrations.py
with the new version.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw
from playhouse.migrate import SqliteMigrator, migrate

from agent.storage.models import bind


def _v1_to_v2(db: pw.Database) -> None:
    """Workspaces, artifacts and schedules (schema 2)."""
    migrator = SqliteMigrator(db)
    migrate(
        migrator.add_column("job", "schedule", pw.CharField(null=True)),
        migrator.add_column("job", "scheduled_for", pw.FloatField(null=True)),
        migrator.add_column("job", "catch_up", pw.BooleanField(null=True)),
        migrator.add_column("job", "workspace", pw.TextField(null=True)),
        migrator.add_column("job", "workspace_size", pw.IntegerField(null=True)),
        migrator.add_column("job", "artifacts_state", pw.CharField(null=True)),
        migrator.add_column("job", "artifacts_path", pw.TextField(null=True)),
        migrator.add_column("job", "artifacts_size", pw.IntegerField(null=True)),
        migrator.add_column("job", "artifacts_sha256", pw.CharField(null=True)),
        migrator.add_column("job", "artifacts_message", pw.TextField(null=True)),
        migrator.add_index("job", ("schedule",), False),
    )
    # The schedule table itself is new: Database.open() creates it.


def _v2_to_v3(db: pw.Database) -> None:
    """Job output shipped to the journal: how far, what a log lost, and what
    the output cap dropped (schema 3)."""
    migrator = SqliteMigrator(db)
    migrate(
        migrator.add_column("job", "log_lost", pw.IntegerField(null=True)),
        migrator.add_column("job", "log_dropped", pw.IntegerField(null=True)),
        migrator.add_column("attempt", "log_shipped", pw.IntegerField(null=True)),
    )


def _v3_to_v4(db: pw.Database) -> None:
    """Indexes for queries at any size, labels in a table of their own, and the
    count of jobs by state kept by triggers (schema 4).

    ``(state, id)`` and ``(name, id)`` replace the one-column indexes (a filter
    then reads its jobs in ID order, with no sort), and ``attempt (job_id)`` goes
    (``attempt (job_id, number)`` serves the same lookups); ``job_label`` is filled from
    every job's ``labels`` and ``job_count`` from the jobs there are.
    """
    migrator = SqliteMigrator(db)
    migrate(
        migrator.drop_index("job", "job_state"),
        migrator.drop_index("job", "job_name"),
        migrator.drop_index("attempt", "attempt_job_id"),
        migrator.add_index("job", ("state", "id"), False),
        migrator.add_index("job", ("name", "id"), False),
    )
    # The new tables as models.py declares them (job_count with its triggers),
    # each filled from the jobs there are; the labels are each job's JSON
    # object, read by SQLite itself.
    models = bind(db)
    models.JobLabel.create_table()
    db.execute_sql(
        'INSERT INTO job_label (job_id, "key", value)'
        " SELECT job.id, label.key, label.value FROM job, json_each(job.labels) AS label"
    )
    models.StateCount.create_table()
    db.execute_sql(
        "INSERT INTO job_count (state, n) SELECT state, COUNT(*) FROM job GROUP BY state"
    )


def _v4_to_v5(db: pw.Database) -> None:
    """What each attempt used and how long it waited once due (older attempts
    have none), and the metrics' tally (schema 5)."""
    migrator = SqliteMigrator(db)
    migrate(
        migrator.add_column("attempt", "queue_wait", pw.FloatField(null=True)),
        migrator.add_column("attempt", "cpu_seconds", pw.FloatField(null=True)),
        migrator.add_column("attempt", "memory_peak", pw.IntegerField(null=True)),
        migrator.add_column("attempt", "io_read", pw.IntegerField(null=True)),
        migrator.add_column("attempt", "io_write", pw.IntegerField(null=True)),
        migrator.add_column("attempt", "pids_peak", pw.IntegerField(null=True)),
        migrator.add_column("attempt", "usage_sampled", pw.BooleanField(null=True)),
    )
    # The metrics' tally (storage/tally.py), started from the jobs there are:
    # counts of jobs, attempts and ends, and each name's last success.
    models = bind(db)
    # Its triggers watch schedules too (a v1 file has none yet: made as declared).
    models.Schedule.create_table()
    models.Tally.create_table()
    db.execute_sql(
        "INSERT INTO tally (name, labels, value)"
        " SELECT 'jobs_submitted', '{}', COUNT(*) FROM job"
        " UNION ALL SELECT 'attempts_started', '{}', COUNT(*) FROM attempt"
        " UNION ALL SELECT 'retries', '{}', COUNT(*) FROM attempt WHERE number > 1"
        " UNION ALL SELECT 'jobs_ended',"
        " json_object('state', state, 'reason', COALESCE(reason, '')),"
        " COUNT(*) FROM job WHERE state IN ('succeeded', 'failed', 'cancelled')"
        " GROUP BY state, COALESCE(reason, '')"
        " UNION ALL SELECT 'last_success', json_object('name', COALESCE(name, '')), MAX(ended_at)"
        " FROM job WHERE state = 'succeeded' AND ended_at IS NOT NULL GROUP BY COALESCE(name, '')"
    )


def _v5_to_v6(db: pw.Database) -> None:
    """The notification outbox (schema 6): a new table, nothing of the old changes."""
    bind(db).Notification.create_table()


def _v6_to_v7(db: pw.Database) -> None:
    """Workflow control (schema 7): dependencies between jobs in a table of
    their own, why each failed attempt was or was not retried, holding, and
    the job a rerun reruns.

    No job stored before version 7 has an ``after``, so ``job_dependency``
    starts empty; older attempts have no ``retry`` note.
    """
    migrator = SqliteMigrator(db)
    migrate(
        migrator.add_column("attempt", "retry", pw.TextField(null=True)),
        migrator.add_column("job", "held", pw.BooleanField(null=True)),
        migrator.add_column("job", "rerun_of", pw.CharField(null=True)),
        migrator.add_index("job", ("rerun_of",), False),
    )
    bind(db).Dependency.create_table()


def _v7_to_v8(db: pw.Database) -> None:
    """Pausing (schema 8): a schedule may be suspended, and the queue's pauses
    and runtime name limits have a table of their own.

    No schedule stored before version 8 is suspended, and nothing was paused
    or limited at run time: ``queue_control`` starts empty. A file from before
    schedules had its schedule table made by step 4 as models.py declares it,
    with these columns already.
    """
    have = {column.name for column in db.get_columns("schedule")}
    migrator = SqliteMigrator(db)
    migrate(
        *(
            migrator.add_column("schedule", name, field)
            for name, field in (
                ("suspended_at", pw.FloatField(null=True)),
                ("suspended_by", pw.IntegerField(null=True)),
            )
            if name not in have
        )
    )
    bind(db).QueueControl.create_table()


def _v8_to_v9(db: pw.Database) -> None:
    """What a ``job.list`` summary shows of the spec, in columns of their own
    (schema 9): the image, the command and the IDs of the jobs waited for,
    filled from each job's spec by SQLite (one pass over the jobs: two
    seconds or so per 100,000). The spec stays as it was, the record's source.
    """
    migrator = SqliteMigrator(db)
    migrate(
        migrator.add_column("job", "image", pw.TextField(null=True)),
        migrator.add_column("job", "command", pw.TextField(null=True)),
        migrator.add_column("job", "after_ids", pw.TextField(null=True)),
    )
    # As Jobs.add_job writes them; ``after_ids`` only for a job that waits
    # (its ``after`` entries' IDs, in their order).
    db.execute_sql(
        "UPDATE job SET image = json_extract(spec, '$.image'),"
        " command = json_extract(spec, '$.command'),"
        " after_ids = CASE WHEN json_array_length(spec, '$.after') > 0 THEN"
        " (SELECT json_group_array(json_extract(dep.value, '$.id'))"
        " FROM json_each(job.spec, '$.after') AS dep) END"
    )


#: version -> the step that upgrades a database from it to version + 1.
STEPS: dict[int, Callable[[pw.Database], None]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
    7: _v7_to_v8,
    8: _v8_to_v9,
}


def upgrade(db: pw.Database, version: int, target: int) -> None:
    """Run every step from ``version`` to ``target``, in order.

    Args:
        db: the open database, inside the caller's write transaction.
        version: the schema version the file records.
        target: the version to reach (``SCHEMA_VERSION``).
    """
    for step in range(version, target):
        STEPS[step](db)

"""The tables of the jobs database, as peewee models bound to one database.

``bind(db)`` declares the model classes afresh for ``db`` and returns them as
``Models``: peewee binds a model class to a single database, so classes
declared once at module level would be shared (and rebound) by every Store in
the process, and tests open several. This module only declares the schema;
queries live in jobs.py and schedules.py, upgrades of old files in
migrations.py. Change a model here only together with a migration step and
``SCHEMA_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from agent.storage.tally import TALLY_TRIGGERS

#: The schema these models describe; migrations.py upgrades older files to it.
SCHEMA_VERSION = 9


@dataclass(frozen=True)
class Models:
    """The model classes bound to one database, one attribute per table."""

    #: ``meta``: key/value facts about the file (schema version, agent ID).
    Setting: type[pw.Model]
    Job: type[pw.Model]
    Attempt: type[pw.Model]
    Event: type[pw.Model]
    Schedule: type[pw.Model]
    #: ``job_label``: one row per label of a job, so a label filter is an index lookup.
    JobLabel: type[pw.Model]
    #: ``job_count``: how many jobs are in each state, kept by triggers on ``job``.
    StateCount: type[pw.Model]
    #: ``tally``: the metrics' counters (schema 5), kept by triggers, never pruned.
    Tally: type[pw.Model]
    #: ``notification``: the outbox, one row per delivery a job's end made (schema 6).
    Notification: type[pw.Model]
    #: ``job_dependency``: one row per job a job waits for (its ``after``).
    Dependency: type[pw.Model]
    #: ``queue_control``: the pauses and runtime name limits (schema 8).
    QueueControl: type[pw.Model]

    def tables(self) -> list[type[pw.Model]]:
        """Every model, in an order that creates referenced tables first."""
        return [
            self.Setting,
            self.Job,
            self.Attempt,
            self.Event,
            self.Schedule,
            self.JobLabel,
            self.StateCount,
            self.Tally,
            self.Notification,
            self.Dependency,
            self.QueueControl,
        ]


#: Keep ``job_count`` equal to the jobs of each state, in every write's own
#: transaction: any statement that adds, moves or deletes a job (a bulk prune
#: included) updates it, so reading the counts never scans the jobs.
COUNT_TRIGGERS = (
    'CREATE TRIGGER IF NOT EXISTS "job_count_insert" AFTER INSERT ON "job" BEGIN'
    ' INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1)'
    ' ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END',
    'CREATE TRIGGER IF NOT EXISTS "job_count_delete" AFTER DELETE ON "job" BEGIN'
    ' UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state"; END',
    'CREATE TRIGGER IF NOT EXISTS "job_count_update" AFTER UPDATE OF "state" ON "job"'
    ' WHEN OLD."state" IS NOT NEW."state" BEGIN'
    ' UPDATE "job_count" SET "n" = "n" - 1 WHERE "state" = OLD."state";'
    ' INSERT INTO "job_count" ("state", "n") VALUES (NEW."state", 1)'
    ' ON CONFLICT ("state") DO UPDATE SET "n" = "n" + 1; END',
)


def bind(db: pw.Database) -> Models:
    """Declare the models bound to ``db``.

    Args:
        db: the (possibly not yet initialised) database the models use.

    Returns:
        Fresh model classes, shared with no other database.
    """

    class Base(pw.Model):
        class Meta:
            database = db

    class Setting(Base):
        key = pw.CharField(primary_key=True)
        value = pw.TextField()

        class Meta:
            table_name = "meta"

    class Job(Base):
        id = pw.CharField(primary_key=True, max_length=26)
        name = pw.CharField(null=True)
        state = pw.CharField()
        reason = pw.CharField(null=True)
        exit_code = pw.IntegerField(null=True)
        priority = pw.IntegerField(default=0)
        trigger = pw.CharField(default="rpc")
        spec = pw.TextField()
        labels = pw.TextField(default="{}")
        attempt = pw.IntegerField(default=0)
        retries_left = pw.IntegerField(default=0)
        cancel_requested = pw.BooleanField(default=False)
        submitted_at = pw.FloatField()
        started_at = pw.FloatField(null=True)
        ended_at = pw.FloatField(null=True)
        not_before = pw.FloatField(null=True)
        stop_sent_at = pw.FloatField(null=True)
        stop_reason = pw.CharField(null=True)
        submitter_uid = pw.IntegerField(null=True)
        submitter_pid = pw.IntegerField(null=True)
        log_tail = pw.TextField(null=True)
        # Schema 2: the schedule that made the job, workspace snapshot, artifacts.
        schedule = pw.CharField(null=True, index=True)
        scheduled_for = pw.FloatField(null=True)
        catch_up = pw.BooleanField(null=True)
        workspace = pw.TextField(null=True)
        workspace_size = pw.IntegerField(null=True)
        artifacts_state = pw.CharField(null=True)
        artifacts_path = pw.TextField(null=True)
        artifacts_size = pw.IntegerField(null=True)
        artifacts_sha256 = pw.CharField(null=True)
        artifacts_message = pw.TextField(null=True)
        # Schema 3: output bytes a log file lost to truncation (Podman's log_size_max).
        log_lost = pw.IntegerField(null=True)
        # Schema 3: output bytes dropped past the job's max_log_bytes (all attempts).
        log_dropped = pw.IntegerField(null=True)
        # Schema 7: submitted held (``--hold``): never admitted until released.
        held = pw.BooleanField(null=True)
        # Schema 5: the job this one reruns (``chooctl rerun``).
        rerun_of = pw.CharField(null=True, index=True)
        # Schema 9: what a ``job.list`` summary shows of the spec (which stays the
        # record's source), copied at submit so a page parses no spec: its image,
        # its command (JSON text) and the IDs of the jobs it waits for (JSON text;
        # None when it waits for none, as most do).
        image = pw.TextField(null=True)
        command = pw.TextField(null=True)
        after_ids = pw.TextField(null=True)

        class Meta:
            # Schema 4: a state or name filter reads its jobs in ID order from the
            # index, with no sort of every match.
            indexes = ((("state", "id"), False), (("name", "id"), False))

    class Attempt(Base):
        # No index of its own (schema 4): (job, number) below serves every lookup by job.
        job = pw.ForeignKeyField(Job, backref="attempts", on_delete="CASCADE", index=False)
        number = pw.IntegerField()
        trigger = pw.CharField(default="rpc")
        container_id = pw.CharField(null=True)
        started_at = pw.FloatField(null=True)
        ended_at = pw.FloatField(null=True)
        exit_code = pw.IntegerField(null=True)
        reason = pw.CharField(null=True)
        oom = pw.BooleanField(default=False)
        # Schema 3: how far this attempt's log is known shipped to the journal.
        log_shipped = pw.IntegerField(null=True)
        # Schema 5: what the attempt used (agent.rules.usage), recorded with its end,
        # and the seconds it waited in the queue once due.
        queue_wait = pw.FloatField(null=True)
        cpu_seconds = pw.FloatField(null=True)
        memory_peak = pw.IntegerField(null=True)
        io_read = pw.IntegerField(null=True)
        io_write = pw.IntegerField(null=True)
        pids_peak = pw.IntegerField(null=True)
        usage_sampled = pw.BooleanField(null=True)
        # Schema 7: why a failed attempt was or was not retried (retry_on).
        retry = pw.TextField(null=True)

        class Meta:
            indexes = ((("job", "number"), True),)

    class Event(Base):
        job = pw.ForeignKeyField(Job, backref="events", on_delete="CASCADE")
        time = pw.FloatField()
        kind = pw.CharField()
        state = pw.CharField(null=True)
        detail = pw.TextField(null=True)

    class Schedule(Base):
        name = pw.CharField(primary_key=True)
        cron = pw.CharField()
        timezone = pw.CharField(null=True)
        spec = pw.TextField()
        concurrency = pw.CharField(default="allow")
        catch_up = pw.BooleanField(default=True)
        history_limit = pw.IntegerField(default=10)
        created_at = pw.FloatField()
        created_by = pw.IntegerField(null=True)
        #: The nominal time of the last fire handled (run, skipped or missed).
        last_fire = pw.FloatField()
        last_job = pw.CharField(null=True)
        last_skip = pw.TextField(null=True)
        # Schema 8: suspended (its fires skipped) since when, by whom; None: not.
        suspended_at = pw.FloatField(null=True)
        suspended_by = pw.IntegerField(null=True)

    class JobLabel(Base):
        # Schema 4: a copy of the job's ``labels`` (which stays the record's source),
        # kept by Jobs.add_job and removed with the job by the cascade.
        job = pw.ForeignKeyField(Job, on_delete="CASCADE", index=False)
        key = pw.CharField()
        value = pw.CharField()

        class Meta:
            table_name = "job_label"
            primary_key = pw.CompositeKey("job", "key")
            # Stored in its key's order: one b-tree fewer to write and prune.
            without_rowid = True
            indexes = ((("key", "value", "job"), False),)

    class StateCount(Base):
        # Schema 4: written only by COUNT_TRIGGERS, never by the agent's code.
        state = pw.CharField(primary_key=True)
        n = pw.IntegerField()

        class Meta:
            table_name = "job_count"

        @classmethod
        def create_table(cls, safe: bool = True, **options) -> None:
            """The table, and the triggers on ``job`` that keep it."""
            super().create_table(safe, **options)
            for trigger in COUNT_TRIGGERS:
                db.execute_sql(trigger)

    class Tally(Base):
        # Schema 5: written only by TALLY_TRIGGERS, never by the agent's code.
        name = pw.CharField()
        #: The labels, a JSON object.
        labels = pw.TextField()
        value = pw.FloatField()

        class Meta:
            table_name = "tally"
            primary_key = pw.CompositeKey("name", "labels")
            without_rowid = True

        @classmethod
        def create_table(cls, safe: bool = True, **options) -> None:
            """The table, and the triggers on ``job``, ``attempt`` and ``schedule`` that keep it."""
            super().create_table(safe, **options)
            for trigger in TALLY_TRIGGERS:
                db.execute_sql(trigger)

    class Notification(Base):
        # Schema 6: written in the transaction that records the job's end, so a
        # crash can never keep the end and lose its notification.
        job = pw.ForeignKeyField(Job, on_delete="CASCADE", index=False)
        target = pw.CharField()
        #: The rule event that matched (failed, retries_exhausted, any...).
        event = pw.CharField()
        #: Every try of this delivery sends it, so a receiver can drop repeats.
        key = pw.CharField()
        #: pending, delivered or failed (no more tries).
        status = pw.CharField(default="pending")
        tries = pw.IntegerField(default=0)
        created_at = pw.FloatField()
        #: When a pending delivery is next tried.
        next_at = pw.FloatField()
        delivered_at = pw.FloatField(null=True)
        last_error = pw.TextField(null=True)

        class Meta:
            table_name = "notification"
            indexes = ((("job", "target"), True), (("status", "next_at"), False))

    class Dependency(Base):
        # Schema 7: a copy of the job's ``after`` (which stays the record's source),
        # kept by Jobs.add_job: who waits on a job is an index lookup (pruning
        # keeps a job someone waits on). ``on`` is no foreign key: a job waited
        # on may still be removed by name, and its waiters then never start.
        job = pw.ForeignKeyField(Job, on_delete="CASCADE", index=False)
        on = pw.CharField(max_length=26)
        condition = pw.CharField()

        class Meta:
            table_name = "job_dependency"
            primary_key = pw.CompositeKey("job", "on")
            without_rowid = True
            indexes = ((("on", "job"), False),)

    class QueueControl(Base):
        # Schema 8: one row per scope an admin paused or limited at run time:
        # "*" the whole queue (no job name starts with it), else a job name.
        # A row with neither a pause nor a limit is deleted.
        name = pw.CharField(primary_key=True)
        paused_at = pw.FloatField(null=True)
        paused_by = pw.IntegerField(null=True)
        limit = pw.IntegerField(null=True)

        class Meta:
            table_name = "queue_control"

    return Models(
        Setting=Setting,
        Job=Job,
        Attempt=Attempt,
        Event=Event,
        Schedule=Schedule,
        JobLabel=JobLabel,
        StateCount=StateCount,
        Tally=Tally,
        Notification=Notification,
        Dependency=Dependency,
        QueueControl=QueueControl,
    )

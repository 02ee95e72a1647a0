"""Jobs, their attempts and events: the one-transaction transitions and removals.

``Jobs`` owns the job life cycle on disk. Every state change goes through
``transition()``: one ``BEGIN IMMEDIATE`` transaction that checks the move
against ``states.TRANSITIONS``, updates the job and appends its event, so a
crash can never split a state change from its record. Events are published
to the feed only after the commit. It decides nothing beyond what a state
may become (the controller decides when), and never talks to Podman.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import peewee as pw
from ulid import ULID

from agent.protocol.errors import InvalidTransition, QueueFull
from agent.protocol.states import TERMINAL, State, can_transition
from agent.storage.notifications import Notifications
from agent.storage.queries import JobQueries
from agent.storage.records import event_dict, job_dict

#: How many jobs ``remove_jobs`` deletes per transaction.
_BATCH = 5000


def _among(ids: list[str]) -> pw.SQL:
    """``ids`` as one parameter of an ``IN``: a JSON array SQLite unpacks itself
    (no limit on how many, no placeholder per ID for peewee to build)."""
    return pw.SQL("(SELECT value FROM json_each(?))", [json.dumps(ids)])


#: This connection's own table of the jobs a batch removes (a temporary table,
#: in memory: ``temp_store``), which every delete of what refers to them reads.
_DOOMED = "doomed"
_DOOMED_IDS = pw.SQL(f'(SELECT "id" FROM temp."{_DOOMED}")')


def _references(Job: type[pw.Model], tables: list[type[pw.Model]]) -> list[pw.ForeignKeyField]:
    """Every column of ``tables`` that refers to ``Job``: what goes with a job removed
    (read from the models, so a table added later is never left behind)."""
    return [
        field
        for model in tables
        for field in model._meta.sorted_fields
        if isinstance(field, pw.ForeignKeyField) and field.rel_model is Job
    ]


class Jobs(JobQueries, Notifications):
    """The job transitions and removals of ``Store`` (its queries: ``JobQueries``;
    the outbox a job's end writes to: ``Notifications``)."""

    # -- creating and moving jobs ----------------------------------------------

    def add_job(
        self,
        spec: dict[str, Any],
        *,
        trigger: str,
        queue_limit: int,
        uid: int | None = None,
        pid: int | None = None,
        job_id: str | None = None,
        fields: dict[str, Any] | None = None,
        schedule_update: tuple[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store a validated spec as a new ``queued`` job, with its first event.

        Args:
            spec: the normalised job spec.
            trigger: what made the job (``rpc``, ``cli``, ``schedule``...).
            queue_limit: refuse the job when this many are already queued.
            uid: the submitting client's user ID, if known.
            pid: the submitting client's process ID, if known.
            job_id: the ID to use (one reserved for a workspace snapshot); default new.
            fields: more job columns (schedule, scheduled_for, catch_up, workspace...).
            schedule_update: ``(name, columns)`` of a schedule to update in the same
                transaction (``last_job`` is set to the new job), so a schedule's
                fire and the job it made are recorded together or not at all.

        Returns:
            The new job's record.

        Raises:
            QueueFull: ``queue_limit`` jobs are already queued; nothing is stored.
        """
        Job, Schedule, Label = self.models.Job, self.models.Schedule, self.models.JobLabel
        Dependency = self.models.Dependency
        now = time.time()
        job_id = job_id or str(ULID())
        after = spec.get("after", [])
        with self.writing():
            queued = Job.select().where(Job.state == State.QUEUED).count()
            if queued >= queue_limit:
                raise QueueFull(
                    f"the queue is full ({queued} jobs queued, queue_limit={queue_limit}); "
                    "wait for jobs to finish or raise queue_limit"
                )
            job = Job.create(
                id=job_id,
                name=spec.get("name"),
                state=State.QUEUED,
                priority=spec.get("priority", 0),
                trigger=trigger,
                spec=json.dumps(spec),
                labels=json.dumps(spec.get("labels", {})),
                retries_left=spec.get("retries", 0),
                submitted_at=now,
                submitter_uid=uid,
                submitter_pid=pid,
                # What a job.list summary shows of the spec (models.py, schema 9).
                image=spec.get("image"),
                command=json.dumps(spec.get("command", [])),
                after_ids=json.dumps([dep["id"] for dep in after]) if after else None,
                **(fields or {}),
            )
            labels = spec.get("labels", {})
            if labels:
                Label.insert_many(
                    [(job_id, key, value) for key, value in labels.items()],
                    fields=[Label.job, Label.key, Label.value],
                ).execute()
            if after:
                Dependency.insert_many(
                    [(job_id, dep["id"], dep["condition"]) for dep in after],
                    fields=[Dependency.job, Dependency.on, Dependency.condition],
                ).execute()
            if schedule_update is not None:
                name, columns = schedule_update
                Schedule.update(last_job=job_id, **columns).where(Schedule.name == name).execute()
            detail = {"trigger": trigger}
            if job.schedule:
                detail.update(schedule=job.schedule, catch_up=bool(job.catch_up))
            event = self._event(job, "state", State.QUEUED, detail, now)
        self.feed.publish(event)
        return job_dict(job)

    def transition(
        self,
        job_id: str,
        target: State,
        *,
        expect: Iterable[State] | None = None,
        detail: dict[str, Any] | None = None,
        new_attempt: str | None = None,
        attempt_fields: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Move a job to ``target`` and record the event, in one transaction.

        Args:
            job_id: full job ID.
            target: the new state.
            expect: if given, the states the caller believes the job is in; a
                job found elsewhere raises ``InvalidTransition`` (a lost race).
            detail: extra data for the event (reason, exit code...).
            new_attempt: begin the job's next attempt, with this trigger.
            attempt_fields: columns to update on the job's current attempt.
            **fields: columns to update on the job.

        Returns:
            The job's record after the move.

        Raises:
            NoSuchJob, InvalidTransition
        """
        Attempt = self.models.Attempt
        now = time.time()
        with self.writing():
            job = self._job_row(job_id)
            current = State(job.state)
            if (expect is not None and current not in set(expect)) or not can_transition(
                current, target
            ):
                raise InvalidTransition(
                    f"job {job_id} is {current}; it cannot become {target}", {"state": current}
                )
            job.state = target
            for key, value in fields.items():
                setattr(job, key, value)
            ends = target in TERMINAL and job.ended_at is None
            if ends:
                job.ended_at = now
            if new_attempt is not None:
                job.attempt += 1
                # Queue wait: from when the job was due (submitted, or its retry's
                # backoff over) to this attempt's start.
                due = max(job.submitted_at, job.not_before or 0.0)
                Attempt.create(
                    job=job.id,
                    number=job.attempt,
                    trigger=new_attempt,
                    started_at=now,
                    queue_wait=max(0.0, now - due),
                )
            if attempt_fields:
                Attempt.update(**attempt_fields).where(
                    (Attempt.job == job.id) & (Attempt.number == job.attempt)
                ).execute()
            # The columns set above only: the row was read in this transaction,
            # so the rest are as stored, and peewee builds (and serialises the
            # spec for) a far shorter UPDATE (issue 13: every end at start).
            job.save(only=job.dirty_fields)
            if ends:  # the end and its notifications commit together
                self._enqueue_notifications(job, now)
            event = self._event(job, "state", target, detail or {}, now)
        self.feed.publish(event)
        return job_dict(job)

    def note(self, job_id: str, kind: str, detail: dict[str, Any]) -> None:
        """Record an event that changes no state (an image pull starting).

        Raises:
            NoSuchJob
        """
        now = time.time()
        with self.writing():
            event = self._event(self._job_row(job_id), kind, None, detail, now)
        self.feed.publish(event)

    def request_cancel(self, job_id: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Mark a job to be stopped by the controller (which records ``cancelled``);
        ``detail`` goes in the event (who asked).

        Returns:
            The job's record; a finished or already marked job is left as it is.

        Raises:
            NoSuchJob
        """
        now = time.time()
        with self.writing():
            job = self._job_row(job_id)
            if job.cancel_requested or State(job.state) in TERMINAL:
                return job_dict(job)
            job.cancel_requested = True
            job.save(only=job.dirty_fields)  # as in transition
            event = self._event(job, "cancel-requested", None, detail or {}, now)
        self.feed.publish(event)
        return job_dict(job)

    def release(self, job_id: str, detail: dict[str, Any]) -> dict[str, Any]:
        """Let a held job be admitted (``--hold``); ``detail`` goes in the event.

        Returns:
            The job's record.

        Raises:
            NoSuchJob; InvalidTransition: it is not a held, queued job.
        """
        now = time.time()
        with self.writing():
            job = self._job_row(job_id)
            if not job.held or job.state != State.QUEUED:
                raise InvalidTransition(
                    f"job {job_id} is {job.state} and not held; there is nothing to release",
                    {"state": job.state},
                )
            job.held = False
            job.save(only=job.dirty_fields)  # as in transition
            event = self._event(job, "released", None, detail, now)
        self.feed.publish(event)
        return job_dict(job)

    def update(self, job_id: str, **fields: Any) -> None:
        """Change columns that are not the state (log tail, deadlines)."""
        Job = self.models.Job
        with self.writing():
            Job.update(**fields).where(Job.id == job_id).execute()

    def update_attempt(self, job_id: str, number: int, **fields: Any) -> None:
        """Change columns of one attempt of a job (its container ID, exit code...)."""
        Attempt = self.models.Attempt
        with self.writing():
            Attempt.update(**fields).where(
                (Attempt.job == job_id) & (Attempt.number == number)
            ).execute()

    # -- removal -------------------------------------------------------------

    def remove_job(self, job_id: str) -> dict[str, Any]:
        """Delete a finished job with its attempts and events, in one transaction.

        The caller removes the job's files afterwards (a crash in between leaves
        files without a row, which the sweep at the next start removes).

        Returns:
            The record of the job removed.

        Raises:
            NoSuchJob, InvalidTransition: the job has not ended.
        """
        with self.writing():
            job = self._job_row(job_id)
            if State(job.state) not in TERMINAL:
                raise InvalidTransition(
                    f"job {job_id} is {job.state}; only a finished job can be removed "
                    "(cancel it first)",
                    {"state": job.state},
                )
            record = job_dict(job)
            job.delete_instance()
        self._publish_removed([record])
        return record

    def remove_jobs(self, job_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Delete those of ``job_ids`` that are (still) finished, with every row that
        refers to them (attempts, events, labels, notifications, dependencies).
        A job that is not finished is never touched.

        Rows go in bulk, ``_BATCH`` jobs per transaction (other writers get in
        between): one ``DELETE ... RETURNING`` of the jobs still finished, then
        one delete per table that refers to jobs, with this connection's
        foreign-key checks off meanwhile (the cascade would run a statement
        per job per table; these deletes leave it nothing to do). A crash or a
        failure part way leaves the batches done removed (their ``removed``
        events published) and the rest whole: each batch is one transaction,
        and ``job_count`` and ``tally`` are kept by the triggers inside it.

        Returns:
            ``{"id", "name"}`` of each job removed, in ID order.
        """
        ids = sorted(set(job_ids))  # in key order, each batch touches neighbouring pages
        removed: list[dict[str, Any]] = []
        with self.unchecked_references():
            for start in range(0, len(ids), _BATCH):
                with self.writing():
                    gone = self._delete_finished(ids[start : start + _BATCH])
                self._publish_removed(gone)  # each batch once committed: a later one may fail
                removed += gone
        return removed

    def _delete_finished(self, ids: list[str]) -> list[dict[str, Any]]:
        """Delete the jobs of ``ids`` that are finished and what refers to them
        (inside the caller's transaction); ``{"id", "name"}`` of each.

        The IDs deleted go to a temporary table, whose key each delete of the
        rows referring to them walks: unpacking them anew for every table
        (an ``IN`` list) costs more than deleting from the tables most jobs
        left no row in.
        """
        Job = self.models.Job
        terminal = [s.value for s in TERMINAL]
        query = (
            Job.delete()
            .where(Job.id.in_(_among(ids)) & Job.state.in_(terminal))
            .returning(Job.id, Job.name)
        )
        gone = sorted(self.db.execute_sql(*query.sql()))
        if gone:
            self.db.execute_sql(
                f'CREATE TEMP TABLE IF NOT EXISTS "{_DOOMED}" ("id" TEXT PRIMARY KEY) WITHOUT ROWID'
            )
            self.db.execute_sql(
                f'INSERT INTO temp."{_DOOMED}" ("id") SELECT value FROM json_each(?)',
                [json.dumps([job_id for job_id, _ in gone])],
            )
            for field in _references(Job, self.models.tables()):
                field.model.delete().where(field.in_(_DOOMED_IDS)).execute()
            self.db.execute_sql(f'DELETE FROM temp."{_DOOMED}"')
        return [{"id": job_id, "name": name} for job_id, name in gone]

    # -- helpers -------------------------------------------------------------

    def _event(self, job, kind: str, state: State | None, detail: dict, now: float) -> dict:
        """Append an event of ``job`` (inside the caller's transaction); its record."""
        event = self.models.Event.create(
            job=job.id, time=now, kind=kind, state=state, detail=json.dumps(detail)
        )
        out = event_dict(event)
        out["job_id"] = job.id
        out["name"] = job.name
        return out

    def _publish_removed(self, records: list[dict[str, Any]]) -> None:
        # The job's events went with it, so this one is published, not stored.
        now = time.time()
        self.feed.publish_many(
            [
                {
                    "id": None,
                    "job_id": record["id"],
                    "name": record["name"],
                    "time": now,
                    "kind": "removed",
                    "state": None,
                    "detail": {},
                }
                for record in records
            ]
        )

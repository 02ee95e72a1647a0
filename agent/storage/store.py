"""The desired state: jobs, attempts and events in SQLite through peewee.

The store owns the job life cycle on disk. Every state change goes through
``transition()``: one ``BEGIN IMMEDIATE`` transaction that checks the move
against ``states.TRANSITIONS``, updates the job and appends its event, so a
crash can never split a state change from its record. Events are published to
the event sink (the runtime's ``ChangeFeed``) only after the commit. The store
never talks to Podman.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import peewee as pw
from ulid import ULID

from agent.protocol.errors import (
    AmbiguousPrefix,
    InvalidParams,
    InvalidTransition,
    NoSuchJob,
    NoSuchSchedule,
    QueueFull,
    StorageError,
)
from agent.protocol.spec import container_name
from agent.protocol.states import TERMINAL, State, can_transition
from agent.storage import migrations

SCHEMA_VERSION = 2


class EventSink(Protocol):
    """Where committed events go (the runtime's ``ChangeFeed``)."""

    def publish(self, event: dict[str, Any]) -> None: ...


LOG_TAIL_LINES = 100


def _models(db: pw.Database) -> SimpleNamespace:
    """Declare the tables bound to ``db`` (a function, so each Store has its own)."""

    class Base(pw.Model):
        class Meta:
            database = db

    class Meta(Base):
        key = pw.CharField(primary_key=True)
        value = pw.TextField()

    class Job(Base):
        id = pw.CharField(primary_key=True, max_length=26)
        name = pw.CharField(null=True, index=True)
        state = pw.CharField(index=True)
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

    class Attempt(Base):
        job = pw.ForeignKeyField(Job, backref="attempts", on_delete="CASCADE")
        number = pw.IntegerField()
        trigger = pw.CharField(default="rpc")
        container_id = pw.CharField(null=True)
        started_at = pw.FloatField(null=True)
        ended_at = pw.FloatField(null=True)
        exit_code = pw.IntegerField(null=True)
        reason = pw.CharField(null=True)
        oom = pw.BooleanField(default=False)

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

    return SimpleNamespace(Meta=Meta, Job=Job, Attempt=Attempt, Event=Event, Schedule=Schedule)


class Store:
    """The jobs database. Thread-safe: peewee keeps one connection per thread."""

    def __init__(self, path: Path, feed: EventSink):
        self.path = path
        self.feed = feed
        self.db = pw.SqliteDatabase(
            None,
            lock_type="IMMEDIATE",
            # FULL: a job acknowledged to a client must survive a power loss.
            pragmas={
                "journal_mode": "wal",
                "synchronous": "full",
                "foreign_keys": 1,
                "busy_timeout": 10000,
            },
            timeout=10,
            check_same_thread=False,
        )
        self.m = _models(self.db)
        self._write_lock = threading.RLock()  # re-entrant: atomic() blocks nest

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Open (creating if needed) the database and bring its schema up to date."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.db.init(str(self.path))
        tables = [self.m.Meta, self.m.Job, self.m.Attempt, self.m.Event, self.m.Schedule]
        with self._writing():
            row = None
            if self.db.table_exists("meta"):
                row = self.m.Meta.get_or_none(self.m.Meta.key == "schema_version")
            if row is not None and int(row.value) > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {row.value}, newer than this agent "
                    f"understands ({SCHEMA_VERSION}); upgrade choo-agent"
                )
            if row is not None and int(row.value) < SCHEMA_VERSION:
                # Before create_tables: its indexes may name columns a step adds.
                migrations.upgrade(self.db, int(row.value), SCHEMA_VERSION)
                row.value = str(SCHEMA_VERSION)
                row.save()
            self.db.create_tables(tables)
            if row is None:
                self.m.Meta.create(key="schema_version", value=str(SCHEMA_VERSION))
                self.m.Meta.create(key="agent_id", value=str(ULID()))

    @property
    def agent_id(self) -> str:
        """This database's identity; containers are labelled with it, so two
        agents sharing one Podman never take each other's containers."""
        return self.m.Meta.get_by_id("agent_id").value

    def close(self) -> None:
        self.db.close()

    def release_thread(self) -> None:
        """Close the calling thread's connection, if it opened one.

        peewee keeps one connection per thread; a thread about to end (a
        client's) closes its own at once instead of leaving its three file
        descriptors to the garbage collector.
        """
        if not self.db.is_closed():
            self.db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One IMMEDIATE write transaction; SQLite failures become ``StorageError``.

        The agent's own writers queue on a lock first. SQLite's busy handler
        polls with growing sleeps, so with hundreds of clients writing at once
        an unlucky writer could wait past ``busy_timeout`` and fail with
        "database is locked"; the lock hands over at once, in turn. (Another
        process holding the database still meets ``busy_timeout``.)
        """
        with self._write_lock:
            try:
                with self.db.atomic():
                    yield
            except pw.OperationalError as exc:
                raise _storage_error(self.path, exc) from exc

    # -- jobs ----------------------------------------------------------------

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
            job_id: the ID to use (one reserved for a workspace snapshot); default new.
            fields: more job columns (schedule, scheduled_for, catch_up, workspace...).
            schedule_update: ``(name, columns)`` of a schedule to update in the same
                transaction (``last_job`` is set to the new job), so a schedule's
                fire and the job it made are recorded together or not at all.

        Raises:
            QueueFull: ``queue_limit`` jobs are already queued; nothing is stored.
        """
        now = time.time()
        job_id = job_id or str(ULID())
        with self._writing():
            queued = self.m.Job.select().where(self.m.Job.state == State.QUEUED).count()
            if queued >= queue_limit:
                raise QueueFull(
                    f"the queue is full ({queued} jobs queued, queue_limit={queue_limit}); "
                    "wait for jobs to finish or raise queue_limit"
                )
            job = self.m.Job.create(
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
                **(fields or {}),
            )
            if schedule_update is not None:
                name, columns = schedule_update
                Schedule = self.m.Schedule
                Schedule.update(last_job=job_id, **columns).where(Schedule.name == name).execute()
            detail = {"trigger": trigger}
            if job.schedule:
                detail.update(schedule=job.schedule, catch_up=bool(job.catch_up))
            event = self._event(job, "state", State.QUEUED, detail, now)
        self.feed.publish(event)
        return self._job_dict(job)

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

        Raises:
            NoSuchJob, InvalidTransition
        """
        now = time.time()
        with self._writing():
            job = self.m.Job.get_or_none(self.m.Job.id == job_id)
            if job is None:
                raise NoSuchJob(f"no job {job_id}")
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
            if target in TERMINAL and job.ended_at is None:
                job.ended_at = now
            if new_attempt is not None:
                job.attempt += 1
                self.m.Attempt.create(
                    job=job.id, number=job.attempt, trigger=new_attempt, started_at=now
                )
            if attempt_fields:
                Attempt = self.m.Attempt
                Attempt.update(**attempt_fields).where(
                    (Attempt.job == job.id) & (Attempt.number == job.attempt)
                ).execute()
            job.save()
            event = self._event(job, "state", target, detail or {}, now)
        self.feed.publish(event)
        return self._job_dict(job)

    def note(self, job_id: str, kind: str, detail: dict[str, Any]) -> None:
        """Record an event that changes no state (an image pull starting)."""
        now = time.time()
        with self._writing():
            job = self.m.Job.get_or_none(self.m.Job.id == job_id)
            if job is None:
                raise NoSuchJob(f"no job {job_id}")
            event = self._event(job, kind, None, detail, now)
        self.feed.publish(event)

    def request_cancel(self, job_id: str) -> dict[str, Any]:
        """Mark a job to be stopped by the controller (which records ``cancelled``)."""
        now = time.time()
        with self._writing():
            job = self.m.Job.get_or_none(self.m.Job.id == job_id)
            if job is None:
                raise NoSuchJob(f"no job {job_id}")
            if job.cancel_requested or State(job.state) in TERMINAL:
                return self._job_dict(job)
            job.cancel_requested = True
            job.save()
            event = self._event(job, "cancel-requested", None, {}, now)
        self.feed.publish(event)
        return self._job_dict(job)

    def update(self, job_id: str, **fields: Any) -> None:
        """Change columns that are not the state (log tail, deadlines)."""
        with self._writing():
            self.m.Job.update(**fields).where(self.m.Job.id == job_id).execute()

    def resolve(self, prefix: Any) -> str:
        """Turn an ID or unique ID prefix into the full job ID.

        Raises:
            InvalidParams: not a string of ULID characters.
            NoSuchJob, AmbiguousPrefix
        """
        if not isinstance(prefix, str) or not prefix or len(prefix) > 26:
            raise InvalidParams(f"id: expected a job ID or ID prefix, got {prefix!r}")
        key = prefix.upper()
        if not key.isalnum():
            raise InvalidParams(f"id: {prefix!r} is not a job ID")
        Job = self.m.Job
        ids = [row.id for row in Job.select(Job.id).where(Job.id.startswith(key)).limit(2)]
        if not ids:
            raise NoSuchJob(f"no job matches {prefix!r}; see 'chooctl ps -a'")
        if len(ids) > 1:
            raise AmbiguousPrefix(f"{prefix!r} matches more than one job; give more characters")
        return ids[0]

    def get(self, job_id: str) -> dict[str, Any]:
        job = self.m.Job.get_or_none(self.m.Job.id == job_id)
        if job is None:
            raise NoSuchJob(f"no job {job_id}")
        return self._job_dict(job)

    def list(
        self,
        *,
        states: Iterable[str] | None = None,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        since: float | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Jobs newest first, filtered; ``after`` is the last ID of the previous page."""
        Job = self.m.Job
        query = Job.select().order_by(Job.id.desc())
        if states:
            query = query.where(Job.state.in_(list(states)))
        if name:
            query = query.where(Job.name == name)
        if since is not None:
            query = query.where(Job.submitted_at >= since)
        if after:
            query = query.where(Job.id < after)
        rows = []
        for job in query.iterator():
            if labels:
                have = json.loads(job.labels)
                if any(have.get(k) != v for k, v in labels.items()):
                    continue
            rows.append(self._job_dict(job))
            if len(rows) >= limit:
                break
        return rows

    def nonterminal(self) -> list[dict[str, Any]]:
        """Every job the controller still has to drive, in admission order."""
        Job = self.m.Job
        query = (
            Job.select()
            .where(Job.state.not_in([s.value for s in TERMINAL]))
            .order_by(Job.priority.desc(), Job.id)
        )
        return [self._job_dict(job) for job in query]

    def counts(self) -> dict[str, int]:
        Job = self.m.Job
        query = Job.select(Job.state, pw.fn.COUNT(Job.id).alias("n")).group_by(Job.state)
        counts = {state.value: 0 for state in State}
        counts.update({row.state: row.n for row in query})
        return counts

    # -- attempts ------------------------------------------------------------

    def update_attempt(self, job_id: str, number: int, **fields: Any) -> None:
        with self._writing():
            Attempt = self.m.Attempt
            Attempt.update(**fields).where(
                (Attempt.job == job_id) & (Attempt.number == number)
            ).execute()

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        Attempt = self.m.Attempt
        query = Attempt.select().where(Attempt.job == job_id).order_by(Attempt.number)
        return [
            {
                "number": a.number,
                "trigger": a.trigger,
                "container_id": a.container_id,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "exit_code": a.exit_code,
                "reason": a.reason,
                "oom": a.oom,
            }
            for a in query
        ]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        Event = self.m.Event
        query = Event.select().where(Event.job == job_id).order_by(Event.id)
        return [self._event_dict(e) for e in query]

    # -- removal -------------------------------------------------------------

    def remove_job(self, job_id: str) -> dict[str, Any]:
        """Delete a finished job with its attempts and events, in one transaction.

        The caller removes the job's files afterwards (a crash in between leaves
        files without a row, which the housekeeping sweep removes).

        Raises:
            NoSuchJob, InvalidTransition: the job has not ended.
        """
        with self._writing():
            job = self.m.Job.get_or_none(self.m.Job.id == job_id)
            if job is None:
                raise NoSuchJob(f"no job {job_id}")
            if State(job.state) not in TERMINAL:
                raise InvalidTransition(
                    f"job {job_id} is {job.state}; only a finished job can be removed "
                    "(cancel it first)",
                    {"state": job.state},
                )
            record = self._job_dict(job)
            job.delete_instance()
        self._publish_removed([record])
        return record

    def prunable(self, *, ended_before: float, states: Iterable[str] | None = None) -> list[str]:
        """IDs of finished jobs (in ``states``, all terminal states by default)
        that ended before ``ended_before``, oldest first."""
        terminal = [s.value for s in TERMINAL]
        wanted = [s for s in (states or terminal) if s in terminal]
        Job = self.m.Job
        query = (
            Job.select(Job.id)
            .where(Job.state.in_(wanted) & (Job.ended_at < ended_before))
            .order_by(Job.id)
        )
        return [row.id for row in query]

    def remove_jobs(self, job_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Delete those of ``job_ids`` that are (still) finished, in one transaction;
        returns the records removed. A job that is not finished is never touched."""
        ids = list(job_ids)
        Job = self.m.Job
        terminal = [s.value for s in TERMINAL]
        removed: list[dict[str, Any]] = []
        with self._writing():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = list(Job.select().where(Job.id.in_(chunk) & Job.state.in_(terminal)))
                removed += [self._job_dict(job) for job in rows]
                Job.delete().where(Job.id.in_([job.id for job in rows])).execute()
        self._publish_removed(removed)
        return removed

    def job_ids(self) -> set[str]:
        Job = self.m.Job
        return {row.id for row in Job.select(Job.id)}

    def _publish_removed(self, records: list[dict[str, Any]]) -> None:
        # The job's events went with it, so this one is published, not stored.
        now = time.time()
        for record in records:
            self.feed.publish(
                {
                    "id": None,
                    "job_id": record["id"],
                    "name": record["name"],
                    "time": now,
                    "kind": "removed",
                    "state": None,
                    "detail": {},
                }
            )

    # -- schedules -----------------------------------------------------------

    def add_schedule(self, **columns: Any) -> dict[str, Any]:
        """Store a new schedule (columns of the schedule table; ``spec`` a dict).

        Raises:
            InvalidParams: a schedule of that name exists.
        """
        Schedule = self.m.Schedule
        columns["spec"] = json.dumps(columns["spec"])
        with self._writing():
            if Schedule.get_or_none(Schedule.name == columns["name"]) is not None:
                raise InvalidParams(
                    f"name: a schedule named {columns['name']!r} exists; remove it first"
                )
            row = Schedule.create(**columns)
        return self._schedule_dict(row)

    def get_schedule(self, name: str) -> dict[str, Any]:
        row = self.m.Schedule.get_or_none(self.m.Schedule.name == name)
        if row is None:
            raise NoSuchSchedule(f"no schedule named {name!r}; see 'chooctl schedule ls'")
        return self._schedule_dict(row)

    def schedules(self) -> list[dict[str, Any]]:
        Schedule = self.m.Schedule
        return [self._schedule_dict(row) for row in Schedule.select().order_by(Schedule.name)]

    def update_schedule(self, name: str, **columns: Any) -> None:
        with self._writing():
            Schedule = self.m.Schedule
            Schedule.update(**columns).where(Schedule.name == name).execute()

    def remove_schedule(self, name: str) -> dict[str, Any]:
        """Delete a schedule; the jobs it made stay (they keep its name)."""
        with self._writing():
            row = self.m.Schedule.get_or_none(self.m.Schedule.name == name)
            if row is None:
                raise NoSuchSchedule(f"no schedule named {name!r}; see 'chooctl schedule ls'")
            record = self._schedule_dict(row)
            row.delete_instance()
        return record

    def schedule_runs(
        self, name: str, *, states: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """The jobs a schedule made, newest first."""
        Job = self.m.Job
        query = Job.select().where(Job.schedule == name).order_by(Job.id.desc())
        if states is not None:
            query = query.where(Job.state.in_(list(states)))
        return [self._job_dict(job) for job in query]

    @staticmethod
    def _schedule_dict(row) -> dict[str, Any]:
        return {
            "name": row.name,
            "cron": row.cron,
            "timezone": row.timezone,
            "spec": json.loads(row.spec),
            "concurrency": row.concurrency,
            "catch_up": row.catch_up,
            "history_limit": row.history_limit,
            "created_at": row.created_at,
            "created_by": row.created_by,
            "last_fire": row.last_fire,
            "last_job": row.last_job,
            "last_skip": row.last_skip,
        }

    # -- helpers -------------------------------------------------------------

    def _event(self, job, kind: str, state: State | None, detail: dict, now: float) -> dict:
        event = self.m.Event.create(
            job=job.id, time=now, kind=kind, state=state, detail=json.dumps(detail)
        )
        out = self._event_dict(event)
        out["job_id"] = job.id
        out["name"] = job.name
        return out

    @staticmethod
    def _event_dict(event) -> dict[str, Any]:
        return {
            "id": event.id,
            "job_id": event.job_id,
            "time": event.time,
            "kind": event.kind,
            "state": event.state,
            "detail": json.loads(event.detail or "{}"),
        }

    @staticmethod
    def _job_dict(job) -> dict[str, Any]:
        return {
            "id": job.id,
            "name": job.name,
            "state": job.state,
            "reason": job.reason,
            "exit_code": job.exit_code,
            "priority": job.priority,
            "trigger": job.trigger,
            "spec": json.loads(job.spec),
            "attempt": job.attempt,
            "retries_left": job.retries_left,
            "cancel_requested": job.cancel_requested,
            "submitted_at": job.submitted_at,
            "started_at": job.started_at,
            "ended_at": job.ended_at,
            "not_before": job.not_before,
            "stop_reason": job.stop_reason,
            "stop_sent_at": job.stop_sent_at,
            "submitter_uid": job.submitter_uid,
            "submitter_pid": job.submitter_pid,
            "log_tail": job.log_tail,
            "container": container_name(job.id),
            "schedule": job.schedule,
            "scheduled_for": job.scheduled_for,
            "catch_up": bool(job.catch_up),
            "workspace": _workspace_dict(job),
            "artifacts": _artifacts_dict(job),
        }


def _workspace_dict(job) -> dict[str, Any] | None:
    spec = json.loads(job.spec)
    if not spec.get("workspace"):
        return None
    return {"source": spec["workspace"], "snapshot": job.workspace, "size": job.workspace_size}


def _artifacts_dict(job) -> dict[str, Any]:
    """What became of a job's /out: ``pending`` until the job ends; then ``packed``
    (with path, size, sha256), ``none`` (nothing to pack), ``too_large`` or
    ``error`` (with a message)."""
    state = job.artifacts_state
    if state is None:
        state = "none" if State(job.state) in TERMINAL else "pending"
    return {
        "state": state,
        "path": job.artifacts_path,
        "size": job.artifacts_size,
        "sha256": job.artifacts_sha256,
        "message": job.artifacts_message,
    }


def _storage_error(path: Path, exc: Exception) -> StorageError:
    text = str(exc)
    if "full" in text:
        hint = f"the disk holding {path} is full; free space and retry"
    elif "readonly" in text or "read-only" in text:
        hint = f"{path} is read-only"
    elif "locked" in text or "busy" in text:
        hint = f"{path} is locked by another process; is a second agent running?"
    else:
        hint = f"database error on {path}"
    return StorageError(f"{hint} ({text})")

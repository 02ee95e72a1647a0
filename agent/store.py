"""The desired state: jobs, attempts and events in SQLite through peewee.

The store owns the job life cycle on disk. Every state change goes through
``transition()``: one ``BEGIN IMMEDIATE`` transaction that checks the move
against ``states.TRANSITIONS``, updates the job and appends its event, so a
crash can never split a state change from its record. Events are published to
the ``ChangeFeed`` only after the commit. The store never talks to Podman.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import peewee as pw
from ulid import ULID

from agent.changes import ChangeFeed
from agent.errors import (
    AmbiguousPrefix,
    InvalidParams,
    InvalidTransition,
    NoSuchJob,
    QueueFull,
    StorageError,
)
from agent.spec import container_name
from agent.states import TERMINAL, State, can_transition

SCHEMA_VERSION = 1
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

    return SimpleNamespace(Meta=Meta, Job=Job, Attempt=Attempt, Event=Event)


class Store:
    """The jobs database. Thread-safe: peewee keeps one connection per thread."""

    def __init__(self, path: Path, feed: ChangeFeed):
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

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Open (creating if needed) the database and bring its schema up to date."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.db.init(str(self.path))
        with self._writing():
            self.db.create_tables([self.m.Meta, self.m.Job, self.m.Attempt, self.m.Event])
            row = self.m.Meta.get_or_none(self.m.Meta.key == "schema_version")
            if row is None:
                self.m.Meta.create(key="schema_version", value=str(SCHEMA_VERSION))
                self.m.Meta.create(key="agent_id", value=str(ULID()))
            elif int(row.value) > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {row.value}, newer than this agent "
                    f"understands ({SCHEMA_VERSION}); upgrade choo-agent"
                )

    @property
    def agent_id(self) -> str:
        """This database's identity; containers are labelled with it, so two
        agents sharing one Podman never take each other's containers."""
        return self.m.Meta.get_by_id("agent_id").value

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One IMMEDIATE write transaction; SQLite failures become ``StorageError``."""
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
    ) -> dict[str, Any]:
        """Store a validated spec as a new ``queued`` job, with its first event.

        Raises:
            QueueFull: ``queue_limit`` jobs are already queued; nothing is stored.
        """
        now = time.time()
        job_id = str(ULID())
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
            )
            event = self._event(job, "state", State.QUEUED, {"trigger": trigger}, now)
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

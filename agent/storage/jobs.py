"""Jobs, their attempts and events: the queries and the one-transaction transitions.

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

from agent.protocol.errors import (
    AmbiguousPrefix,
    InvalidParams,
    InvalidTransition,
    NoSuchJob,
    QueueFull,
)
from agent.protocol.states import TERMINAL, State, can_transition
from agent.storage.database import Database
from agent.storage.records import attempt_dict, event_dict, job_dict

#: How many IDs go into one ``IN (...)`` (SQLite limits the variables of a statement).
_CHUNK = 500


class Jobs(Database):
    """The job queries and transitions of ``Store``."""

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
        Job, Schedule = self.models.Job, self.models.Schedule
        now = time.time()
        job_id = job_id or str(ULID())
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
                **(fields or {}),
            )
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
            if target in TERMINAL and job.ended_at is None:
                job.ended_at = now
            if new_attempt is not None:
                job.attempt += 1
                Attempt.create(job=job.id, number=job.attempt, trigger=new_attempt, started_at=now)
            if attempt_fields:
                Attempt.update(**attempt_fields).where(
                    (Attempt.job == job.id) & (Attempt.number == job.attempt)
                ).execute()
            job.save()
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
            job.save()
            event = self._event(job, "cancel-requested", None, detail or {}, now)
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

    # -- reading -------------------------------------------------------------

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
        Job = self.models.Job
        ids = [row.id for row in Job.select(Job.id).where(Job.id.startswith(key)).limit(2)]
        if not ids:
            raise NoSuchJob(f"no job matches {prefix!r}; see 'chooctl ps -a'")
        if len(ids) > 1:
            raise AmbiguousPrefix(f"{prefix!r} matches more than one job; give more characters")
        return ids[0]

    def get(self, job_id: str) -> dict[str, Any]:
        """The record of one job, by full ID.

        Raises:
            NoSuchJob
        """
        return job_dict(self._job_row(job_id))

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
        Job = self.models.Job
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
            rows.append(job_dict(job))
            if len(rows) >= limit:
                break
        return rows

    def nonterminal(self) -> list[dict[str, Any]]:
        """Every job the controller still has to drive, in admission order."""
        Job = self.models.Job
        query = (
            Job.select()
            .where(Job.state.not_in([s.value for s in TERMINAL]))
            .order_by(Job.priority.desc(), Job.id)
        )
        return [job_dict(job) for job in query]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state named, 0 included)."""
        Job = self.models.Job
        query = Job.select(Job.state, pw.fn.COUNT(Job.id).alias("n")).group_by(Job.state)
        counts = {state.value: 0 for state in State}
        counts.update({row.state: row.n for row in query})
        return counts

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """A job's attempts, first first."""
        Attempt = self.models.Attempt
        query = Attempt.select().where(Attempt.job == job_id).order_by(Attempt.number)
        return [attempt_dict(a) for a in query]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's events, oldest first."""
        Event = self.models.Event
        query = Event.select().where(Event.job == job_id).order_by(Event.id)
        return [event_dict(e) for e in query]

    def job_ids(self) -> set[str]:
        """The ID of every job stored."""
        Job = self.models.Job
        return {row.id for row in Job.select(Job.id)}

    # -- removal -------------------------------------------------------------

    def remove_job(self, job_id: str) -> dict[str, Any]:
        """Delete a finished job with its attempts and events, in one transaction.

        The caller removes the job's files afterwards (a crash in between leaves
        files without a row, which the housekeeping sweep removes).

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

    def prunable(self, *, ended_before: float, states: Iterable[str] | None = None) -> list[str]:
        """IDs of finished jobs (in ``states``, all terminal states by default)
        that ended before ``ended_before``, oldest first."""
        terminal = [s.value for s in TERMINAL]
        wanted = [s for s in (states or terminal) if s in terminal]
        Job = self.models.Job
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
        Job = self.models.Job
        terminal = [s.value for s in TERMINAL]
        removed: list[dict[str, Any]] = []
        with self.writing():
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                rows = list(Job.select().where(Job.id.in_(chunk) & Job.state.in_(terminal)))
                removed += [job_dict(job) for job in rows]
                Job.delete().where(Job.id.in_([job.id for job in rows])).execute()
        self._publish_removed(removed)
        return removed

    # -- helpers -------------------------------------------------------------

    def _job_row(self, job_id: str):
        job = self.models.Job.get_or_none(self.models.Job.id == job_id)
        if job is None:
            raise NoSuchJob(f"no job {job_id}")
        return job

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

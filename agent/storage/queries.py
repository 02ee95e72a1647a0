"""Reading jobs: the queries of ``Store`` that change nothing, each shaped to use an index.

``JobQueries`` answers what the API and the runtime ask of stored jobs
(resolve an ID prefix, one record, a filtered page, the jobs still to drive,
counts by state, what prune may remove) so that each costs what it returns,
not the size of the history: an ID prefix is a range of the primary key,
``since`` a lower bound of it (IDs are ULIDs, so they sort by time), a
label filter a lookup in ``job_label``, a state or name filter a walk of
``(state, id)`` or ``(name, id)`` in ID order. ``job.list`` gets lean
summaries read column by column; a full record is built only for ``job.get``
and the runtime. It never writes (jobs.py does) and never talks to Podman.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import peewee as pw
from ulid import ULID

from agent.protocol.errors import AmbiguousPrefix, InvalidParams, NoSuchJob
from agent.protocol.states import TERMINAL, State
from agent.storage.database import Database
from agent.storage.records import (
    SUMMARY_COLUMNS,
    attempt_dict,
    event_dict,
    job_dict,
    summary_dict,
)

#: Characters in a job ID (a ULID in Crockford's base32, upper case).
ID_LENGTH = 26
#: The greatest character of that alphabet: pads a prefix to the last ID it covers.
_LAST_CHAR = "Z"
#: How far the matches of a filter are counted to find the narrowest one.
_PROBE = 1024


def first_id_at(seconds: float) -> str:
    """The smallest ULID of the millisecond ``seconds`` falls in (none is earlier).

    Args:
        seconds: a time since the epoch; before the epoch counts as the epoch.

    Returns:
        A 26-character ID: that millisecond, then all-zero randomness.
    """
    millis = max(0, int(seconds * 1000))
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + bytes(10)))


def prefix_range(prefix: str) -> tuple[str, str]:
    """The first and last ID an upper-case ID prefix can stand for (both included).

    Args:
        prefix: 1 to 26 characters of an ID, upper case.
    """
    return prefix, prefix + _LAST_CHAR * (ID_LENGTH - len(prefix))


class JobQueries(Database):
    """The job queries of ``Store``; every one reads, none writes."""

    def resolve(self, prefix: Any) -> str:
        """Turn an ID or unique ID prefix (any case) into the full job ID.

        Raises:
            InvalidParams: not a string of ULID characters.
            NoSuchJob, AmbiguousPrefix
        """
        if not isinstance(prefix, str) or not prefix or len(prefix) > ID_LENGTH:
            raise InvalidParams(f"id: expected a job ID or ID prefix, got {prefix!r}")
        key = prefix.upper()
        if not key.isalnum():
            raise InvalidParams(f"id: {prefix!r} is not a job ID")
        Job = self.models.Job
        first, last = prefix_range(key)
        query = Job.select(Job.id).where(Job.id.between(first, last)).limit(2)
        ids = [row[0] for row in query.tuples()]
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
        """Full records of jobs newest first, filtered (as ``summaries``), for the runtime."""
        query = self._page(self.models.Job.select(), states, name, labels, since, after, limit)
        return [job_dict(job) for job in query]

    def summaries(
        self,
        *,
        states: Iterable[str] | None = None,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        since: float | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Lean records of jobs newest first, filtered (a ``job.list`` page).

        Args:
            states: only jobs in one of these states.
            name: only jobs of this name.
            labels: only jobs with every one of these labels.
            since: only jobs made at this time (seconds) or later, by their ID.
            after: the last ID of the previous page; only older jobs.
            limit: at most this many jobs.

        Returns:
            The summaries (``records.summary_dict``): no spec, environment or log tail.
        """
        Job = self.models.Job
        columns = [getattr(Job, column) for column in SUMMARY_COLUMNS]
        columns += [
            Job.labels,
            pw.fn.json_extract(Job.spec, "$.image").alias("image"),
            pw.fn.json_extract(Job.spec, "$.command").alias("command"),
            pw.fn.json_extract(Job.spec, "$.after").alias("after"),
        ]
        # The latest attempt's usage, one unique-index lookup per job of the page.
        # (Named, so the filters' own aliases stay as they were.)
        Attempt = self.models.Attempt.alias("latest")
        columns += [Attempt.cpu_seconds, Attempt.memory_peak]
        query = self._page(Job.select(*columns), states, name, labels, since, after, limit)
        query = query.join_from(
            Job,
            Attempt,
            pw.JOIN.LEFT_OUTER,
            on=(Attempt.job == Job.id) & (Attempt.number == Job.attempt),
        )
        return [summary_dict(row) for row in query.dicts()]

    def nonterminal(self) -> list[dict[str, Any]]:
        """Every job the controller still has to drive, in admission order."""
        Job = self.models.Job
        query = Job.select().where(Job.state.in_(_NOT_ENDED)).order_by(Job.priority.desc(), Job.id)
        return [job_dict(job) for job in query]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state (every state named, 0 included).

        Read from ``job_count``, which triggers keep: it costs the same at any size.
        """
        StateCount = self.models.StateCount
        counts = {state.value: 0 for state in State}
        counts.update(dict(StateCount.select(StateCount.state, StateCount.n).tuples()))
        return counts

    def tallies(self) -> list[tuple[str, dict[str, str], float]]:
        """The metrics' counters (storage/tally.py): (name, labels, value) rows."""
        Tally = self.models.Tally
        rows = Tally.select(Tally.name, Tally.labels, Tally.value).tuples()
        return [(name, json.loads(labels), value) for name, labels, value in rows]

    def active_by_name(self) -> list[tuple[str, str | None, int]]:
        """How many jobs of each name are queued, starting or running:
        (state, name, count) rows, read through the ``(state, id)`` index."""
        Job = self.models.Job
        query = (
            Job.select(Job.state, Job.name, pw.fn.COUNT(Job.id))
            .where(Job.state.in_(_NOT_ENDED))
            .group_by(Job.state, Job.name)
        )
        return list(query.tuples())

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
        return {row[0] for row in Job.select(Job.id).tuples()}

    def prunable(self, *, ended_before: float, states: Iterable[str] | None = None) -> list[str]:
        """IDs of finished jobs (in ``states``, all terminal states by default)
        that ended before ``ended_before``, in no particular order."""
        terminal = [s.value for s in TERMINAL]
        wanted = [s for s in (states or terminal) if s in terminal]
        Job, Dependency = self.models.Job, self.models.Dependency
        Waiter = Job.alias("waiter")
        # A job a job not yet ended waits for stays: its end decides the waiter's.
        waited_on = (
            Dependency.select(Dependency.on)
            .join(Waiter, on=(Dependency.job == Waiter.id))
            .where(Waiter.state.in_(_NOT_ENDED))
        )
        query = Job.select(Job.id).where(
            Job.state.in_(wanted) & (Job.ended_at < ended_before) & Job.id.not_in(waited_on)
        )
        return [row[0] for row in query.tuples()]

    def unrerun_failures(
        self, *, since: float | None, name: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Failed jobs no job reruns yet, oldest first (``rerun --failed``).

        Args:
            since: only jobs made at this time or later, by their ID.
            name: only jobs of this name.
            limit: at most this many.
        """
        Job = self.models.Job
        Rerun = Job.alias("rerun")
        reruns = Rerun.select(Rerun.rerun_of).where(Rerun.rerun_of.is_null(False))
        query = Job.select().where((Job.state == State.FAILED) & Job.id.not_in(reruns))
        if since is not None:
            query = query.where(Job.id >= first_id_at(since))
        if name is not None:
            query = query.where(Job.name == name)
        return [job_dict(job) for job in query.order_by(Job.id).limit(limit)]

    def states_of(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The state of each of these jobs that exists (one missing was removed)."""
        Job = self.models.Job
        wanted = list(set(job_ids))
        query = Job.select(Job.id, Job.state).where(Job.id.in_(wanted))
        return dict(query.tuples())

    # -- helpers -------------------------------------------------------------

    def _page(
        self,
        query: pw.ModelSelect,
        states: Iterable[str] | None,
        name: str | None,
        labels: dict[str, str] | None,
        since: float | None,
        after: str | None,
        limit: int,
    ) -> pw.ModelSelect:
        """``query`` filtered, newest first, at most ``limit`` rows.

        The page is read from the narrowest filter's index: a label's entries
        (already in ID order, so reading stops at ``limit``) or the job's own
        (``(state, id)``, ``(name, id)``, the primary key); every other label is
        one lookup per job read.
        """
        Job, Label = self.models.Job, self.models.JobLabel
        states = list(states or [])
        wanted = sorted((labels or {}).items())
        order = Job.id
        driver = self._narrowest(wanted, states)
        if driver is not None:
            key, value = wanted.pop(driver)
            query = query.join(Label, on=(Label.job == Job.id)).where(
                (Label.key == key) & (Label.value == value)
            )
            order = Label.job
        for key, value in wanted:
            other = Label.alias()
            query = query.where(
                pw.fn.EXISTS(
                    other.select(pw.SQL("1")).where(
                        (other.job == Job.id) & (other.key == key) & (other.value == value)
                    )
                )
            )
        if states:
            query = query.where(Job.state.in_(states))
        if name:
            query = query.where(Job.name == name)
        if since is not None:
            query = query.where(order >= first_id_at(since))
        if after:
            query = query.where(order < after)
        return query.order_by(order.desc()).limit(limit)

    def _narrowest(self, labels: list[tuple[str, str]], states: list[str]) -> int | None:
        """Which of ``labels`` matches the fewest jobs, or None when the states
        match fewer still (or there is no label); each counted up to ``_PROBE``."""
        if not labels:
            return None
        Job, Label = self.models.Job, self.models.JobLabel
        sizes = [
            Label.select(Label.job)
            .where((Label.key == key) & (Label.value == value))
            .limit(_PROBE)
            .count()
            for key, value in labels
        ]
        best = min(range(len(sizes)), key=sizes.__getitem__)
        if states:
            in_states = Job.select(Job.id).where(Job.state.in_(states)).limit(_PROBE).count()
            if in_states < sizes[best]:
                return None
        return best

    def _job_row(self, job_id: str):
        job = self.models.Job.get_or_none(self.models.Job.id == job_id)
        if job is None:
            raise NoSuchJob(f"no job {job_id}")
        return job


#: The states of the jobs the controller drives (an ``IN``, which the index serves).
_NOT_ENDED = [state.value for state in State if state not in TERMINAL]

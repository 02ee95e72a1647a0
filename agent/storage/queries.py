"""Reading jobs: the queries of ``Store`` that change nothing, each shaped to use an index.

``JobQueries`` answers what the API and the runtime ask of stored jobs
(resolve an ID prefix, one record, a filtered page, the jobs still to drive,
counts by state, what prune may remove) so that each costs what it returns,
not the size of the history: an ID prefix is a range of the primary key,
``since`` a lower bound of it (IDs are ULIDs, so they sort by time), a
label filter a lookup in ``job_label``, a state or name filter a walk of
``(state, id)`` or ``(name, id)`` in ID order. ``job.list`` gets lean
summaries read column by column; a full record is built only for ``job.get``
and the runtime. The hot queries go through ``Database.rows``: their SQL is
built once per shape and their rows are plain dicts, never model instances.
It never writes (jobs.py does) and never talks to Podman.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import peewee as pw

from agent.protocol.errors import AmbiguousPrefix, InvalidParams, NoSuchJob
from agent.protocol.states import TERMINAL, State
from agent.storage.database import Database, slot
from agent.storage.id_ranges import ID_LENGTH, first_id_at, prefix_range
from agent.storage.records import (
    SUMMARY_JOB_COLUMNS,
    SUMMARY_USAGE_COLUMNS,
    attempt_dict,
    event_dict,
    job_dict,
    summaries,
)

#: How far the matches of a filter are counted to find the narrowest one.
_PROBE = 1024


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
        rows = self.rows(
            "resolve",
            lambda: Job.select(Job.id).where(Job.id.between(slot("first"), slot("last"))).limit(2),
            {"first": first, "last": last},
        )
        ids = [row["id"] for row in rows]
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
        Job = self.models.Job
        rows = self.rows("get", lambda: Job.select().where(Job.id == slot("id")), {"id": job_id})
        if not rows:
            raise NoSuchJob(f"no job {job_id}")
        return job_dict(rows[0])

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
        page = self._page("list", self.models.Job.select, states, name, labels, since, after, limit)
        return [job_dict(row) for row in self.rows(*page)]

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
            The summaries (``records.summaries``): no spec, environment or log
            tail. Kept until the next write (``page_cache.py``): never change them.
        """
        Job = self.models.Job
        Attempt = self.models.Attempt.alias("latest")

        def select() -> pw.ModelSelect:
            # In records.summaries' order: no spec is read (schema 9 copied
            # what a summary shows of it), and the latest attempt's usage is
            # one unique-index lookup per job of the page.
            columns = [getattr(Job, column) for column in SUMMARY_JOB_COLUMNS]
            columns += [getattr(Attempt, column) for column in SUMMARY_USAGE_COLUMNS]
            return Job.select(*columns)

        def joined(query: pw.ModelSelect) -> pw.ModelSelect:
            # The alias named, so the filters' own stay as they were.
            return query.join_from(
                Job,
                Attempt,
                pw.JOIN.LEFT_OUTER,
                on=(Attempt.job == Job.id) & (Attempt.number == Job.attempt),
            )

        page = self._page("summaries", select, states, name, labels, since, after, limit, joined)
        if since is not None:  # an age: the page changes with the clock
            return summaries(self.tuples(*page))
        key = (page[0], tuple(sorted(page[2].items())))  # the query's shape and values
        return self.pages.get(key, self.generation, lambda: summaries(self.tuples(*page)))

    def nonterminal(self) -> list[dict[str, Any]]:
        """Every job the controller still has to drive, in admission order."""
        Job = self.models.Job
        rows = self.rows(
            "nonterminal",
            lambda: (
                Job.select().where(Job.state.in_(_NOT_ENDED)).order_by(Job.priority.desc(), Job.id)
            ),
            {},
        )
        return [job_dict(row) for row in rows]

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
        rows = self.rows(
            "attempts",
            lambda: Attempt.select().where(Attempt.job == slot("id")).order_by(Attempt.number),
            {"id": job_id},
        )
        return [attempt_dict(row) for row in rows]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's events, oldest first."""
        Event = self.models.Event
        rows = self.rows(
            "events",
            lambda: Event.select().where(Event.job == slot("id")).order_by(Event.id),
            {"id": job_id},
        )
        return [event_dict(row) for row in rows]

    def job_ids(self) -> set[str]:
        """The ID of every job stored."""
        Job = self.models.Job
        return {row[0] for row in Job.select(Job.id).tuples()}

    def prunable(
        self,
        *,
        ended_before: float,
        states: Iterable[str] | None = None,
        submitter: int | None = None,
    ) -> list[str]:
        """IDs of finished jobs (in ``states``, all terminal states by default; of uid
        ``submitter`` if given) that ended before ``ended_before``, in any order."""
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
        if submitter is not None:
            query = query.where(Job.submitter_uid == submitter)
        # Read off the cursor: peewee's row wrapper costs more than the query here.
        return [row[0] for row in self.db.execute_sql(*query.sql())]

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
        if not wanted:  # a job with no ``after``: nothing to read
            return {}
        query = Job.select(Job.id, Job.state).where(Job.id.in_(wanted))
        return dict(query.tuples())

    # -- helpers -------------------------------------------------------------

    def _page(
        self,
        kind: str,
        select: Callable[[], pw.ModelSelect],
        states: Iterable[str] | None,
        name: str | None,
        labels: dict[str, str] | None,
        since: float | None,
        after: str | None,
        limit: int,
        finish: Callable[[pw.ModelSelect], pw.ModelSelect] = lambda query: query,
    ) -> tuple[Hashable, Callable[[], pw.ModelSelect], dict[str, Any]]:
        """The query of ``select()`` filtered, newest first, at most ``limit``: its
        shape, builder and values, for ``rows`` or ``tuples``.

        The page is read from the narrowest filter's index: a label's entries
        (already in ID order, so reading stops at ``limit``) or the job's own
        (``(state, id)``, ``(name, id)``, the primary key); every other label is
        one lookup per job read. ``finish`` adds what a ``kind`` of page joins.
        """
        states = list(states or [])
        wanted = sorted((labels or {}).items())
        driver = self._narrowest(wanted, states)
        if driver is not None:
            wanted.insert(0, wanted.pop(driver))  # the label read first is label 0
        since_id = None if since is None else first_id_at(since)
        values = {"limit": limit, "name": name, "since": since_id, "after": after}
        values.update((f"state{i}", state) for i, state in enumerate(states))
        for i, (key, value) in enumerate(wanted):
            values.update({f"key{i}": key, f"value{i}": value})
        shape = (kind, driver, len(wanted), len(states), bool(name), bool(since_id), bool(after))

        def build() -> pw.ModelSelect:
            Job, Label = self.models.Job, self.models.JobLabel
            query, order, others = finish(select()), Job.id, range(len(wanted))
            if driver is not None:
                query = query.join_from(Job, Label, on=(Label.job == Job.id)).where(
                    (Label.key == slot("key0")) & (Label.value == slot("value0"))
                )
                order, others = Label.job, range(1, len(wanted))
            for i in others:
                other = Label.alias()
                query = query.where(
                    pw.fn.EXISTS(
                        other.select(pw.SQL("1")).where(
                            (other.job == Job.id)
                            & (other.key == slot(f"key{i}"))
                            & (other.value == slot(f"value{i}"))
                        )
                    )
                )
            if states:
                query = query.where(Job.state.in_([slot(f"state{i}") for i in range(len(states))]))
            if name:
                query = query.where(Job.name == slot("name"))
            if since_id:
                query = query.where(order >= slot("since"))
            if after:
                query = query.where(order < slot("after"))
            return query.order_by(order.desc()).limit(slot("limit"))

        return shape, build, values

    def _narrowest(self, labels: list[tuple[str, str]], states: list[str]) -> int | None:
        """Which of ``labels`` matches the fewest jobs, or None when the states
        match fewer still (or there is no label); each counted up to ``_PROBE``."""
        if not labels:
            return None
        Job, Label = self.models.Job, self.models.JobLabel

        def label_probe() -> pw.Select:
            matches = Label.select(Label.job).where(
                (Label.key == slot("key")) & (Label.value == slot("value"))
            )
            return self._probe(matches)

        sizes = [
            self.rows("probe-label", label_probe, {"key": key, "value": value})[0]["n"]
            for key, value in labels
        ]
        best = min(range(len(sizes)), key=sizes.__getitem__)
        if states:
            slots = [slot(f"state{i}") for i in range(len(states))]
            in_states = self.rows(
                ("probe-states", len(states)),
                lambda: self._probe(Job.select(Job.id).where(Job.state.in_(slots))),
                {f"state{i}": state for i, state in enumerate(states)},
            )[0]["n"]
            if in_states < sizes[best]:
                return None
        return best

    @staticmethod
    def _probe(matches: pw.ModelSelect) -> pw.Select:
        """How many rows ``matches`` has, counted up to ``_PROBE``."""
        inner = matches.limit(_PROBE).alias("_wrapped")  # as peewee's own count()
        return pw.Select([inner], [pw.fn.COUNT(pw.SQL("*")).alias("n")])

    def _job_row(self, job_id: str):
        # Every write's first read: its SELECT is built by peewee once (most of
        # its cost), and the row is still read into a model, as peewee would.
        Job = self.models.Job
        statement = self._statements.get(_JOB_BY_ID)
        if statement is None:
            statement = (Job.select().where(Job.id == job_id).sql()[0], [])
            self._statements[_JOB_BY_ID] = statement
        job = next(iter(Job.raw(statement[0], job_id)), None)
        if job is None:
            raise NoSuchJob(f"no job {job_id}")
        return job


#: ``_job_row``'s key in the database's statements.
_JOB_BY_ID = "job-by-id"

#: The states of the jobs the controller drives (an ``IN``, which the index serves).
_NOT_ENDED = [state.value for state in State if state not in TERMINAL]

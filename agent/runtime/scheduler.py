"""The scheduler thread: cron fires, schedule history, and retention.

It owns time-driven work that is not the reconcile loop's: it fires
schedules when their cron expression says so (and once at start-up for fires
missed while the agent was down; a suspended schedule's are skipped and
recorded as skips), removes a schedule's finished runs beyond
its history limit, and prunes finished jobs older than ``retention``. The
rules are the pure functions of agent/rules/schedule.py; jobs are made,
cancelled and removed through the job use cases (``Jobs``, the agent's
Service), like any client's. The schedule.* use cases are agent/api/schedules.py's;
a trigger comes here through ``run_now``. Its clock is injectable (tests
drive it; see ``CHOO_CLOCK_OFFSET_FILE`` in choo-agent(8)).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.adapters.files import JobFiles
from agent.config import Config
from agent.protocol.errors import ChooError, InvalidTransition
from agent.protocol.methods import JobRef, SubmitParams
from agent.protocol.states import TERMINAL, State
from agent.rules import schedule as rules
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: Longest sleep between passes: a changed setting or a clock step is seen this soon.
MAX_SLEEP = 30.0
#: Bounds of the pause between retention passes (retention / 10, within these).
PRUNE_EVERY = (1.0, 600.0)
UNFINISHED = [s.value for s in State if s not in TERMINAL]


class Jobs(Protocol):
    """The job use cases the thread needs (agent.api.service.Service)."""

    def submit(
        self, params: SubmitParams, *, peer: Any = None, origin: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...

    def cancel(self, params: JobRef) -> dict[str, Any]: ...

    def remove_many(self, job_ids: list[str]) -> list[str]: ...

    def prune_before(self, ended_before: float) -> dict[str, Any]: ...


class Scheduler:
    """Runs schedules: ``run()`` is the thread, ``run_now()`` serves schedule.trigger."""

    def __init__(
        self,
        store: Store,
        jobs: Jobs,
        config: Config,
        *,
        files: JobFiles | None = None,
        clock: Callable[[], float] = time.time,
        max_sleep: float = MAX_SLEEP,
    ):
        self.store = store
        self.jobs = jobs
        self.config = config
        self.files = files
        self.clock = clock
        self.max_sleep = max_sleep
        self._wake = threading.Event()
        self._stop = threading.Event()
        # One fire or trigger at a time, so a policy sees the runs the last one made.
        self._lock = threading.Lock()
        self._pruned_at = float("-inf")
        #: Fires due before this time came while the agent was down.
        self.up_since = clock()

    def run_now(self, row: dict[str, Any], *, trigger: str) -> dict[str, Any]:
        """Run the schedule ``row`` now, under its concurrency policy (schedule.trigger).

        Raises:
            ChooError: the run could not be submitted (a fire would record it instead).
        """
        with self._lock:
            return self._run(row, trigger=trigger, update={}, when="now")

    # -- the thread ------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Fire, trim and prune until ``stop()``; an error is logged and retried."""
        first = True
        while not self._stop.is_set():
            self._wake.clear()
            try:
                due = self.tick()
            except Exception:
                log.exception("scheduler pass failed; retrying")
                due = self.clock() + 5.0
            else:
                if first:
                    # What the start-up catch-up decided is now in the store.
                    wait = max(0.0, due - self.clock())
                    log.info("schedules checked since the start; next look in %.0f s", wait)
                    first = False
            self._wake.wait(max(0.0, min(due - self.clock(), self.max_sleep)))

    def tick(self) -> float:
        """One pass: fire what is due, trim histories, prune. Returns when to come back."""
        now = self.clock()
        due = now + self.max_sleep
        for row in self.store.schedules():
            with self._lock:
                plan = rules.plan(row, now, up_since=self.up_since)
                if row["suspended_at"] is not None and (plan.fire_at is not None or plan.missed):
                    self._skip_suspended(row, plan)
                elif plan.fire_at is not None:
                    self._fire(row, plan)
                elif plan.missed:
                    log.info("schedule %s: skipped fires missed while down", row["name"])
                    self.store.update_schedule(
                        row["name"],
                        last_fire=plan.last_fire,
                        last_skip=f"{_iso(plan.last_fire)}: missed (catch_up is off)",
                    )
            self._trim(row)
            due = min(due, plan.next_at)
        pause = self._retention()
        if pause is not None:
            due = min(due, now + pause)
        if self.files is not None:
            self.files.retry_removals()  # job files a removal left behind (with backoff)
        return due

    def _skip_suspended(self, row: dict[str, Any], plan: rules.Plan) -> None:
        """Record the fire due now as skipped (``schedule.suspend``); it is never caught up."""
        log.info(
            "schedule %s: skipped the fire for %s (suspended)", row["name"], _iso(plan.last_fire)
        )
        self.store.update_schedule(
            row["name"], last_fire=plan.last_fire, last_skip=f"{_iso(plan.last_fire)}: suspended"
        )

    def _fire(self, row: dict[str, Any], plan: rules.Plan) -> None:
        log.info(
            "schedule %s fires for %s%s",
            row["name"],
            _iso(plan.fire_at),
            " (catch-up)" if plan.catch_up else "",
        )
        self._run(
            row,
            trigger="schedule",
            update={"last_fire": plan.last_fire},
            when=_iso(plan.fire_at),
            scheduled_for=plan.fire_at,
            catch_up=plan.catch_up,
        )

    def _run(
        self,
        row: dict[str, Any],
        *,
        trigger: str,
        update: dict[str, Any],
        when: str,
        scheduled_for: float | None = None,
        catch_up: bool = False,
    ) -> dict[str, Any]:
        """Apply the concurrency policy and make the run; a fire's ``update`` is
        stored with the job (or with the skip), in one transaction."""
        name = row["name"]
        active = self.store.schedule_runs(name, states=UNFINISHED)
        decision = rules.decide(row["concurrency"], active)
        if not decision.run:
            log.info("schedule %s: %s", name, decision.skip_reason)
            self.store.update_schedule(name, last_skip=f"{when}: {decision.skip_reason}", **update)
            return {"job": None, "skipped": decision.skip_reason, "cancelled": []}
        cancelled = []
        for job_id in decision.cancel:
            try:
                self.jobs.cancel(JobRef(id=job_id))
                cancelled.append(job_id)
            except InvalidTransition:
                pass  # it ended meanwhile
        origin = {
            "schedule": name,
            "scheduled_for": scheduled_for,
            "catch_up": catch_up,
            "schedule_update": (name, {**update, "last_skip": None}),
        }
        owner = _Owner(row["created_by"])
        try:
            job = self.jobs.submit(
                SubmitParams(spec=row["spec"], trigger=trigger), peer=owner, origin=origin
            )
        except ChooError as exc:
            if not update:
                raise  # a trigger by hand: tell the caller
            log.warning("schedule %s could not run: %s", name, exc.message)
            self.store.update_schedule(name, last_skip=f"{when}: {exc.message}", **update)
            return {"job": None, "skipped": exc.message, "cancelled": cancelled}
        return {"job": job, "skipped": None, "cancelled": cancelled}

    def _trim(self, row: dict[str, Any]) -> None:
        excess = rules.history_excess(self.store.schedule_runs(row["name"]), row["history_limit"])
        if excess:
            removed = self.jobs.remove_many(excess)
            log.info("schedule %s: removed %d old runs", row["name"], len(removed))

    def _retention(self) -> float | None:
        """Prune when it is time; returns the seconds until the next pass (None: off)."""
        retention = self.config.retention
        if not retention:
            return None
        now = time.time()  # jobs' end times are wall-clock times
        low, high = PRUNE_EVERY
        every = min(high, max(low, retention / 10))
        if now - self._pruned_at < every:
            return every - (now - self._pruned_at)
        self._pruned_at = now
        result = self.jobs.prune_before(now - retention)
        if result["count"]:
            log.info("retention: removed %d finished jobs", result["count"])
        if self.files is not None:
            self.files.sweep(self.store.job_ids())
        return every


class _Owner:
    """The schedule's creator, as the peer its runs are submitted for."""

    def __init__(self, uid: int | None):
        self.uid = uid
        self.pid = None


def _iso(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")

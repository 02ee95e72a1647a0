"""The reconcile loop: make Podman match the database, level-triggered.

The database says what should be (jobs and their states), Podman says what is
(containers labelled as this agent's). ``reconcile()`` is one idempotent pass
that compares the two and decides; everything else only *wakes* it: Podman's
event stream (``podman_events``), a submit or cancel, a deadline (timeout,
stop grace, retry backoff, a job's work backoff), or the periodic resync that
makes a lost event harmless. One wake is narrower: a container's exit file
(``exit_watch``) has the loop finish just that job, at once.

This module decides and hands out; the work is done elsewhere: ``launch``
(create and start), ``finish`` (record the end, pack /out, then remove),
``sweeps`` (strays), ``stops`` (a cancel's or timeout's signals), all run on
the worker pool (``workers``): a Podman call that hangs holds its own job
only. A job with work in flight is "busy" and left alone by the loop until
its worker finishes. Deadlines are counted on the monotonic clock
(``deadlines``); the database keeps wall-clock times.

The loop's thread ends only by ``stop()``: whatever an iteration raises (a
pass, the watchdog tick) is logged, makes the agent *degraded* with the
reason (Podman, the database, or the loop itself), and is retried after a
backoff that grows to ``MAX_PASS_BACKOFF``; the first pass that succeeds
clears it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from agent.adapters.joblogs import JobLogs
from agent.adapters.podman import ContainerState
from agent.config import Config
from agent.protocol.spec import DEFAULT_STOP_TIMEOUT
from agent.protocol.states import ACTIVE, State
from agent.rules import admission
from agent.runtime.deadlines import Deadlines
from agent.runtime.exit_watch import ExitWatch
from agent.runtime.finish import Finisher
from agent.runtime.health import DATABASE, PODMAN, Health
from agent.runtime.launch import Launcher
from agent.runtime.overdue import Overdue
from agent.runtime.podman_events import EventFollower
from agent.runtime.ports import ArtifactFiles, EventSource, ExitSource, PodmanPort
from agent.runtime.steps import adopt, move
from agent.runtime.stops import Stops
from agent.runtime.sweeps import Sweeps
from agent.runtime.waiting import settle
from agent.runtime.workers import Workers
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: How soon a SIGKILL is repeated while the container has not exited yet.
RESEND_KILL_AFTER = 1.0
#: Pool threads beyond ``max_concurrent``: every active job may have a call in
#: flight (even a hung one) and strays can still be removed.
SPARE_WORKERS = 4


class Controller:
    """Drives every non-terminal job toward its end. One thread runs ``run()``.

    Args:
        store: the job store (what should be).
        podman: the Podman connection of the loop and its workers (what is).
        events_podman: a Podman connection of its own for the event stream.
        logs: each attempt's output file (made before its container, read
            for the log tail of a failure).
        config: limits, intervals and policies, read at each use.
        clock: the wall-clock time, in seconds (what the database records).
        monotonic: the clock every deadline of the loop is counted on.
        sleep: waits that many seconds (tests advance their clock instead).
        on_tick: called every loop iteration (the watchdog, the status line).
        on_podman_down: called when a pass finds Podman not answering.
        files: workspaces and /out archives (None: neither).
        executor: runs the pool's work (tests hand in one that runs it inline).
        exit_files: conmon's exit files, watched for the end of a job
            (None: Podman's events tell it, later).
    """

    #: The longest the loop sleeps without calling ``on_tick``.
    tick_interval = 5.0

    def __init__(
        self,
        store: Store,
        podman: PodmanPort,
        events_podman: EventSource,
        logs: JobLogs,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[], None] = lambda: None,
        on_podman_down: Callable[[], None] = lambda: None,
        files: ArtifactFiles | None = None,
        executor: Executor | None = None,
        exit_files: ExitSource | None = None,
    ):
        self.store = store
        self.podman = podman
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.on_tick = on_tick
        self.on_podman_down = on_podman_down
        self.deadlines = Deadlines(clock, monotonic)
        self.overdue = Overdue(logs, self.deadlines)
        self.health = Health()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._full = True  # the next wake runs a full pass, not only queued job ends
        self._full_lock = threading.Lock()
        self.workers = Workers(
            executor
            or ThreadPoolExecutor(
                max_workers=config.max_concurrent + SPARE_WORKERS, thread_name_prefix="podman"
            ),
            wake=self.wake,
            on_error=self.health.work_failed,
            monotonic=monotonic,
        )
        self.events = EventFollower(events_podman, wake=self.wake, stopped=self._stop)
        self.exits = ExitWatch(exit_files, notify=self._wake.set, stopped=self._stop)
        self.launcher = Launcher(
            store,
            podman,
            logs,
            config,
            files=files,
            clock=clock,
            on_unavailable=self._podman_down,
        )
        self.finisher = Finisher(
            store,
            podman,
            logs,
            config,
            files=files,
            workers=self.workers,
            clock=clock,
            monotonic=monotonic,
            sleep=sleep,
        )
        self.sweeps = Sweeps(store, podman, config, self.workers)
        self.stops = Stops(store, podman, self.deadlines, clock)

    # -- triggers ------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a reconcile pass as soon as possible (cheap, thread-safe)."""
        with self._full_lock:
            self._full = True
        self._wake.set()

    def stop(self) -> None:
        """End the loop and the event stream; work already handed out finishes first."""
        self._stop.set()
        self._wake.set()
        self.workers.shutdown()

    def start_event_stream(self) -> None:
        """Follow Podman's events and the exit files, each on a thread of its own."""
        self.events.start()
        self.exits.start()

    def settle(self, timeout: float) -> bool:
        """Wait until the pool has no work left (e.g. the recovery pass's).

        Returns:
            True when it is idle, False when ``timeout`` seconds passed first.
        """
        return self.workers.settle(timeout)

    @property
    def degraded(self) -> str | None:
        """Why work cannot proceed (Podman, the database, the loop), or None."""
        return self.health.degraded

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Reconcile until ``stop()``; calls ``on_tick`` every iteration (watchdog).

        Never ends otherwise: an iteration that raises is logged, degrades
        the agent and is retried after a backoff.
        """
        due = self.monotonic()
        while not self._stop.is_set():
            try:
                if self._wake.is_set() or self.monotonic() >= due:
                    self._wake.clear()
                    with self._full_lock:
                        full, self._full = self._full or self.monotonic() >= due, False
                    if full:
                        due = self.reconcile_safely()
                    else:
                        self.exits.finish(self.store, self.workers, self.finisher, self.wake)
                self.on_tick()
            except Exception as exc:  # the thread must outlive anything (on_tick included)
                due = self._pass_failed(exc)
            # Wake for the next pass, or sooner to pet the watchdog. While
            # backing off only a stop cuts the wait: every finished piece of
            # work wakes the loop, and would retry the failing pass at once.
            pause = max(0.0, min(due - self.monotonic(), self.tick_interval))
            (self._stop if self.health.failed_passes else self._wake).wait(pause)

    def reconcile_safely(self, *, admit: bool = True) -> float:
        """One pass; whatever it raises is logged, degrades the agent and is retried.

        Returns:
            When (monotonic) the next pass is due: the pass's earliest
            deadline or the resync; after a failed pass, the end of its backoff.
        """
        # Reads may work while writes cannot (another process holds the write
        # lock): only a pass that began by writing may say the database is
        # usable again, not one that a worker's failed write overtook.
        probed = self.health.troubled(DATABASE)
        try:
            if probed:
                with self.store.writing():
                    pass
            deadline = self.reconcile(admit=admit)
        except Exception as exc:
            return self._pass_failed(exc)
        self.health.pass_succeeded(database=probed)
        due = self.monotonic() + self.config.resync_interval
        return due if deadline is None else min(due, deadline)

    def reconcile(self, *, admit: bool = True) -> float | None:
        """Compare jobs with containers and act on every difference.

        Args:
            admit: also start queued jobs. The start-up recovery pass does not:
                it only settles what happened while the agent was down, so
                READY does not wait on new containers (or image pulls).

        Returns:
            The earliest monotonic time something is due (a timeout, a kill
            after the stop grace, a retry, the end of a job's work backoff),
            or None.

        Raises:
            PodmanUnavailable: Podman did not answer the listing.
            StorageError: the database could not be written (a read error is
                SQLite's own, e.g. ``disk I/O error``).
        """
        # Order matters. Jobs with work in flight are set aside first; the rest
        # cannot change under us (only this thread starts work on them). Then
        # the database is read before Podman, so every container a job
        # recorded as running already had is in the list.
        busy = self.workers.busy()
        jobs = [j for j in self.store.nonterminal() if j["id"] not in busy]
        containers = {c.job_id: c for c in self.podman.list_ours() if c.job_id}
        self._podman_down(None)
        self.exits.known(containers)
        known = busy | {j["id"] for j in jobs}
        live = busy | {j["id"] for j in jobs if j["state"] in ACTIVE}
        now, mono = self.clock(), self.monotonic()
        self.deadlines.forget(known)
        self.overdue.forget(known)
        self.workers.forget(known | containers.keys())
        deadlines: list[float] = []

        for job in jobs:
            if job["state"] in ACTIVE:
                due = self._drive_active(job, containers.get(job["id"]), mono)
                if due is not None:
                    deadlines.append(due)
            elif job["state"] == State.QUEUED:
                if job["cancel_requested"]:
                    move(self.store, job, State.CANCELLED, expect=[State.QUEUED])
                elif job["not_before"] is not None:
                    due = self._retry_at(job)
                    if due > mono:
                        deadlines.append(due)

        self.sweeps.containers(containers, live, now)
        # A queued job (waiting for a retry) keeps its volume too.
        self.sweeps.volumes_if_due(known, mono)

        # Read afresh (a job submitted during the pass waits like the rest): a
        # job whose dependency ended badly is cancelled, its waiters with it.
        fresh = self.store.nonterminal()
        held = settle(self.store, fresh)
        if admit:
            for job in admission.admit(
                [self._in_wall_frame(job, now, mono) for job in fresh],
                max_concurrent=self.config.max_concurrent,
                name_limits=self.config.name_limits,
                now=now,
                held=held,
                control=self.store.queue_control(),
            ):
                self._launch(job)
        retry = self.workers.next_retry()
        if retry is not None:
            deadlines.append(retry)
        return min(deadlines, default=None)

    def _retry_at(self, job: dict) -> float:
        """When (monotonic) a queued job waiting for a retry may start."""
        return self.deadlines.anchor(
            job["id"], ("not_before", job["not_before"]), job["not_before"]
        )

    def _in_wall_frame(self, job: dict, now: float, mono: float) -> dict:
        """The job with ``not_before`` moved to where its monotonic anchor falls
        on today's wall clock (admission compares it with the wall-clock now)."""
        if job["not_before"] is None:
            return job
        return {**job, "not_before": now + (self._retry_at(job) - mono)}

    # -- active jobs ---------------------------------------------------------

    def _drive_active(
        self, job: dict, container: ContainerState | None, mono: float
    ) -> float | None:
        """Move a starting or running job along what its container shows."""
        if container is not None and container.attempt not in (None, job["attempt"]):
            # An earlier attempt's (its removal failed): not this attempt's to
            # finish or adopt. Once it is gone the next pass goes on.
            self.sweeps.earlier_attempt(job, container)
            return None
        if container is None:
            if job["state"] == State.STARTING:
                # The agent died between recording `starting` and creating the
                # container: start it now, once (the same attempt number).
                self._launch(job, resume=True)
            else:
                self.finisher.lost(job)
            return None
        if container.exited:
            put_off = self.finisher.due(job["id"])  # an end put off for want of space
            if put_off is not None and put_off > mono:
                return put_off
            self.workers.submit(job["id"], self.finisher.finish, job, container)
            return None
        if not container.running:
            # Created but not started: the agent died between the two calls.
            self.workers.submit(job["id"], self.launcher.start_created, job, container)
            return None
        if job["state"] == State.STARTING:
            job = adopt(self.store, job, container.id, self.clock()) or job
        return self._enforce_deadlines(job, container, mono)

    def _enforce_deadlines(self, job: dict, container: ContainerState, mono: float) -> float | None:
        """Stop a cancelled, timed-out or stalled job (``overdue``), or one whose stop another part
        asked for (``stop_reason`` set, no stop sent yet: the shipper's
        ``log_limit``): SIGTERM, then SIGKILL after its grace, each sent by
        the pool.

        Returns:
            When (monotonic) to look at the job again (its timeout, the end of
            its stop grace, a kill to repeat), or None when it has neither.
        """
        job_id, attempt, spec = job["id"], job["attempt"], job["spec"]
        grace = spec.get("stop_timeout", DEFAULT_STOP_TIMEOUT)
        stop_reason = job["stop_reason"]
        if stop_reason is None or job["stop_sent_at"] is None:
            if stop_reason is None and job["cancel_requested"]:
                stop_reason = "cancel"
            elif stop_reason is None:
                stop_reason, due = self.overdue.check(job, mono)  # a timeout, or stalled
                if stop_reason is None:
                    return due
            self.workers.submit(job_id, self.stops.term, job, container.id, stop_reason)
            return mono + grace
        kill_at = self.deadlines.anchor(job_id, ("stop", attempt), job["stop_sent_at"]) + grace
        killed = self.deadlines.marked(job_id, ("kill", attempt))
        again = kill_at if killed is None else killed + RESEND_KILL_AFTER
        if mono < again:
            return again
        self.workers.submit(job_id, self.stops.kill, job, container.id)
        return mono + RESEND_KILL_AFTER

    # -- work handed to the pool ---------------------------------------------

    def _launch(self, job: dict, *, resume: bool = False) -> None:
        """Record ``starting`` (a new attempt) and hand the create to the pool.

        ``resume`` re-launches a job found ``starting`` with no container.
        """
        if not resume:
            job = self.launcher.record_starting(job)
            if job is None:
                return
            # A job's timeout covers its start (pull, create) too: it counts
            # from now, as ``started_at`` does.
            self.deadlines.mark(job["id"], ("started", job["attempt"]))
        self.workers.submit(job["id"], self.launcher.create_and_start, job)

    # -- health --------------------------------------------------------------

    def _pass_failed(self, exc: Exception) -> float:
        """Degrade and log (``Health``); returns the monotonic time the backoff ends."""
        cause, delay = self.health.pass_failed(exc)
        if cause == PODMAN:
            self.on_podman_down()
        return self.monotonic() + delay

    def _podman_down(self, reason: str | None) -> None:
        """Why Podman work cannot proceed (the launcher's report); None: it can."""
        self.health.set(PODMAN, reason)

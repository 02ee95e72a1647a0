"""The reconcile loop: make Podman match the database, level-triggered.

The database says what should be (jobs and their states), Podman says what is
(containers labelled as this agent's). ``reconcile()`` is one idempotent full
pass that lists the containers, compares the two and decides; it runs at
start-up, on the periodic resync and when the event stream (re)connects, so a
missed event only delays. Every other wake is incremental and acts on what
caused it, without listing Podman's containers: a container's end (its exit
file or ``died`` event, ``exit_watch``) finishes just that job; a submit, a
cancel or a finished piece of work runs a light pass (``step``) over the
database's active jobs alone: it admits (``admitting``), sends the stops
asked for and keeps the deadlines (timeout, stop grace, retry backoff, a
job's work backoff).

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

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from agent.adapters.joblogs import JobLogs
from agent.adapters.podman import ContainerState
from agent.config import Config
from agent.protocol.states import ACTIVE, State
from agent.runtime.admitting import Admitting
from agent.runtime.deadlines import Deadlines
from agent.runtime.enforcing import Enforcing
from agent.runtime.exit_watch import ExitWatch
from agent.runtime.finish import Finisher
from agent.runtime.health import DATABASE, PODMAN, Health
from agent.runtime.launch import Launcher
from agent.runtime.light_pass import LightPass
from agent.runtime.overdue import Overdue
from agent.runtime.podman_events import EventFollower
from agent.runtime.ports import ArtifactFiles, EventSource, ExitSource, PodmanPort
from agent.runtime.recording import Recording
from agent.runtime.steps import adopt
from agent.runtime.stops import Stops
from agent.runtime.sweeps import Sweeps
from agent.runtime.workers import Workers
from agent.storage.store import Store

log = logging.getLogger(__name__)

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
        self._full = True  # the next wake runs a full pass
        self._changed = False  # the next wake runs a light pass, not only queued job ends
        self._flags = threading.Lock()
        self._resync_at = monotonic()  # when the next full pass is due
        self._deadline_at: float | None = None  # the earliest deadline the last pass found
        self.recording = Recording()
        self.workers = Workers(
            executor
            or ThreadPoolExecutor(
                max_workers=config.max_concurrent + SPARE_WORKERS, thread_name_prefix="podman"
            ),
            wake=self.wake,  # a slot freed, a job's queued end may be finished now
            on_error=self.health.work_failed,
            monotonic=monotonic,
        )
        self.exits = ExitWatch(exit_files, notify=self._wake.set, stopped=self._stop, clock=clock)
        self.events = EventFollower(
            events_podman, wake=self.resync, stopped=self._stop, on_event=self.exits.died
        )
        self.launcher = Launcher(
            store,
            podman,
            logs,
            config,
            files=files,
            clock=clock,
            on_unavailable=self._podman_down,
        )
        self.launcher.made = self.exits.expect
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
        self.sweeps = Sweeps(store, podman, config, self.workers, files)
        self.stops = Stops(store, podman, self.deadlines, clock)
        self.enforcing = Enforcing(self.workers, self.stops, self.deadlines, self.overdue)
        self.admitting = Admitting(store, config, self.deadlines, self._launch)
        parts = (self.workers, self.enforcing, self.admitting, self.exits.container_of)
        self.step = LightPass(store, *parts, clock=clock, monotonic=monotonic)

    # -- triggers ------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a light pass as soon as possible: the database changed (a submit, a
        cancel, a finished piece of work). Cheap and thread-safe."""
        with self._flags:
            self._changed = True
        self._wake.set()

    def resync(self) -> None:
        """Ask for a full pass as soon as possible (cheap, thread-safe)."""
        with self._flags:
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

    def hold_cleanups(self) -> None:  # for the recovery pass: records without removals
        self.recording.hold_cleanups()

    def release_cleanups(self) -> None:  # to the pool, before the loop runs
        self.recording.release_cleanups(self.workers)

    def settle(self, timeout: float) -> bool:
        """True once every end a full pass handed out (e.g. the recovery pass's) is
        recorded, cleanups aside (``recording``); False if ``timeout`` s passed first."""
        return self.recording.wait(timeout)

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
                    due = self._one_wake()
                self.on_tick()
            except Exception as exc:  # the thread must outlive anything (on_tick included)
                due = self._pass_failed(exc)
            # Wake for the next pass, or sooner to pet the watchdog. While
            # backing off only a stop cuts the wait: every finished piece of
            # work wakes the loop, and would retry the failing pass at once.
            pause = max(0.0, min(due - self.monotonic(), self.tick_interval))
            (self._stop if self.health.failed_passes else self._wake).wait(pause)

    def _one_wake(self) -> float:
        """Act on what woke the loop: a full pass when one is asked for or due, else
        the queued ends and, after a change or at a deadline, a light pass.

        Returns:
            When (monotonic) the loop must look again without a wake.
        """
        mono = self.monotonic()
        with self._flags:
            full, self._full = self._full or mono >= self._resync_at, False
            changed, self._changed = self._changed, False
        if full:
            return self.reconcile_safely()
        self.exits.finish(self.store, self.workers, self.finisher, self.resync)
        if changed or (self._deadline_at is not None and mono >= self._deadline_at):
            return self._safely(self.step)
        return min(self._resync_at, self._deadline_at or self._resync_at)

    def reconcile_safely(self, *, admit: bool = True) -> float:
        """One full pass, run as ``_safely`` says; the next resync is due after it."""
        resync_at = self.monotonic() + self.config.resync_interval
        due = self._safely(lambda: self.reconcile(admit=admit))
        if not self.health.failed_passes:
            self._resync_at = resync_at
        return min(due, self._resync_at)

    def _safely(self, one_pass: Callable[[], float | None]) -> float:
        """Run a pass (full or light); whatever it raises is logged, degrades the agent,
        and has the next pass, after the backoff, be a full one.

        Returns:
            When (monotonic) the next pass is due: the pass's earliest deadline
            or the resync; after a failed pass, the end of its backoff.
        """
        # Reads may work while writes cannot (another process holds the write
        # lock): only a pass that began by writing may say the database is
        # usable again, not one that a worker's failed write overtook.
        probed = self.health.troubled(DATABASE)
        try:
            if probed:
                with self.store.writing():
                    pass
            self._deadline_at = one_pass()
        except Exception as exc:
            self._resync_at = self._pass_failed(exc)
            return self._resync_at
        self.health.pass_succeeded(database=probed)
        return min(self._resync_at, self._deadline_at or self._resync_at)

    def reconcile(self, *, admit: bool = True) -> float | None:
        """Compare jobs with containers and act on every difference.

        Args:
            admit: also start queued jobs and sweep stray volumes and secrets.
                The start-up recovery pass does not: it only settles what
                happened while the agent was down, so READY does not wait on
                new containers (or image pulls) or on listing leftovers.

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
            elif job["state"] == State.QUEUED:
                due = self.admitting.queued(job, mono)
            else:
                continue
            if due is not None:
                deadlines.append(due)

        self.sweeps.containers(containers, live, now)
        if admit:  # the recovery pass leaves the listings to the loop's first pass, after READY
            # A queued job (waiting for a retry) keeps its /out, as does one with a container.
            self.sweeps.volumes_if_due(known | containers.keys(), mono)

        self.admitting.admit(now, mono, start=admit)
        retry = self.workers.next_retry()
        if retry is not None:
            deadlines.append(retry)
        return min(deadlines, default=None)

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
            status = self.exits.listed(container)  # no inspect when the listing tells it all
            record = functools.partial(self.finisher.record, job, container, status)
            self.recording.hand_out(self.workers, job["id"], record)  # settle waits for it
            return None
        if not container.running:
            # Created but not started: the agent died between the two calls.
            self.workers.submit(job["id"], self.launcher.start_created, job, container)
            return None
        if job["state"] == State.STARTING:
            job = adopt(self.store, job, container.id, self.clock()) or job
        return self.enforcing.running(job, container.id, mono)

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

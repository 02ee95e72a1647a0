"""The reconcile loop: make Podman match the database, level-triggered.

The database says what should be (jobs and their states), Podman says what is
(containers labelled as this agent's). ``reconcile()`` is one idempotent pass
that compares the two and decides; everything else only *wakes* it: Podman's
event stream (``podman_events``), a submit or cancel, a deadline (timeout,
stop grace, retry backoff), or the periodic resync that makes a lost event
harmless.

This module decides and hands out; the work is done elsewhere: ``launch``
(create and start), ``finish`` (record the end, pack /out, then remove),
``sweeps`` (strays), all run on the worker pool (``workers``) when they wait
on Podman. A job with work in flight is "busy" and left alone by the loop
until its worker finishes. Only the stop signals of a cancel or timeout are
sent from the loop itself.
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
from agent.protocol.errors import ChooError, PodmanUnavailable
from agent.protocol.spec import DEFAULT_STOP_TIMEOUT
from agent.protocol.states import ACTIVE, State
from agent.rules import admission
from agent.runtime.finish import Finisher
from agent.runtime.launch import Launcher
from agent.runtime.podman_events import EventFollower
from agent.runtime.ports import ArtifactFiles, EventSource, PodmanPort
from agent.runtime.steps import adopt, move
from agent.runtime.sweeps import Sweeps
from agent.runtime.workers import Workers
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: How soon a pass that failed is tried again.
RETRY_PASS_AFTER = 1.0
#: How soon a SIGKILL is repeated while the container has not exited yet.
RESEND_KILL_AFTER = 1.0


class Controller:
    """Drives every non-terminal job toward its end. One thread runs ``run()``.

    Args:
        store: the job store (what should be).
        podman: the Podman connection of the loop and its workers (what is).
        events_podman: a Podman connection of its own for the event stream.
        logs: each attempt's output file (made before its container, read
            for the log tail of a failure).
        config: limits, intervals and policies, read at each use.
        clock: the time, in seconds (every deadline of the loop).
        sleep: waits that many seconds (tests advance their clock instead).
        on_tick: called every loop iteration (the watchdog).
        on_podman_down: called when a pass finds Podman not answering.
        files: workspaces and /out archives (None: neither).
        executor: runs the pool's work (tests hand in one that runs it inline).
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
        sleep: Callable[[float], None] = time.sleep,
        on_tick: Callable[[], None] = lambda: None,
        on_podman_down: Callable[[], None] = lambda: None,
        files: ArtifactFiles | None = None,
        executor: Executor | None = None,
    ):
        self.store = store
        self.podman = podman
        self.config = config
        self.clock = clock
        self.on_tick = on_tick
        self.on_podman_down = on_podman_down
        self.degraded: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.workers = Workers(
            executor
            or ThreadPoolExecutor(
                max_workers=max(2, min(16, config.max_concurrent)), thread_name_prefix="podman"
            ),
            wake=self.wake,
            on_unavailable=self._set_degraded,
        )
        self.events = EventFollower(events_podman, wake=self.wake, stopped=self._stop)
        self.launcher = Launcher(
            store,
            podman,
            logs,
            config,
            files=files,
            clock=clock,
            on_unavailable=self._set_degraded,
        )
        self.finisher = Finisher(
            store,
            podman,
            logs,
            config,
            files=files,
            workers=self.workers,
            clock=clock,
            sleep=sleep,
        )
        self.sweeps = Sweeps(store, podman, config, self.workers)

    # -- triggers ------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a reconcile pass as soon as possible (cheap, thread-safe)."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop and the event stream; work already handed out finishes first."""
        self._stop.set()
        self._wake.set()
        self.workers.shutdown()

    def start_event_stream(self) -> None:
        """Follow Podman's events on a thread of their own; each wakes the loop."""
        self.events.start()

    def settle(self, timeout: float) -> bool:
        """Wait until the pool has no work left (e.g. the recovery pass's).

        Returns:
            True when it is idle, False when ``timeout`` seconds passed first.
        """
        return self.workers.settle(timeout)

    # -- the loop ------------------------------------------------------------

    def run(self) -> None:
        """Reconcile until ``stop()``; calls ``on_tick`` every iteration (watchdog)."""
        due = self.clock()
        while not self._stop.is_set():
            if self._wake.is_set() or self.clock() >= due:
                self._wake.clear()
                deadline = self.reconcile_safely()
                due = self.clock() + self.config.resync_interval
                if deadline is not None:
                    due = min(due, deadline)
            self.on_tick()
            # Wake for the next pass, or sooner to pet the watchdog.
            self._wake.wait(max(0.0, min(due - self.clock(), self.tick_interval)))

    def reconcile_safely(self, *, admit: bool = True) -> float | None:
        """One pass; an unexpected error is logged and retried on the next pass.

        Returns:
            As ``reconcile``; after a failed pass, when to try again.
        """
        try:
            return self.reconcile(admit=admit)
        except PodmanUnavailable as exc:
            self._set_degraded(str(exc))
            self.on_podman_down()
        except ChooError as exc:
            log.error("reconcile pass failed: %s", exc)
        except Exception:
            log.exception("reconcile pass failed")
        return self.clock() + RETRY_PASS_AFTER

    def reconcile(self, *, admit: bool = True) -> float | None:
        """Compare jobs with containers and act on every difference.

        Args:
            admit: also start queued jobs. The start-up recovery pass does not:
                it only settles what happened while the agent was down, so
                READY does not wait on new containers (or image pulls).

        Returns:
            The earliest time something is due (a timeout, a kill after the stop
            grace, a retry), or None.

        Raises:
            PodmanUnavailable: Podman did not answer the listing.
        """
        # Order matters. Jobs with work in flight are set aside first; the rest
        # cannot change under us (only this thread starts work on them). Then
        # the database is read before Podman, so every container a job
        # recorded as running already had is in the list.
        busy = self.workers.busy()
        jobs = [j for j in self.store.nonterminal() if j["id"] not in busy]
        containers = {c.job_id: c for c in self.podman.list_ours() if c.job_id}
        self._set_degraded(None)
        live = busy | {j["id"] for j in jobs if j["state"] in ACTIVE}
        now = self.clock()
        deadlines: list[float] = []

        for job in jobs:
            if job["state"] in ACTIVE:
                due = self._drive_active(job, containers.get(job["id"]), now)
                if due is not None:
                    deadlines.append(due)
            elif job["state"] == State.QUEUED:
                if job["cancel_requested"]:
                    move(self.store, job, State.CANCELLED, expect=[State.QUEUED])
                elif job["not_before"] is not None and job["not_before"] > now:
                    deadlines.append(job["not_before"])

        self.sweeps.containers(containers, live, now)
        # A queued job (waiting for a retry) keeps its volume too.
        self.sweeps.volumes_if_due(busy | {j["id"] for j in jobs}, now)

        if admit:
            for job in admission.admit(
                self.store.nonterminal(),
                max_concurrent=self.config.max_concurrent,
                name_limits=self.config.name_limits,
                now=now,
            ):
                self._launch(job)
        return min(deadlines, default=None)

    # -- active jobs ---------------------------------------------------------

    def _drive_active(
        self, job: dict, container: ContainerState | None, now: float
    ) -> float | None:
        """Move a starting or running job along what its container shows."""
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
            if put_off is not None and put_off > now:
                return put_off
            self.workers.submit(job["id"], self.finisher.finish, job, container)
            return None
        if not container.running:
            # Created but not started: the agent died between the two calls.
            self.workers.submit(job["id"], self.launcher.start_created, job, container)
            return None
        if job["state"] == State.STARTING:
            job = adopt(self.store, job, container.id, now) or job
        return self._enforce_deadlines(job, container, now)

    def _enforce_deadlines(self, job: dict, container: ContainerState, now: float) -> float | None:
        """Stop a cancelled or timed-out job, or one whose stop another part
        asked for (``stop_reason`` set, no stop sent yet: the shipper's
        ``log_limit``): SIGTERM, then SIGKILL after its grace.

        Returns:
            When to look at the job again (its timeout, the end of its stop
            grace), or None when it has neither.
        """
        spec = job["spec"]
        timeout = spec.get("timeout")
        grace = spec.get("stop_timeout", DEFAULT_STOP_TIMEOUT)
        stop_reason = job["stop_reason"]
        if stop_reason is None or job["stop_sent_at"] is None:
            if stop_reason is None and job["cancel_requested"]:
                stop_reason = "cancel"
            elif stop_reason is None and timeout and job["started_at"]:
                if now < job["started_at"] + timeout:
                    return job["started_at"] + timeout
                stop_reason = "timeout"
            elif stop_reason is None:
                return None
            log.info("stopping job %s (%s)", job["id"], stop_reason)
            self.podman.signal(container.id, "SIGTERM")
            self.store.update(job["id"], stop_reason=stop_reason, stop_sent_at=now)
            return now + grace
        kill_at = (job["stop_sent_at"] or now) + grace
        if now >= kill_at:
            self.podman.signal(container.id, "SIGKILL")
            return now + RESEND_KILL_AFTER
        return kill_at

    def _launch(self, job: dict, *, resume: bool = False) -> None:
        """Record ``starting`` (a new attempt) and hand the create to the pool.

        ``resume`` re-launches a job found ``starting`` with no container.
        """
        if not resume:
            job = self.launcher.record_starting(job)
            if job is None:
                return
        self.workers.submit(job["id"], self.launcher.create_and_start, job)

    def _set_degraded(self, reason: str | None) -> None:
        """Record (and log, on a change) why Podman work cannot proceed; None: it can."""
        if reason != self.degraded:
            if reason:
                log.warning("degraded: %s", reason)
            elif self.degraded:
                log.info("Podman answers again; no longer degraded")
        self.degraded = reason

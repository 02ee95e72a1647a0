"""The reconcile loop: make Podman match the database, level-triggered.

The database says what should be (jobs and their states), Podman says what is
(containers labelled as this agent's). ``reconcile()`` is one idempotent pass
that compares the two and acts; everything else only *wakes* it: Podman's
event stream (a ``died`` event), a submit or cancel, a deadline (timeout, stop
grace, retry backoff), or the periodic resync that makes a lost event harmless.
Every step records before it destroys: the exit code, OOM flag and log tail are
committed before the container is removed, so a crash at any point is repaired
by the next pass.

Decisions are made by the one loop thread; the slow Podman calls they lead to
(create and start, inspect and remove) run on a small worker pool, so starting
many jobs is as parallel as Podman allows. A job with work in flight is
"busy" and left alone by the loop until its worker finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.adapters.files import JobFiles
from agent.adapters.journal import JournalReader
from agent.adapters.podman import ContainerState, Hardening, Podman
from agent.adapters.secrets import Credentials
from agent.config import Config
from agent.protocol.errors import (
    ChooError,
    CreateError,
    ImageError,
    InvalidTransition,
    PodmanUnavailable,
)
from agent.protocol.spec import container_name, parse_size
from agent.protocol.states import ACTIVE, TERMINAL, Reason, State
from agent.rules import admission
from agent.storage.store import LOG_TAIL_LINES, Store

log = logging.getLogger(__name__)

EVENT_READ_TIMEOUT = 300.0
#: How long a container killed by a SIGKILL we did not send may take to
#: disappear before its job counts as killed rather than lost.
REMOVAL_SETTLE = 1.0
#: How often a pass also looks for /out volumes no live job owns.
VOLUME_SWEEP_INTERVAL = 60.0


class Controller:
    """Drives every non-terminal job toward its end. One thread runs ``run()``."""

    def __init__(
        self,
        store: Store,
        podman: Podman,
        events_podman: Podman,
        journal: JournalReader,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        on_tick: Callable[[], None] = lambda: None,
        on_podman_down: Callable[[], None] = lambda: None,
        files: JobFiles | None = None,
        executor: Executor | None = None,
    ):
        self.store = store
        self.podman = podman
        self.files = files
        self._volumes_swept_at = float("-inf")
        self.events_podman = events_podman
        self.journal = journal
        self.config = config
        self.clock = clock
        self.on_tick = on_tick
        self.on_podman_down = on_podman_down
        self.degraded: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._events_thread: threading.Thread | None = None
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        # Tests hand in an executor that runs work inline.
        self._pool = executor or ThreadPoolExecutor(
            max_workers=max(2, min(16, config.max_concurrent)), thread_name_prefix="podman"
        )

    # -- triggers ------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a reconcile pass as soon as possible (cheap, thread-safe)."""
        self._wake.set()

    def stop(self) -> None:
        """End the loop; work already handed to the pool finishes first."""
        self._stop.set()
        self._wake.set()
        self._pool.shutdown(wait=True)

    def start_event_stream(self) -> None:
        self._events_thread = threading.Thread(
            target=self._follow_events, name="podman-events", daemon=True
        )
        self._events_thread.start()

    def _follow_events(self) -> None:
        """Wake the loop on every event of ours; reconnect with backoff forever.

        The stream is only a hint: each (re)connect also wakes the loop, whose
        full pass picks up anything that happened while the stream was down.
        """
        delay = 0.1
        while not self._stop.is_set():
            try:
                for event in self.events_podman.events(EVENT_READ_TIMEOUT):
                    delay = 0.1
                    if event.get("Status") == "died" or event.get("Action") == "died":
                        log.debug("container %s died", event.get("Actor", {}).get("ID", "?"))
                    self.wake()
                    if self._stop.is_set():
                        return
            except PodmanUnavailable as exc:
                log.debug("event stream: %s", exc)
            except Exception:
                log.exception("event stream failed; reconnecting")
            self.wake()
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

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

    tick_interval = 5.0

    def reconcile_safely(self, *, admit: bool = True) -> float | None:
        """One pass; an unexpected error is logged and retried on the next pass."""
        try:
            return self.reconcile(admit=admit)
        except PodmanUnavailable as exc:
            self._set_degraded(str(exc))
            self.on_podman_down()
        except ChooError as exc:
            log.error("reconcile pass failed: %s", exc)
        except Exception:
            log.exception("reconcile pass failed")
        return self.clock() + 1.0

    def reconcile(self, *, admit: bool = True) -> float | None:
        """Compare jobs with containers and act on every difference.

        Args:
            admit: also start queued jobs. The start-up recovery pass does not:
                it only settles what happened while the agent was down, so
                READY does not wait on new containers (or image pulls).

        Returns:
            The earliest time something is due (a timeout, a kill after the stop
            grace, a retry), or None.
        """
        # Order matters. Jobs with work in flight are set aside first; the rest
        # cannot change under us (only this thread starts work on them). Then
        # the database is read before Podman, so every container a job
        # recorded as running already had is in the list.
        with self._busy_lock:
            busy = set(self._busy)
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
                    self._try(job, State.CANCELLED, expect=[State.QUEUED])
                elif job["not_before"] is not None and job["not_before"] > now:
                    deadlines.append(job["not_before"])

        self._remove_strays(containers, live, now)
        if now - self._volumes_swept_at >= VOLUME_SWEEP_INTERVAL:
            self._volumes_swept_at = now
            # A queued job (waiting for a retry) keeps its volume too.
            self._remove_stray_volumes(busy | {j["id"] for j in jobs})

        if not admit:
            return min(deadlines, default=None)
        jobs = self.store.nonterminal()
        for job in admission.admit(
            jobs,
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
        if container is None:
            if job["state"] == State.STARTING:
                # The agent died between recording `starting` and creating the
                # container: start it now, once (the same attempt number).
                self._launch(job, resume=True)
            else:
                self._lost(job)
            return None
        if container.exited:
            self._in_pool(job["id"], self._finalize, job, container)
            return None
        if not container.running:
            # Created but not started: the agent died between the two calls.
            # Starting it (not re-creating it) keeps this exactly once even if
            # the old start request is still being served.
            self._in_pool(job["id"], self._start_created, job, container)
            return None
        if job["state"] == State.STARTING:
            job = (
                self._try(
                    job,
                    State.RUNNING,
                    expect=[State.STARTING],
                    started_at=job["started_at"] or now,
                    attempt_fields={"container_id": container.id},
                )
                or job
            )
        return self._enforce_deadlines(job, container, now)

    def _enforce_deadlines(self, job: dict, container: ContainerState, now: float) -> float | None:
        """Stop a cancelled or timed-out job: SIGTERM, then SIGKILL after its grace."""
        spec = job["spec"]
        timeout = spec.get("timeout")
        stop_reason = job["stop_reason"]
        if stop_reason is None:
            if job["cancel_requested"]:
                stop_reason = "cancel"
            elif timeout and job["started_at"] and now >= job["started_at"] + timeout:
                stop_reason = "timeout"
            else:
                return job["started_at"] + timeout if timeout and job["started_at"] else None
            log.info("stopping job %s (%s)", job["id"], stop_reason)
            self.podman.signal(container.id, "SIGTERM")
            self.store.update(job["id"], stop_reason=stop_reason, stop_sent_at=now)
            return now + spec.get("stop_timeout", 10.0)
        kill_at = (job["stop_sent_at"] or now) + spec.get("stop_timeout", 10.0)
        if now >= kill_at:
            self.podman.signal(container.id, "SIGKILL")
            return now + 1.0
        return kill_at

    def _finalize(self, job: dict, container: ContainerState) -> None:
        """Record how the attempt ended, then (and only then) remove its container."""
        info = self.podman.inspect(container.id) or container
        if job["state"] == State.STARTING:
            # It ran and ended while the agent was down: record that it ran.
            job = self._try(
                job,
                State.RUNNING,
                expect=[State.STARTING],
                started_at=job["started_at"] or self.clock(),
                attempt_fields={"container_id": info.id},
            )
            if job is None:
                return
        if self._removed_behind_our_back(job, info):
            self._lost(job)
            return
        exit_code = info.exit_code
        oom = info.oom_killed
        fields: dict[str, Any] = {"exit_code": exit_code}
        attempt_fields = {
            "container_id": info.id,
            "ended_at": self.clock(),
            "exit_code": exit_code,
            "oom": oom,
        }
        if job["stop_reason"] == "cancel" or (job["cancel_requested"] and exit_code != 0):
            target, reason = State.CANCELLED, None
        elif job["stop_reason"] == "timeout":
            target, reason = State.FAILED, Reason.TIMEOUT
        elif exit_code == 0 and not oom:
            target, reason = State.SUCCEEDED, None
        else:
            target, reason = State.FAILED, Reason.OOM if oom else Reason.EXIT
        if target != State.SUCCEEDED:
            fields["log_tail"] = self._log_tail(job["id"])
        attempt_fields["reason"] = reason
        if (
            target == State.FAILED
            and reason in (Reason.EXIT, Reason.OOM)
            and job["retries_left"] > 0
        ):
            self._retry(job, reason, fields, attempt_fields)
        else:
            fields.update(reason=reason)
            # Record before destroy: /out is packed (and the archive recorded
            # with the end) while the container that holds it still exists.
            fields.update(self._pack(job["id"], info))
            self._try(
                job,
                target,
                expect=ACTIVE,
                detail={"reason": reason, "exit_code": exit_code},
                attempt_fields=attempt_fields,
                **fields,
            )
        retrying = target == State.FAILED and job["retries_left"] > 0
        if not self.config.keep_containers or retrying:
            self.podman.remove(info.id)
            if not retrying:
                self.podman.remove_out_volume(job["id"])
        self._remove_secrets(job)

    def _removed_behind_our_back(self, job: dict, info: ContainerState) -> bool:
        """Tell a container someone is removing from one that was merely killed.

        ``podman rm -f`` first kills the container (exit 137), then removes it,
        and the ``died`` event can wake us in between. A SIGKILL the agent did
        not send gets a moment to show whether the container is going away:
        if it is, the job is lost, not failed with exit 137.
        """
        if info.exit_code != 137 or info.oom_killed or job["stop_reason"] is not None:
            return False
        deadline = time.monotonic() + REMOVAL_SETTLE
        while time.monotonic() < deadline:
            if self.podman.inspect(info.id) is None:
                return True
            time.sleep(0.05)
        return False

    def _remove_secrets(self, job: dict) -> None:
        """Remove any Podman secret of a job that asked for secrets.

        ``Podman.run`` removes them once the container has started; this
        catches those left when the agent died between the two.
        """
        if job["spec"].get("secrets"):
            self.podman.remove_secrets(job["id"])

    def _pack(self, job_id: str, info: ContainerState) -> dict[str, Any]:
        """Pack the container's /out into the job's archive; the artifacts columns.

        Read straight from the volume's directory when the agent can read all
        of it (the usual case: the job ran as the container's root, which is
        the agent's user), else through Podman, which reads as any user.
        """
        if self.files is None:
            return {}
        if info.out_source:
            record = self.files.pack_dir(job_id, Path(info.out_source))
            if record is not None:
                return self._noted(job_id, record)
        try:
            with self.podman.read_out(info.id) as stream:
                record = self.files.pack(job_id, stream)
        except PodmanUnavailable:
            raise  # the pass is retried; nothing was recorded
        except Exception as exc:
            log.warning("job %s: could not pack /out: %s", job_id, exc)
            record = {
                "artifacts_state": "error",
                "artifacts_message": f"could not pack /out: {exc}",
            }
        return self._noted(job_id, record)

    @staticmethod
    def _noted(job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        if record["artifacts_state"] in ("too_large", "error"):
            log.warning("job %s: %s", job_id, record["artifacts_message"])
        return record

    def _lost(self, job: dict) -> None:
        """A running job's container vanished (removed behind our back)."""
        log.warning("job %s lost its container %s", job["id"], container_name(job["id"]))
        attempt_fields = {"ended_at": self.clock(), "reason": Reason.LOST}
        # Without its container, /out cannot be read (the volume goes too).
        lost_out = {
            "artifacts_state": "error",
            "artifacts_message": "the container was lost; /out could not be read",
        }
        if job["stop_reason"] == "cancel":
            self._try(
                job, State.CANCELLED, expect=ACTIVE, attempt_fields=attempt_fields, **lost_out
            )
        elif job["retries_left"] > 0 and job["stop_reason"] is None:
            self._retry(job, Reason.LOST, {}, attempt_fields)
            return
        else:
            self._try(
                job,
                State.FAILED,
                expect=ACTIVE,
                detail={"reason": Reason.LOST},
                attempt_fields=attempt_fields,
                reason=Reason.LOST,
                **lost_out,
            )
        self._in_pool(job["id"], self.podman.remove_out_volume, job["id"])

    def _retry(self, job: dict, reason: Reason, fields: dict, attempt_fields: dict) -> None:
        delay = admission.backoff(
            job["attempt"], self.config.retry_backoff_base, self.config.retry_backoff_cap
        )
        log.info(
            "job %s attempt %d failed (%s); retrying in %.0fs",
            job["id"],
            job["attempt"],
            reason,
            delay,
        )
        self._try(
            job,
            State.QUEUED,
            expect=[State.RUNNING],
            detail={"reason": reason, "retry_in": delay, "exit_code": fields.get("exit_code")},
            attempt_fields=attempt_fields,
            retries_left=job["retries_left"] - 1,
            not_before=self.clock() + delay,
            stop_reason=None,
            stop_sent_at=None,
            **fields,
        )

    def _launch(self, job: dict, *, resume: bool = False) -> None:
        """Record ``starting`` (a new attempt) and hand the create to the pool.

        ``resume`` re-launches a job found ``starting`` with no container.
        """
        if not resume:
            trigger = "retry" if job["attempt"] > 0 else job["trigger"]
            job = self._try(job, State.STARTING, expect=[State.QUEUED], new_attempt=trigger)
            if job is None:
                return
        self._in_pool(job["id"], self._create_and_start, job)

    def _create_and_start(self, job: dict) -> None:
        try:
            container_id = self.podman.run(
                job["id"],
                job["attempt"],
                job["spec"],
                on_pull=lambda image: self.store.note(job["id"], "pulling", {"image": image}),
                workspace=self._workspace(job["id"]),
                secrets=Credentials(self.config).resolve(
                    job["spec"].get("secrets") or [], job["id"]
                ),
                hardening=hardening(self.config),
            )
        except PodmanUnavailable as exc:
            self._try(job, State.QUEUED, expect=[State.STARTING], detail={"reason": "podman"})
            self._set_degraded(str(exc))
            return
        except (ImageError, CreateError) as exc:
            reason = Reason.IMAGE if isinstance(exc, ImageError) else Reason.CREATE
            log.warning("job %s could not start: %s", job["id"], exc.message)
            self._try(
                job,
                State.FAILED,
                expect=[State.STARTING],
                detail={"reason": reason, "message": exc.message},
                attempt_fields={"ended_at": self.clock(), "reason": reason},
                reason=reason,
                log_tail=exc.message,
            )
            self.podman.remove_out_volume(job["id"])
            return
        self._mark_running(job, container_id)

    def _workspace(self, job_id: str) -> str | None:
        path = self.files.workspace_dir(job_id) if self.files else None
        return str(path) if path else None

    def _start_created(self, job: dict, container: ContainerState) -> None:
        self.podman.start(container.id)
        # Created before the agent went down: its secrets were not removed yet.
        self._remove_secrets(job)
        if job["state"] == State.STARTING:
            self._mark_running(job, container.id)

    def _mark_running(self, job: dict, container_id: str) -> None:
        now = self.clock()
        self._try(
            job,
            State.RUNNING,
            expect=[State.STARTING],
            started_at=now,
            attempt_fields={"container_id": container_id, "started_at": now},
        )

    def _in_pool(self, job_id: str, work: Callable[..., None], *args: Any) -> None:
        """Run slow Podman work for one job off the loop; the job is busy until done."""
        with self._busy_lock:
            if job_id in self._busy:
                return
            self._busy.add(job_id)

        def run() -> None:
            try:
                work(*args)
            except PodmanUnavailable as exc:
                self._set_degraded(str(exc))
            except Exception:
                log.exception("work on job %s failed; will retry", job_id)
            finally:
                with self._busy_lock:
                    self._busy.discard(job_id)
                self.wake()

        self._pool.submit(run)

    def settle(self, timeout: float) -> bool:
        """Wait until the pool has no work left (e.g. the recovery pass's); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._busy_lock:
                if not self._busy:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _is_busy(self, job_id: str) -> bool:
        with self._busy_lock:
            return job_id in self._busy

    # -- strays --------------------------------------------------------------

    def _remove_strays(
        self, containers: dict[str, ContainerState], live: set[str], now: float
    ) -> None:
        """Remove containers of ours that no starting or running job owns."""
        for job_id, container in containers.items():
            if job_id in live:
                continue
            try:
                known = self.store.get(job_id)
            except ChooError:
                known = None
            if known is None:
                created = container.created_at
                if created is not None and now - created < self.config.orphan_grace:
                    continue
                log.warning("removing orphan container %s (no such job)", container.name)
            elif known["state"] in TERMINAL and self.config.keep_containers:
                continue
            log.info("removing stray container %s", container.name)
            self._in_pool(job_id, self.podman.remove, container.id)

    def _remove_stray_volumes(self, live: set[str]) -> None:
        """Remove /out volumes of ours whose job has ended or is unknown.

        A volume still used by a kept container (``keep_containers``) stays;
        Podman refuses to remove it until the container is gone.
        """
        for _name, job_id in self.podman.list_out_volumes():
            if job_id not in live:
                self._in_pool(job_id, self.podman.remove_out_volume, job_id)

    # -- helpers -------------------------------------------------------------

    def _log_tail(self, job_id: str) -> str | None:
        try:
            lines = self.journal.read(container_name(job_id), tail=LOG_TAIL_LINES)
        except ChooError as exc:
            log.warning("no log tail for job %s: %s", job_id, exc.message)
            return None
        return "\n".join(entry["line"] for entry in lines)

    def _try(self, job: dict, target: State, **kwargs: Any) -> dict | None:
        """Transition, treating a lost race (someone else moved the job) as a no-op."""
        try:
            return self.store.transition(job["id"], target, **kwargs)
        except InvalidTransition as exc:
            log.debug("skipped %s -> %s: %s", job["id"], target, exc.message)
            return None

    def _set_degraded(self, reason: str | None) -> None:
        if reason != self.degraded:
            if reason:
                log.warning("degraded: %s", reason)
            elif self.degraded:
                log.info("Podman answers again; no longer degraded")
        self.degraded = reason


def hardening(config: Config) -> Hardening:
    """The container confinement the configuration asks for (read per job, so
    a reload applies to the next container)."""
    memory = config.default_memory
    return Hardening(
        caps=tuple(cap.upper().removeprefix("CAP_") for cap in config.container_caps),
        no_new_privileges=config.no_new_privileges,
        pids=config.default_pids,
        memory=parse_size(memory, "default_memory") if memory not in ("", "0") else 0,
        read_only=config.read_only_rootfs,
    )

"""Ending an attempt: record how it ended, pack /out, then remove the container.

Runs on the worker pool (``record``, which hands back the removal, or
``finish``: both) or, for a container that vanished, on the loop (``lost``).
Record before destroy: the exit code, OOM flag, log tail and /out archive
are committed while the container still exists, so a crash at any point
leaves something the next pass can finish. The outcome is decided by
``agent.rules.outcome``; this module only carries it out.

How the container ended is read from its exit file when the loop has it
(``ExitStatus``: the exit code and the OOM flag, as Podman itself reads
them), and /out from the job's host directory (agent/adapters/out_dirs.py)
or else its volume's directory, found beside the last one Podman named; only
what those cannot tell sends an inspect to Podman. A job begun by an older
agent, with a volume, is finished the same way.

An end that cannot be recorded for want of space (the archive hits ENOSPC,
or the database is full) is put off, not lost: nothing is recorded, the
container and its /out stay, and ``due`` tells the loop when to try again
(with backoff), until there is room again.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.adapters.joblogs import JobLogs, cut_of, tail_bytes
from agent.adapters.podman import ContainerState, out_volume_name
from agent.adapters.podman.exits import ExitStatus
from agent.config import Config
from agent.protocol.errors import PodmanUnavailable, StorageError
from agent.protocol.spec import container_name
from agent.protocol.states import ACTIVE, State
from agent.rules.outcome import Outcome, decide
from agent.runtime.ports import ArtifactFiles, PodmanPort
from agent.runtime.steps import adopt, clean_up, move, remove_out, retry_later
from agent.runtime.workers import Workers
from agent.storage.store import LOG_TAIL_LINES, Store

log = logging.getLogger(__name__)

#: How long a container killed by a SIGKILL we did not send may take to
#: disappear before its job counts as killed rather than lost.
REMOVAL_SETTLE = 1.0
#: How often to look whether such a container is gone yet.
REMOVAL_POLL = 0.05
#: The most bytes of output a log tail keeps (a job may print one huge line).
LOG_TAIL_BYTES = 64 * 1024
#: An end put off for want of space is tried again after this many seconds,
#: doubling on each failure up to the cap.
DEFER_BACKOFF = (2.0, 60.0)

_LOST_OUT = {
    "artifacts_state": "error",
    "artifacts_message": "the container was lost; /out could not be read",
}


class Finisher:
    """Records the end of attempts and cleans up after them.

    Args:
        store: the job store.
        podman: the Podman connection of the loop and its workers.
        logs: each attempt's output, for the log tail of a failure.
        config: retry backoff and ``keep_containers``, read at each use.
        files: packs /out into the job's archive (None: no artifacts).
        workers: the pool, for cleanup a lost job leaves.
        clock: the time, in seconds.
        monotonic: the clock an end put off is due on (``due``).
        sleep: waits that many seconds (tests advance their clock instead).
    """

    def __init__(
        self,
        store: Store,
        podman: PodmanPort,
        logs: JobLogs,
        config: Config,
        *,
        files: ArtifactFiles | None,
        workers: Workers,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
    ):
        self.store = store
        self.podman = podman
        self.logs = logs
        self.config = config
        self.files = files
        self.workers = workers
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self._lock = threading.Lock()
        #: Ends put off for want of space: job ID -> (failures, when due).
        self._deferred: dict[str, tuple[int, float]] = {}
        #: Takes the usage columns of the attempt that ran in a container (set
        #: by the composition root to the usage sampler's ``take``).
        self.usage: Callable[[str], dict[str, Any]] = lambda container_id: {}
        #: Where Podman keeps volumes (learnt from an inspect's /out source).
        self._volumes: Path | None = None

    def due(self, job_id: str) -> float | None:
        """When the end of a job, put off for want of space, may be tried again.

        Returns:
            That time (by ``monotonic``), or None when nothing is put off.
        """
        with self._lock:
            deferred = self._deferred.get(job_id)
        return None if deferred is None else deferred[1]

    def finish(
        self,
        job: dict,
        container: ContainerState,
        status: ExitStatus | None = None,
        ended_at: float | None = None,
    ) -> None:
        """``record``, then at once the cleanup it hands back (its Args and Raises)."""
        self.record(job, container, status, ended_at)()

    def record(
        self,
        job: dict,
        container: ContainerState,
        status: ExitStatus | None = None,
        ended_at: float | None = None,
    ) -> Callable[[], None]:
        """Record how the attempt in an exited container ended; hand back its cleanup.

        The cleanup (``steps.clean_up``) may run later (the sweeps remove what
        a killed agent left). With no space for the archive or the record,
        nothing is recorded: the end is put off (``due``) and logged once.

        Args:
            job: the job (``starting`` or ``running``).
            container: its exited container, as last listed.
            status: what its exit file said (None: Podman is asked).
            ended_at: when the agent learnt of the end: the attempt's ``ended_at`` (None: now).

        Returns:
            The cleanup to run next (it may raise ``PodmanUnavailable``).

        Raises:
            PodmanUnavailable: Podman did not answer; nothing was recorded.
            StorageError: the end was put off (no room on the disk or in the database).
        """
        job_id = job["id"]
        try:
            cleanup = self._record(job, container, status, ended_at)
        except StorageError as exc:
            with self._lock:
                failures = self._deferred.get(job_id, (0, 0.0))[0]
                base, cap = DEFER_BACKOFF
                delay = min(cap, base * 2**failures)
                self._deferred[job_id] = (failures + 1, self.monotonic() + delay)
            if not failures:
                log.warning(
                    "job %s ended, but its end cannot be recorded yet: %s; its container "
                    "is kept, and the end is tried again until it can be",
                    job_id,
                    exc.message,
                )
            raise  # the pool reports it: the agent shows itself degraded by the database
        with self._lock:
            deferred = self._deferred.pop(job_id, None)
        if deferred is not None:
            log.info("job %s: its end is recorded at last (put off %d times)", job_id, deferred[0])
        return cleanup

    def _record(
        self,
        job: dict,
        container: ContainerState,
        status: ExitStatus | None,
        ended_at: float | None,
    ) -> Callable[[], None]:
        info = self._ended_state(job["id"], container, status)
        if job["state"] == State.STARTING:
            # It ran and ended while the agent was down: record that it ran.
            job = adopt(self.store, job, info.id, self.clock())
            if job is None:
                return _nothing
        if self._removed_behind_our_back(job, info):
            self.lost(job)
            return _nothing
        exit_code = info.exit_code
        outcome = decide(
            stop_reason=job["stop_reason"],
            cancel_requested=job["cancel_requested"],
            retries_left=job["retries_left"],
            exit_code=exit_code,
            oom=info.oom_killed,
            retry_on=job["spec"].get("retry_on"),
        )
        fields: dict[str, Any] = {"exit_code": exit_code}
        attempt_fields = {
            "container_id": info.id,
            "ended_at": self.clock() if ended_at is None else ended_at,
            "exit_code": exit_code,
            "oom": info.oom_killed,
            "reason": outcome.attempt_reason,
            **self.usage(info.id),
            "retry": outcome.note,
        }
        if outcome.state != State.SUCCEEDED:
            fields["log_tail"] = self._log_tail(job)
        if outcome.retry:
            self._retry(job, outcome, fields, attempt_fields)
        else:
            # Record before destroy: /out is packed (and the archive recorded
            # with the end) while the container that holds it still exists.
            fields.update(reason=outcome.reason, **self._pack(job["id"], info))
            move(
                self.store,
                job,
                outcome.state,
                expect=ACTIVE,
                detail={"reason": outcome.reason, "exit_code": exit_code},
                attempt_fields=attempt_fields,
                **fields,
            )
        return functools.partial(
            clean_up, self.podman, self.config, self.files, job, info.id, retried=outcome.retry
        )

    def lost(self, job: dict) -> None:
        """Record that a job's container vanished (removed behind our back).

        Args:
            job: the job (``starting`` or ``running``) whose container is gone.
        """
        log.warning("job %s lost its container %s", job["id"], container_name(job["id"]))
        outcome = decide(
            stop_reason=job["stop_reason"],
            cancel_requested=job["cancel_requested"],
            retries_left=job["retries_left"],
            lost=True,
            retry_on=job["spec"].get("retry_on"),
        )
        attempt_fields = {
            "ended_at": self.clock(),
            "reason": outcome.attempt_reason,
            "retry": outcome.note,
        }
        if outcome.retry:
            self._retry(job, outcome, {}, attempt_fields)
            return
        # Without its container, /out is not read (and goes too). A cancel's
        # event names no reason (its own is None, or shutdown).
        cancelled = outcome.state == State.CANCELLED
        move(
            self.store,
            job,
            outcome.state,
            expect=ACTIVE,
            attempt_fields=attempt_fields,
            reason=outcome.reason,
            **({} if cancelled else {"detail": {"reason": outcome.reason}}),
            **_LOST_OUT,
        )
        self.workers.submit(job["id"], remove_out, self.podman, self.files, job["id"])

    def _retry(self, job: dict, outcome: Outcome, fields: dict, attempt_fields: dict) -> None:
        """Put the job back in the queue, due after its backoff."""
        retry_later(
            self.store,
            job,
            config=self.config,
            now=self.clock(),
            expect=[State.RUNNING],
            reason=outcome.reason,
            note=outcome.note,
            attempt_fields=attempt_fields,
            **fields,
        )

    def _ended_state(
        self, job_id: str, container: ContainerState, status: ExitStatus | None
    ) -> ContainerState:
        """How the container ended: from its exit file when that tells the exit code,
        the OOM flag and (with artifacts) where /out is; else from Podman's inspect."""
        if status is not None and status.oom is not None:
            out_source = self._out_source(job_id)
            if self.files is None or out_source is not None:
                return replace(
                    container,
                    status="exited",
                    exit_code=status.exit_code,
                    oom_killed=status.oom,
                    out_source=out_source,
                )
        info = self.podman.inspect(container.id)
        if info is None:
            return container
        if info.out_source:
            source = Path(info.out_source)
            if source.name == "_data" and source.parent.name == out_volume_name(job_id):
                self._volumes = source.parent.parent
        return info

    def _out_source(self, job_id: str) -> str | None:
        """The directory of the job's /out: its host directory, or its volume's
        when Podman's volumes' place is known.

        Podman's local volume driver keeps a volume's files in
        ``<volumes>/<name>/_data``; the place is learnt from the first
        inspect, and a directory that is not there sends the finish to Podman.
        """
        if self.files is not None:
            out_dir = self.files.out_dir(job_id)
            if out_dir is not None:
                return str(out_dir)
        if self._volumes is None:
            return None
        source = self._volumes / out_volume_name(job_id) / "_data"
        return str(source) if source.is_dir() else None

    def _removed_behind_our_back(self, job: dict, info: ContainerState) -> bool:
        """Tell a container someone is removing from one that was merely killed.

        ``podman rm -f`` first kills the container (exit 137), then removes it,
        and the ``died`` event can wake us in between. A SIGKILL the agent did
        not send gets a moment to show whether the container is going away:
        if it is, the job is lost, not failed with exit 137.
        """
        if info.exit_code != 137 or info.oom_killed or job["stop_reason"] is not None:
            return False
        deadline = self.clock() + REMOVAL_SETTLE
        while self.clock() < deadline:
            if self.podman.inspect(info.id) is None:
                return True
            self.sleep(REMOVAL_POLL)
        return False

    def _pack(self, job_id: str, info: ContainerState) -> dict[str, Any]:
        """Pack the container's /out into the job's archive; the artifacts columns.

        Read straight from the host directory or the volume's when the agent
        can read all of it (the usual case: the job ran as the container's
        root, which is the agent's user), else through Podman, which reads as
        any user (a file made unreadable, or chowned to a subordinate uid).

        Raises:
            StorageError: no space for the archive (nothing was kept).
        """
        if self.files is None:
            return {}
        if info.out_source:
            record = self.files.pack_dir(job_id, Path(info.out_source))
            if record is not None:
                return _noted(job_id, record)
        try:
            with self.podman.read_out(info.id) as stream:
                record = self.files.pack(job_id, stream)
        except (PodmanUnavailable, StorageError):
            raise  # the pass (or the put-off end) is retried; nothing was recorded
        except Exception as exc:
            log.warning("job %s: could not pack /out: %s", job_id, exc)
            record = {
                "artifacts_state": "error",
                "artifacts_message": f"could not pack /out: {exc}",
            }
        return _noted(job_id, record)

    def _log_tail(self, job: dict[str, Any]) -> str | None:
        """The last lines this attempt wrote (its own log only, never an earlier
        attempt's, and nothing past its max_log_bytes even if the shipper has
        not cut the file yet), both streams; None when its log cannot be read."""
        job_id = job["id"]
        path = self.logs.path(job_id, job["attempt"])
        try:
            cut = cut_of(path, job["spec"].get("max_log_bytes") or 0)
            data = tail_bytes(path, LOG_TAIL_LINES, LOG_TAIL_BYTES, cut)
        except OSError as exc:
            log.warning("no log tail for job %s: %s", job_id, exc)
            return None
        return data.decode("utf-8", errors="replace").removesuffix("\n")


def _nothing() -> None:
    """The cleanup of an end someone else recorded, or of a lost container (none)."""


def _noted(job_id: str, record: dict[str, Any]) -> dict[str, Any]:
    """Log an archive that could not be kept; return the record unchanged."""
    if record["artifacts_state"] in ("too_large", "error"):
        log.warning("job %s: %s", job_id, record["artifacts_message"])
    return record

"""Starting an attempt: record ``starting``, create and start, record ``running``.

``record_starting`` runs on the loop (it is the decision, one transaction);
``create_and_start`` and ``start_created`` run on the worker pool (they wait
on Podman, and on an image pull). A create that fails for the job's own
reason (its image, Podman refusing the container) ends the job ``failed``.
Between steps the job is read again: a cancel or the job's ``timeout``
(counted from when the attempt began ``starting``) stops the start there, so
a job cancelled before its command ran never runs it. Podman answering late,
or not at all, leaves the job ``starting`` with its attempt open: the loop's
next pass looks at what Podman did (no container, created, running, exited)
and carries on from there, so a late reply never makes the job run twice.
Never picks which job starts (``agent.rules.admission`` does).

A job's /out is a host directory (agent/adapters/out_dirs.py) when its
command runs as root of the agent's user namespace, the agent's own uid:
no Podman volume to create and remove. A job running as another user gets a
volume, which Podman hands to that user. The first attempt chooses; the
others take what it took (they share /out): the directory if there is one.
Directories are handed out only while Podman is known to see the agent's
state directory (``ArtifactFiles.out_dirs_enabled``, checked at start); a
create that cannot find one turns them off and is made again with a volume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent.adapters.joblogs import JobLogs
from agent.adapters.podman import ContainerState, Hardening, PullTimeout
from agent.adapters.secrets import Credentials
from agent.config import Config
from agent.protocol.errors import CreateError, ImageError, PodmanUnavailable
from agent.protocol.spec import container_name, parse_size
from agent.protocol.states import Reason, State
from agent.rules.outcome import decide, retried
from agent.runtime.ports import ArtifactFiles, PodmanPort
from agent.runtime.steps import move, remove_out, remove_secrets, retry_later
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: How Podman's error names a bind mount source it cannot find (``statfs PATH: ...``).
NOT_FOUND = "no such file or directory"


class StartStopped(Exception):
    """A start given up between two steps: ``reason`` is ``cancel`` or ``timeout``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Launcher:
    """Creates and starts jobs' containers.

    Args:
        store: the job store.
        podman: the Podman connection of the loop and its workers.
        logs: where each attempt's output is written (conmon writes it).
        config: secrets, container hardening and ``pull_timeout``, read per
            job (a reload applies to the next container).
        files: where a job's workspace snapshot is (None: no workspaces).
        clock: the time, in seconds (what is recorded).
        on_unavailable: called with the message when Podman does not answer.
        monotonic: a clock that never jumps, for the deadlines of a start.
    """

    def __init__(
        self,
        store: Store,
        podman: PodmanPort,
        logs: JobLogs,
        config: Config,
        *,
        files: ArtifactFiles | None,
        clock: Callable[[], float],
        on_unavailable: Callable[[str], None],
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.podman = podman
        self.logs = logs
        self.config = config
        self.files = files
        self.clock = clock
        self.on_unavailable = on_unavailable
        self.monotonic = monotonic
        # job ID -> (attempt, when it began on the monotonic clock), for the
        # starts this process began; a start resumed after a restart has only
        # the wall clock's started_at.
        self._began: dict[str, tuple[int, float]] = {}
        #: Told each container a launch made (job ID, attempt, container ID),
        #: before the job is recorded running: the controller watches its end.
        self.made: Callable[[str, int, str], None] = lambda job_id, attempt, container_id: None

    def record_starting(self, job: dict) -> dict | None:
        """Begin a new attempt of a queued job: ``starting``, in one transaction.

        ``started_at`` is when the attempt began: the job's timeout covers
        its image pull and container create too.

        Returns:
            The job, now ``starting``, or None when someone else moved it first.
        """
        trigger = "retry" if job["attempt"] > 0 else job["trigger"]
        began = self.monotonic()
        moved = move(
            self.store,
            job,
            State.STARTING,
            expect=[State.QUEUED],
            new_attempt=trigger,
            started_at=self.clock(),
        )
        if moved is not None:
            self._began[moved["id"]] = (moved["attempt"], began)
        return moved

    def create_and_start(self, job: dict) -> None:
        """Create and start the container of a ``starting`` job; record ``running``.

        An image or create error ends the job ``failed`` (reason ``image`` or
        ``create``; a pull past ``pull_timeout`` is retried if the job has
        retries left), and so does a log file that cannot be made. A cancel
        or the job's timeout between steps ends it ``cancelled`` or
        ``failed/timeout``, its container removed. Podman not answering (or
        too late to tell what it did) leaves it ``starting`` for the next pass.
        """
        deadline = self._deadline(job)
        try:
            self._checkpoint(job, deadline)
            log_path = self.logs.prepare(job["id"], job["attempt"])
            out_dir = self._out_dir(job)
            try:
                container_id = self._run(job, str(log_path), deadline, out_dir)
            except CreateError as exc:
                if out_dir is None or not self._unseen(job["id"], out_dir, exc):
                    raise
                container_id = self._run(job, str(log_path), deadline, None)
        except StartStopped as stop:
            self._stop(job, stop.reason)
            return
        except OSError as exc:
            self._fail(job, CreateError(f"cannot make the job's log file or /out directory: {exc}"))
            return
        except PodmanUnavailable as exc:
            # What Podman did is unknown: the next pass looks (and the job's
            # `starting` attempt is carried on, never begun again).
            log.warning("job %s: %s; looking again on the next pass", job["id"], exc)
            self.on_unavailable(str(exc))
            return
        except (ImageError, CreateError) as exc:
            self._fail(job, exc)
            return
        self.made(job["id"], job["attempt"], container_id)
        self._mark_running(job, container_id)

    def start_created(self, job: dict, container: ContainerState) -> None:
        """Start a container created before a create's reply came, or before
        the agent went down.

        Starting it (not re-creating it) keeps the attempt exactly once even if
        the old start request is still being served. A cancel or timeout that
        came first removes it instead.
        """
        try:
            self._checkpoint(job, self._deadline(job))
            self.podman.start(container.id)
        except StartStopped as stop:
            self._stop(job, stop.reason)
            return
        except CreateError as exc:
            self.podman.remove(container.id)
            self._fail(job, exc)
            return
        if job["state"] == State.STARTING:
            self._mark_running(job, container.id)

    def _run(self, job: dict, log_path: str, deadline: float | None, out_dir: str | None) -> str:
        """``podman.run`` of the job's attempt, with /out at ``out_dir`` (None: its volume)."""
        return self.podman.run(
            job["id"],
            job["attempt"],
            job["spec"],
            log_path,
            on_pull=lambda image: self.store.note(job["id"], "pulling", {"image": image}),
            workspace=self._workspace(job["id"]),
            secrets=Credentials(self.config).resolve(job["spec"].get("secrets") or [], job["id"]),
            hardening=hardening(self.config),
            checkpoint=lambda: self._checkpoint(job, deadline),
            pull_timeout=self.config.pull_timeout,
            out_dir=out_dir,
        )

    def _unseen(self, job_id: str, out_dir: str, error: CreateError) -> bool:
        """Whether a refused create says Podman cannot find the job's /out directory;
        if so, hand out no more directories and take this one back for a volume.

        The start's check (agent/adapters/podman/peer_view.py) makes this rare:
        a view that changed since, or one the check could not tell apart. The
        create failed, so nothing of the attempt is left in Podman (run()
        removed its secrets) and it is simply made again with a volume; the
        directory must go first, as its existence is what says a job's /out
        is there (finish.py, steps.py).

        Returns:
            True when the create may be made again with a volume.
        """
        unseen = f"statfs {out_dir}" in error.message and NOT_FOUND in error.message
        if not unseen or self.files is None:
            return False
        reason = f"Podman could not find a job's /out directory: {error.message}"
        if self.files.use_out_dirs(False, reason):
            log.warning("%s; jobs get /out volumes from now on", reason)
        return self.files.remove_out_dir(job_id)

    def _out_dir(self, job: dict) -> str | None:
        """The host directory to mount at the job's /out, made if new; None: its volume.

        A later attempt (or a start resumed after a restart) takes what the
        first took: the directory when it exists, else the volume. Only the
        first asks Podman whose the process is (cached per image): root, or
        an image not pulled yet (``:U`` makes the directory fit any user),
        gets the directory.

        Raises:
            OSError: the directory cannot be made.
            PodmanUnavailable: Podman did not answer the image inspect.
        """
        if self.files is None:
            return None
        job_id = job["id"]
        existing = self.files.out_dir(job_id)
        if existing is not None:
            return str(existing)
        if job["attempt"] > 1 or not self.files.out_dirs_enabled():
            return None
        if self.podman.runs_as_root(job["spec"]) is False:
            return None
        return str(self.files.make_out_dir(job_id))

    def _deadline(self, job: dict) -> float | None:
        """When (monotonic) the job's timeout ends its start, or None."""
        timeout = job["spec"].get("timeout")
        if not timeout:
            return None
        attempt, began = self._began.get(job["id"], (None, 0.0))
        if attempt == job["attempt"]:
            return began + timeout
        # Resumed after a restart: only the wall clock knows when it began.
        started = job["started_at"] or self.clock()
        return self.monotonic() + started + timeout - self.clock()

    def _checkpoint(self, job: dict, deadline: float | None) -> None:
        """Raise StartStopped when the job was cancelled or its time is up."""
        if self.store.get(job["id"])["cancel_requested"]:
            raise StartStopped("cancel")
        if deadline is not None and self.monotonic() >= deadline:
            raise StartStopped("timeout")

    def _stop(self, job: dict, stop_reason: str) -> None:
        """End a start stopped between steps: remove what it made, record the end."""
        log.info("job %s: start stopped (%s)", job["id"], stop_reason)
        self.podman.remove(container_name(job["id"]))
        remove_secrets(self.podman, job)
        outcome = decide(
            stop_reason=stop_reason,
            cancel_requested=stop_reason == "cancel",
            retries_left=job["retries_left"],
        )
        message = (
            "cancelled before its command ran"
            if outcome.state == State.CANCELLED
            else f"timed out after {job['spec']['timeout']:g}s while starting (image pull, create)"
        )
        self._end(
            job, outcome.state, outcome.reason, message, note=outcome.note, stop_reason=stop_reason
        )

    def _fail(self, job: dict, exc: ImageError | CreateError) -> None:
        """End a job whose container could not be made (reason ``image`` or
        ``create``); retried as ``retry_on`` says (without it: only a pull that
        took too long), if retries are left."""
        reason = Reason.IMAGE if isinstance(exc, ImageError) else Reason.CREATE
        log.warning("job %s could not start: %s", job["id"], exc.message)
        retry, note = retried(
            job["spec"].get("retry_on"),
            reason,
            None,
            job["retries_left"],
            pull_timeout=isinstance(exc, PullTimeout),
        )
        if retry:
            self._began.pop(job["id"], None)
            retry_later(
                self.store,
                job,
                config=self.config,
                now=self.clock(),
                expect=[State.STARTING],
                reason=reason,
                note=note,
                attempt_fields={"ended_at": self.clock(), "reason": reason, "retry": note},
                log_tail=exc.message,
            )
            return
        self._end(job, State.FAILED, reason, exc.message, note=note)

    def _end(
        self,
        job: dict,
        state: State,
        reason: Reason | None,
        message: str,
        note: str | None = None,
        **fields: str,
    ) -> None:
        """Record the end of a job that never ran, and remove its /out."""
        self._began.pop(job["id"], None)
        move(
            self.store,
            job,
            state,
            expect=[State.STARTING],
            detail={"reason": reason, "message": message},
            attempt_fields={"ended_at": self.clock(), "reason": reason, "retry": note},
            reason=reason,
            log_tail=message,
            **fields,
        )
        remove_out(self.podman, self.files, job["id"])

    def _mark_running(self, job: dict, container_id: str) -> None:
        self._began.pop(job["id"], None)
        move(
            self.store,
            job,
            State.RUNNING,
            expect=[State.STARTING],
            started_at=job["started_at"] or self.clock(),
            attempt_fields={"container_id": container_id},
        )

    def _workspace(self, job_id: str) -> str | None:
        path = self.files.workspace_dir(job_id) if self.files else None
        return str(path) if path else None


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
        secret_files=config.secret_delivery == "file",
    )

"""Starting an attempt: record ``starting``, create and start, record ``running``.

``record_starting`` runs on the loop (it is the decision, one transaction);
``create_and_start`` and ``start_created`` run on the worker pool (they wait
on Podman, and on an image pull). A create that fails for the job's own
reason (its image, Podman refusing the container) ends the job ``failed``;
Podman not answering puts it back in the queue. Never picks which job starts
(``agent.rules.admission`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.adapters.joblogs import JobLogs
from agent.adapters.podman import ContainerState, Hardening
from agent.adapters.secrets import Credentials
from agent.config import Config
from agent.protocol.errors import CreateError, ImageError, PodmanUnavailable
from agent.protocol.spec import parse_size
from agent.protocol.states import Reason, State
from agent.runtime.ports import ArtifactFiles, PodmanPort
from agent.runtime.steps import move, remove_secrets
from agent.storage.store import Store

log = logging.getLogger(__name__)


class Launcher:
    """Creates and starts jobs' containers.

    Args:
        store: the job store.
        podman: the Podman connection of the loop and its workers.
        logs: where each attempt's output is written (conmon writes it).
        config: secrets and container hardening, read per job (a reload
            applies to the next container).
        files: where a job's workspace snapshot is (None: no workspaces).
        clock: the time, in seconds.
        on_unavailable: called with the message when Podman does not answer.
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
    ):
        self.store = store
        self.podman = podman
        self.logs = logs
        self.config = config
        self.files = files
        self.clock = clock
        self.on_unavailable = on_unavailable

    def record_starting(self, job: dict) -> dict | None:
        """Begin a new attempt of a queued job: ``starting``, in one transaction.

        Returns:
            The job, now ``starting``, or None when someone else moved it first.
        """
        trigger = "retry" if job["attempt"] > 0 else job["trigger"]
        return move(self.store, job, State.STARTING, expect=[State.QUEUED], new_attempt=trigger)

    def create_and_start(self, job: dict) -> None:
        """Create and start the container of a ``starting`` job; record ``running``.

        An image or create error ends the job ``failed`` (reason ``image`` or
        ``create``), and so does a log file that cannot be made; Podman not
        answering puts it back to ``queued``.
        """
        try:
            log_path = self.logs.prepare(job["id"], job["attempt"])
        except OSError as exc:
            self._fail(job, CreateError(f"cannot make the job's log file: {exc}"))
            return
        try:
            container_id = self.podman.run(
                job["id"],
                job["attempt"],
                job["spec"],
                str(log_path),
                on_pull=lambda image: self.store.note(job["id"], "pulling", {"image": image}),
                workspace=self._workspace(job["id"]),
                secrets=Credentials(self.config).resolve(
                    job["spec"].get("secrets") or [], job["id"]
                ),
                hardening=hardening(self.config),
            )
        except PodmanUnavailable as exc:
            move(
                self.store, job, State.QUEUED, expect=[State.STARTING], detail={"reason": "podman"}
            )
            self.on_unavailable(str(exc))
            return
        except (ImageError, CreateError) as exc:
            self._fail(job, exc)
            return
        self._mark_running(job, container_id)

    def _fail(self, job: dict, exc: ImageError | CreateError) -> None:
        """End a job whose container could not be made (reason ``image`` or ``create``)."""
        reason = Reason.IMAGE if isinstance(exc, ImageError) else Reason.CREATE
        log.warning("job %s could not start: %s", job["id"], exc.message)
        move(
            self.store,
            job,
            State.FAILED,
            expect=[State.STARTING],
            detail={"reason": reason, "message": exc.message},
            attempt_fields={"ended_at": self.clock(), "reason": reason},
            reason=reason,
            log_tail=exc.message,
        )
        self.podman.remove_out_volume(job["id"])

    def start_created(self, job: dict, container: ContainerState) -> None:
        """Start a container created before the agent went down.

        Starting it (not re-creating it) keeps the attempt exactly once even if
        the old start request is still being served.
        """
        self.podman.start(container.id)
        # Created before the agent went down: its secrets were not removed yet.
        remove_secrets(self.podman, job)
        if job["state"] == State.STARTING:
            self._mark_running(job, container.id)

    def _mark_running(self, job: dict, container_id: str) -> None:
        now = self.clock()
        move(
            self.store,
            job,
            State.RUNNING,
            expect=[State.STARTING],
            started_at=now,
            attempt_fields={"container_id": container_id, "started_at": now},
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
    )

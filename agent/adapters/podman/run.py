"""One attempt of a job as a container: the create request, and create, pull, start in order.

``Hardening`` is how every job's container is confined (from the agent's
configuration); ``JobContainers.run`` turns a normalised spec into a labelled
``choo-<ID>`` container with its /out (a host directory it is given, else the
job's volume), workspace mount and secrets,
pulling the image as the spec's pull policy allows. Every step is done once
in effect even when Podman answers late: a create whose reply was lost is
looked up by name and adopted if it is this attempt's (a container of an
earlier attempt is removed), a start is repeated only while the container is
still ``created``. Whether and when to run is the controller's call.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podman import api as podman_api

from agent.adapters.podman.caches import Caches
from agent.adapters.podman.containers import Containers, ContainerState
from agent.adapters.podman.errors import done_once, mapped
from agent.adapters.podman.image_users import ImageUsers
from agent.adapters.podman.images import Images
from agent.adapters.podman.names import (
    LABEL_AGENT,
    LABEL_ATTEMPT,
    LABEL_JOB,
    OUT_MOUNT,
    WORKSPACE_MOUNT,
    out_volume_name,
)
from agent.adapters.podman.secrets import Secrets
from agent.config import DEFAULT_CAPS
from agent.protocol.errors import CreateError, ImageError
from agent.protocol.spec import DEFAULT_STOP_TIMEOUT, container_name

log = logging.getLogger(__name__)

#: Where Podman mounts a file secret (its ``target`` is relative to it).
SECRETS_DIR = "/run/secrets"
#: How a host directory is mounted at /out: as Podman mounts a named volume
#: (``nosuid,nodev``, executables allowed), handed to the container's user
#: (``U``: a no-op for root, the agent's own uid; right whatever user an
#: image's stale cached ``USER`` hid). No SELinux relabelling: the agent's own
#: paths need none rootless (and the workspace mount has none either).
OUT_DIR_OPTIONS = ("U", "nosuid", "nodev")


@dataclass(frozen=True)
class Hardening:
    """How every job's container is confined; from the agent's configuration.

    ``pids`` and ``memory`` apply to jobs whose spec sets no limit (0: none).
    ``secret_files``: secrets reach the container as files under
    ``/run/secrets`` (``NAME_FILE`` in its environment) rather than as
    environment variables, whose values Podman before 5.3 keeps in the
    container's stored config and shows in ``podman inspect``.
    """

    caps: tuple[str, ...] = DEFAULT_CAPS
    no_new_privileges: bool = True
    pids: int = 0
    memory: int = 0
    read_only: bool = False
    secret_files: bool = False


class JobContainers(Containers, Caches, Secrets, Images, ImageUsers):
    """``Podman.run``: the container of one attempt of a job."""

    def run(
        self,
        job_id: str,
        attempt: int,
        spec: dict[str, Any],
        log_path: str,
        on_pull: Callable[[str], None] = lambda image: None,
        workspace: str | None = None,
        secrets: dict[str, bytes] | None = None,
        hardening: Hardening | None = None,
        *,
        checkpoint: Callable[[], None] = lambda: None,
        pull_timeout: float = 600.0,
        out_dir: str | None = None,
    ) -> str:
        """Create and start the container of one attempt of a job.

        Args:
            job_id: the job's ID (names and labels the container).
            attempt: the attempt number (a label).
            spec: the normalised job spec.
            log_path: the attempt's log (its directory must exist): conmon
                writes the container's output there, in Podman's k8s-file
                format, byte for byte (agent.adapters.joblogs reads it back).
            on_pull: called with the image reference before a pull begins.
            workspace: host directory (the job's snapshot) to mount at /workspace.
            secrets: environment variables for the container only: passed as
                Podman secrets (``type=env``, or files with ``secret_files``),
                kept until the job's end removes them, so they are in no create request,
                log or ``inspect`` of a created container, and removed again
                as soon as the container has started (or failed to).
            hardening: capabilities, no-new-privileges, default limits.
            checkpoint: called between steps (before and after a pull, and
                during it; after the create, before the start); what it raises
                stops the start there and is raised from here (the container,
                if made, is left for the caller to remove).
            pull_timeout: the most seconds one pull may take.
            out_dir: host directory to mount at /out (made by the caller;
                ``runs_as_root`` tells when one serves). None: the job's
                named volume, created here if missing.

        Returns:
            The container ID.

        Raises:
            ImageError: the image is missing and may not (or could not) be pulled.
            CreateError: Podman refused the container.
            PodmanUnavailable: Podman did not answer (``PodmanLate``: it was
                too slow to tell what it did; the container may exist).
        """
        hardening = hardening or Hardening()
        kwargs = self._create_kwargs(job_id, attempt, spec, log_path, workspace, hardening, out_dir)
        secret_names = self.create_secrets(job_id, attempt, secrets or {})
        if secret_names and hardening.secret_files:
            kwargs["secrets"] = [
                {"source": name, "target": variable} for variable, name in secret_names.items()
            ]
            kwargs["environment"] = {
                **kwargs["environment"],
                **{f"{variable}_FILE": f"{SECRETS_DIR}/{variable}" for variable in secret_names},
            }
        elif secret_names:
            kwargs["secret_env"] = secret_names
        try:
            if out_dir is None:
                self.create_out_volume(job_id)
            kwargs["volumes"].update(self.cache_mounts(spec))
            checkpoint()

            def pull() -> None:
                self.pull(spec["image"], on_pull, timeout=pull_timeout, checkpoint=checkpoint)
                checkpoint()

            if spec["pull"] == "always":
                pull()
            container = self._create(job_id, attempt, spec, kwargs, pull)
            checkpoint()
            container_id = self._start(container)
        except BaseException:
            for secret in secret_names.values():
                self.remove_secret(secret)
            raise
        # The secrets stay while the container does: Podman reads them again
        # for every ``podman exec``. The end of the job removes them.
        return container_id

    def _create(
        self,
        job_id: str,
        attempt: int,
        spec: dict[str, Any],
        kwargs: dict[str, Any],
        pull: Callable[[], None],
    ) -> ContainerState:
        """Create the attempt's container (pulling a missing image if allowed)."""
        try:
            return self._create_once(job_id, attempt, kwargs)
        except CreateError:
            # Trying the create first saves a look-up on every start of a job
            # whose image is present, which is nearly all of them. (Podman 4.3
            # answers a missing image with a 500, so ask rather than parse.)
            if self.image_exists(spec["image"]):
                raise
            if spec["pull"] == "never":
                raise ImageError(
                    f"image {spec['image']} is not present and the pull policy is 'never'; "
                    "pull or build it first (podman pull/podman build as the agent's user)"
                ) from None
            pull()
            return self._create_once(job_id, attempt, kwargs)

    def _create_once(self, job_id: str, attempt: int, kwargs: dict[str, Any]) -> ContainerState:
        """Create the container of this attempt, or adopt the one an earlier
        create of it made (its reply late or lost: Podman answers "name in
        use" to the next). A container of another attempt by that name (its
        removal failed) is removed first: it must never pass for this one.
        """
        name = kwargs["name"]

        def create() -> ContainerState | None:
            try:
                with mapped(f"create container for job {job_id}", CreateError):
                    container_id = self._post_create(kwargs)
            except CreateError as exc:
                if "in use" not in exc.message:
                    raise
                return None
            return ContainerState(
                id=container_id, name=name, job_id=job_id, attempt=attempt, status="created"
            )

        def made() -> ContainerState | None:
            found = self.inspect(name)
            if found is None or (found.job_id == job_id and found.attempt == attempt):
                return found
            log.warning(
                "removing container %s of attempt %s; job %s is at attempt %d",
                name,
                found.attempt,
                job_id,
                attempt,
            )
            self.remove(found.id)
            return None

        return done_once(create, made, f"create container {name}")

    def _post_create(self, kwargs: dict[str, Any]) -> str:
        """POST the create with podman-py's own rendering of ``kwargs``; returns the ID.

        ``containers.create`` would inspect the new container too: a round
        trip per job for what the caller already knows (it is ``created``).
        """
        # A copy: podman-py edits what it is given (a volume's mode goes into
        # its options), so a second try would differ.
        payload = self.client.containers._render_payload({"command": None, **copy.deepcopy(kwargs)})
        response = self.client.api.post(
            "/containers/create",
            headers={"content-type": "application/json"},
            data=podman_api.prepare_body(payload),
        )
        response.raise_for_status()
        return response.json()["Id"]

    def _start(self, container: ContainerState) -> str:
        """Start a container this attempt made (one adopted may be running or
        have run already); one Podman refuses to start is removed."""
        if container.running or container.exited:
            return container.id
        try:
            self.start(container.id)
        except CreateError:
            self.remove(container.id)
            raise
        return container.id

    def _create_kwargs(
        self,
        job_id: str,
        attempt: int,
        spec: dict[str, Any],
        log_path: str,
        workspace: str | None,
        hardening: Hardening,
        out_dir: str | None,
    ) -> dict[str, Any]:
        """podman-py's ``containers.create`` arguments for one attempt of a job."""
        name = container_name(job_id)
        resources = spec.get("resources") or {}
        kwargs: dict[str, Any] = {
            "image": spec["image"],
            "name": name,
            "labels": {
                **spec.get("labels", {}),
                LABEL_AGENT: self.agent_id,
                LABEL_JOB: job_id,
                LABEL_ATTEMPT: str(attempt),
            },
            "environment": spec.get("env") or {},
            # The file, not the journal: conmon writes it without slowing the
            # job, it survives the container, and it keeps any bytes exactly.
            "log_config": {"Type": "k8s-file", "Config": {"path": log_path}},
            "ulimits": [
                {"Name": key, "Soft": soft, "Hard": hard}
                for key, (soft, hard) in self.ulimits.items()
            ],
            "cap_drop": ["ALL"],
            "cap_add": list(hardening.caps),
            "no_new_privileges": hardening.no_new_privileges,
            "read_only": hardening.read_only,
            "init": self.init,
            "stop_timeout": int(spec.get("stop_timeout") or DEFAULT_STOP_TIMEOUT),
        }
        if spec.get("command"):
            kwargs["command"] = spec["command"]
        if self.runtime:
            kwargs["runtime"] = self.runtime
        if spec.get("network", "none") == "none":
            kwargs["network_mode"] = "none"
        if spec.get("workdir"):
            kwargs["working_dir"] = spec["workdir"]
        if spec.get("user"):
            kwargs["user"] = spec["user"]
        memory = resources.get("memory") or hardening.memory
        if memory:
            kwargs["mem_limit"] = memory
            kwargs["memswap_limit"] = memory
        if resources.get("cpus"):
            kwargs["nano_cpus"] = int(resources["cpus"] * 1e9)
        pids = resources.get("pids") or hardening.pids
        if pids:
            kwargs["pids_limit"] = pids
        if out_dir is not None:
            out = {"bind": OUT_MOUNT, "mode": "rw", "extended_mode": list(OUT_DIR_OPTIONS)}
            kwargs["volumes"] = {out_dir: out}
        else:
            # The job's named volume (see create_out_volume), which Podman
            # hands to the container's user when first mounted; with a
            # `user`, :U hands it to that user at every attempt. Podman then
            # (not the agent) reads its files when packing and deletes them
            # with the volume.
            out_options = ["U"] if spec.get("user") else []
            kwargs["volumes"] = {
                out_volume_name(job_id): {
                    "bind": OUT_MOUNT,
                    "mode": "rw",
                    "extended_mode": out_options,
                }
            }
        if workspace:
            kwargs["mounts"] = [
                {"type": "bind", "source": workspace, "target": WORKSPACE_MOUNT, "read_only": False}
            ]
            kwargs.setdefault("working_dir", WORKSPACE_MOUNT)
        return kwargs

"""The Podman adapter: the only module that imports podman-py.

It turns a job into a labelled ``choo-<ID>`` container and reports what Podman
says about containers, mapping podman-py's exceptions to ours. It never
decides anything: what to create, stop or remove is the controller's call.
Every call has a timeout (podman-py has none by default, and a hung Podman
must not freeze the agent).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import podman
import requests
from podman import errors as perr

from agent.config import DEFAULT_CAPS
from agent.protocol.errors import ChooError, CreateError, ImageError, PodmanUnavailable
from agent.protocol.spec import container_name

log = logging.getLogger(__name__)

LABEL_AGENT = "io.choo.agent"
LABEL_JOB = "io.choo.job"
LABEL_ATTEMPT = "io.choo.attempt"
MIN_API_VERSION = (4, 3)
#: A pull may be silent for a long time between progress lines (large layers).
PULL_READ_TIMEOUT = 600.0
#: Where a job sees its workspace snapshot and its output directory.
WORKSPACE_MOUNT = "/workspace"
OUT_MOUNT = "/out"
#: Podman secrets holding a job's secret values are named with this prefix,
#: the job ID and the attempt; they live only while the container is created
#: and started (Podman copies the values into the container at start).
SECRET_PREFIX = "choo-"


@dataclass(frozen=True)
class Hardening:
    """How every job's container is confined; from the agent's configuration.

    ``pids`` and ``memory`` apply to jobs whose spec sets no limit (0: none).
    """

    caps: tuple[str, ...] = DEFAULT_CAPS
    no_new_privileges: bool = True
    pids: int = 0
    memory: int = 0
    read_only: bool = False


@dataclass(frozen=True)
class ContainerState:
    """What Podman says about one of our containers."""

    id: str
    name: str
    job_id: str | None
    attempt: int | None
    status: str  # created, running, exited, stopped, ...
    exit_code: int | None = None
    oom_killed: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    created_at: float | None = None
    #: Where the container's /out lives on this host (from inspect only).
    out_source: str | None = None

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "stopping")

    @property
    def exited(self) -> bool:
        return self.status in ("exited", "stopped")


class Podman:
    """A thin, timeout-bounded client for one rootless Podman API service."""

    def __init__(
        self,
        url: str,
        *,
        agent_id: str,
        timeout: float,
        runtime: str = "",
        log_driver: str = "journald",
        init: bool = False,
        ulimits: dict[str, list[int]] | None = None,
    ):
        self.url = url
        self.agent_id = agent_id
        self.ours = f"{LABEL_AGENT}={agent_id}"
        self.timeout = timeout
        self.runtime = runtime
        self.log_driver = log_driver
        self.init = init
        self.ulimits = ulimits or {}
        self.client = podman.PodmanClient(base_url=url, timeout=timeout)
        self._limits: dict[str, Any] | None = None

    # -- service -------------------------------------------------------------

    def version(self) -> str:
        """Return the API version, refusing a Podman older than we test against.

        Raises:
            PodmanUnavailable: Podman does not answer or is too old.
        """
        with _mapped("ask Podman for its version"):
            info = self.client.version()
        # "Version" is Podman's own; "ApiVersion" is the Docker-compatible API's.
        version = str(info.get("Version") or "0")
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parts < MIN_API_VERSION:
            raise PodmanUnavailable(
                f"Podman API {version} at {self.url} is older than the minimum "
                f"{'.'.join(map(str, MIN_API_VERSION))}; upgrade podman"
            )
        return version

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (perr.PodmanError, requests.RequestException, OSError):
            return False

    # -- containers ----------------------------------------------------------

    def run(
        self,
        job_id: str,
        attempt: int,
        spec: dict[str, Any],
        on_pull: Callable[[str], None] = lambda image: None,
        workspace: str | None = None,
        secrets: dict[str, bytes] | None = None,
        hardening: Hardening | None = None,
    ) -> str:
        """Create and start the container of one attempt of a job.

        Args:
            job_id: the job's ID (names and labels the container).
            attempt: the attempt number (a label).
            spec: the normalised job spec.
            on_pull: called with the image reference before a pull begins.
            workspace: host directory (the job's snapshot) to mount at /workspace.
            secrets: environment variables for the container only: passed as
                Podman secrets (``type=env``), so they are in no create request,
                log or ``inspect`` of a created container, and removed again
                as soon as the container has started (or failed to).
            hardening: capabilities, no-new-privileges, default limits.

        Returns:
            The container ID.

        Raises:
            ImageError: the image is missing and may not (or could not) be pulled.
            CreateError: Podman refused the container.
            PodmanUnavailable: Podman did not answer.
        """
        kwargs = self._create_kwargs(job_id, attempt, spec, workspace, hardening or Hardening())
        secret_names = self._create_secrets(job_id, attempt, secrets or {})
        if secret_names:
            kwargs["secret_env"] = secret_names
        try:
            return self._create_and_start(job_id, spec, kwargs, on_pull)
        finally:
            for secret in secret_names.values():
                self._remove_secret(secret)

    def _create_and_start(
        self,
        job_id: str,
        spec: dict[str, Any],
        kwargs: dict[str, Any],
        on_pull: Callable[[str], None],
    ) -> str:
        self.create_out_volume(job_id)
        if spec["pull"] == "always":
            self._pull(spec["image"], on_pull)
        try:
            container = self._create(job_id, kwargs)
        except CreateError:
            # Trying the create first saves a look-up on every start of a job
            # whose image is present, which is nearly all of them. (Podman 4.3
            # answers a missing image with a 500, so ask rather than parse.)
            with _mapped(f"look up image {spec['image']}"):
                if self.client.images.exists(spec["image"]):
                    raise
            if spec["pull"] == "never":
                raise ImageError(
                    f"image {spec['image']} is not present and the pull policy is 'never'; "
                    "pull or build it first (podman pull/podman build as the agent's user)"
                ) from None
            self._pull(spec["image"], on_pull)
            container = self._create(job_id, kwargs)
        try:
            with _mapped(f"start container for job {job_id}", CreateError):
                container.start()
        except ChooError:
            self.remove(container.id)
            raise
        return container.id

    def _create_kwargs(
        self,
        job_id: str,
        attempt: int,
        spec: dict[str, Any],
        workspace: str | None = None,
        hardening: Hardening = Hardening(),  # noqa: B008 (frozen, so shared safely)
    ) -> dict[str, Any]:
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
            "log_config": {"Type": self.log_driver, "Config": {"options": {"tag": name}}},
            "ulimits": [
                {"Name": key, "Soft": soft, "Hard": hard}
                for key, (soft, hard) in self.ulimits.items()
            ],
            "cap_drop": ["ALL"],
            "cap_add": list(hardening.caps),
            "no_new_privileges": hardening.no_new_privileges,
            "read_only": hardening.read_only,
            "init": self.init,
            "stop_timeout": int(spec.get("stop_timeout") or 10),
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
        # /out is a named volume of the job's (see create_out_volume); with a
        # `user`, :U hands it to that user, whose files Podman (not the agent)
        # then reads when packing and deletes with the volume. No SELinux
        # relabelling options: the agent's own paths need none rootless.
        out_options = ["U"] if spec.get("user") else []
        kwargs["volumes"] = {
            out_volume_name(job_id): {"bind": OUT_MOUNT, "mode": "rw", "extended_mode": out_options}
        }
        if workspace:
            kwargs["mounts"] = [
                {"type": "bind", "source": workspace, "target": WORKSPACE_MOUNT, "read_only": False}
            ]
            kwargs.setdefault("working_dir", WORKSPACE_MOUNT)
        return kwargs

    # -- a job's /out volume -------------------------------------------------

    def create_out_volume(self, job_id: str) -> None:
        """Create the job's /out volume, labelled as ours; one that exists is kept
        (a job's attempts share it)."""
        labels = {LABEL_AGENT: self.agent_id, LABEL_JOB: job_id}
        try:
            with _mapped(f"create the /out volume of job {job_id}", CreateError):
                self.client.volumes.create(out_volume_name(job_id), labels=labels)
        except CreateError as exc:
            if "already exists" not in exc.message:
                raise

    def remove_out_volume(self, job_id: str) -> None:
        """Remove the job's /out volume; one that is gone or still in use is left."""
        try:
            with _mapped(f"remove the /out volume of job {job_id}"):
                self.client.volumes.remove(out_volume_name(job_id), force=False)
        except (_NotFound, _Conflict):
            pass

    def list_out_volumes(self) -> list[tuple[str, str]]:
        """(volume name, job ID) of every volume labelled as this agent's."""
        with _mapped("list volumes"):
            response = self.client.api.get(
                "/volumes/json", params={"filters": json.dumps({"label": [self.ours]})}
            )
            response.raise_for_status()
        out = []
        for item in response.json() or []:
            labels = item.get("Labels") or {}
            if labels.get(LABEL_JOB):
                out.append((item["Name"], labels[LABEL_JOB]))
        return out

    def read_out(self, name_or_id: str) -> _Archive:
        """A tar stream of a (stopped) container's /out; use as a context manager.

        Raises:
            PodmanUnavailable: Podman did not answer or could not read it.
        """
        with _mapped(f"copy /out out of container {name_or_id}"):
            response = self.client.api.get(
                f"/containers/{name_or_id}/archive", params={"path": OUT_MOUNT}, stream=True
            )
            response.raise_for_status()
        return _Archive(response)

    # -- secrets -------------------------------------------------------------

    def _create_secrets(
        self, job_id: str, attempt: int, values: dict[str, bytes]
    ) -> dict[str, str]:
        """Store each value as a Podman secret; return {variable: secret name}.

        Never logs or reports a value: error messages name the variable only.
        """
        created: dict[str, str] = {}
        try:
            for variable, value in values.items():
                name = f"{SECRET_PREFIX}{job_id}-{attempt}-{variable}"
                self._remove_secret(name)  # left by an attempt the agent did not see end
                with _mapped(f"store secret {variable} of job {job_id}", CreateError):
                    response = self.client.api.post(
                        "/secrets/create", params={"name": name}, data=value
                    )
                    response.raise_for_status()
                created[variable] = name
        except ChooError:
            for name in created.values():
                self._remove_secret(name)
            raise
        return created

    def _remove_secret(self, name: str) -> None:
        try:
            with _mapped(f"remove secret {name}"):
                self.client.api.delete(f"/secrets/{name}").raise_for_status()
        except _NotFound:
            pass
        except ChooError as exc:
            log.warning("could not remove Podman secret %s: %s", name, exc.message)

    def remove_secrets(self, job_id: str) -> None:
        """Remove every Podman secret of a job (all attempts); none is fine."""
        prefix = f"{SECRET_PREFIX}{job_id}-"
        with _mapped("list secrets"):
            response = self.client.api.get("/secrets/json")
            response.raise_for_status()
        for item in response.json() or []:
            name = (item.get("Spec") or {}).get("Name") or ""
            if name.startswith(prefix):
                self._remove_secret(name)

    # -- what the host enforces ------------------------------------------------

    def resource_limits(self) -> dict[str, Any]:
        """Whether Podman enforces memory/cpu/pids limits here, and why not.

        Rootless Podman on cgroup v1 ignores them (it warns and creates the
        container anyway); on cgroup v2 it needs the controllers delegated to
        the user.
        """
        if self._limits is not None:
            return self._limits
        try:
            with _mapped("ask Podman for host information"):
                host = (self.client.info() or {}).get("host") or {}
        except ChooError as exc:
            return {"enforced": None, "reason": f"unknown: {exc.message}"}
        version = host.get("cgroupVersion") or "unknown"
        rootless = bool((host.get("security") or {}).get("rootless"))
        controllers = host.get("cgroupControllers") or []
        if not rootless:
            enforced, why = True, "rootful Podman"
        elif version == "v2":
            missing = [c for c in ("memory", "pids", "cpu") if c not in controllers]
            enforced = not missing
            why = (
                f"cgroup controllers not delegated to the user: {', '.join(missing)}"
                if missing
                else "cgroup v2 with delegated controllers"
            )
        else:
            enforced, why = False, f"rootless Podman on cgroup {version} ignores resource limits"
        self._limits = {
            "enforced": enforced,
            "reason": why,
            "cgroup_version": version,
            "rootless": rootless,
            "controllers": controllers,
        }
        return self._limits

    def _create(self, job_id: str, kwargs: dict[str, Any]):
        with _mapped(f"create container for job {job_id}", CreateError):
            return self.client.containers.create(**kwargs)

    def _pull(self, image: str, on_pull: Callable[[str], None]) -> None:
        """Pull an image, raising ImageError with the registry's message on failure.

        The API answers a failed pull with 200 and an ``error`` line in its
        stream (podman-py's ``images.pull`` then returns an empty Image), so
        the stream is read here.
        """
        log.info("pulling image %s", image)
        on_pull(image)
        error, pulled = None, False
        with _mapped(f"pull image {image}", ImageError):
            response = self.client.api.post(
                "/images/pull",
                params={"reference": image},
                stream=True,
                timeout=(self.timeout, max(self.timeout, PULL_READ_TIMEOUT)),
            )
            response.raise_for_status()
            for line in response.iter_lines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                error = item.get("error") or error
                pulled = pulled or bool(item.get("id") or item.get("images"))
        if error or not pulled:
            raise ImageError(f"could not pull image {image}: {error or 'Podman reported no image'}")

    def inspect(self, name_or_id: str) -> ContainerState | None:
        """Return the container's state, or None when it does not exist."""
        try:
            with _mapped(f"inspect container {name_or_id}"):
                attrs = self.client.containers.get(name_or_id).attrs
        except _NotFound:
            return None
        state = attrs.get("State") or {}
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        return ContainerState(
            id=attrs["Id"],
            name=attrs.get("Name", "").lstrip("/"),
            job_id=labels.get(LABEL_JOB),
            attempt=_int_or_none(labels.get(LABEL_ATTEMPT)),
            status=str(state.get("Status", "unknown")).lower(),
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            started_at=state.get("StartedAt"),
            finished_at=state.get("FinishedAt"),
            out_source=next(
                (
                    m.get("Source")
                    for m in attrs.get("Mounts") or []
                    if m.get("Destination") == OUT_MOUNT
                ),
                None,
            ),
        )

    def list_ours(self) -> list[ContainerState]:
        """Every container (running or not) labelled as this agent's."""
        with _mapped("list containers"):
            response = self.client.api.get(
                "/containers/json",
                params={"all": "true", "filters": json.dumps({"label": [self.ours]})},
            )
            response.raise_for_status()
        out = []
        for item in response.json() or []:
            labels = item.get("Labels") or {}
            names = item.get("Names") or [""]
            out.append(
                ContainerState(
                    id=item["Id"],
                    name=names[0].lstrip("/"),
                    job_id=labels.get(LABEL_JOB),
                    attempt=_int_or_none(labels.get(LABEL_ATTEMPT)),
                    status=str(item.get("State", "unknown")).lower(),
                    exit_code=item.get("ExitCode"),
                    created_at=_timestamp(item.get("Created")),
                )
            )
        return out

    def start(self, name_or_id: str) -> None:
        """Start a created container; one already started is fine.

        Raises:
            CreateError: Podman could not start it.
        """
        with _mapped(f"start container {name_or_id}", CreateError):
            self.client.api.post(f"/containers/{name_or_id}/start").raise_for_status()

    def signal(self, name_or_id: str, sig: str) -> None:
        """Send a signal; a container that is already gone or stopped is fine."""
        try:
            with _mapped(f"signal container {name_or_id}"):
                self.client.api.post(
                    f"/containers/{name_or_id}/kill", params={"signal": sig}
                ).raise_for_status()
        except (_NotFound, _Conflict):
            pass

    def remove(self, name_or_id: str) -> None:
        """Force-remove a container; one that is already gone is fine."""
        try:
            with _mapped(f"remove container {name_or_id}"):
                self.client.containers.remove(name_or_id, force=True)
        except _NotFound:
            pass

    def events(self, read_timeout: float) -> Iterator[dict[str, Any]]:
        """Yield our containers' events as Podman reports them.

        Lines that do not parse are skipped (one bad event must not end the
        stream). Ends, by exception, when the connection breaks.

        Raises:
            PodmanUnavailable: the stream could not be opened or broke.
        """
        params = {
            "stream": "true",
            "filters": json.dumps({"type": ["container"], "label": [self.ours]}),
        }
        with _mapped("follow Podman events"):
            response = self.client.api.get(
                "/events", params=params, stream=True, timeout=(self.timeout, read_timeout)
            )
            response.raise_for_status()
            try:
                for line in response.iter_lines():
                    if not line:
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        log.warning("skipping an unreadable Podman event: %.200r", line)
                        continue
                    if isinstance(event, dict):
                        yield event
            finally:
                response.close()

    def close(self) -> None:
        self.client.close()


def out_volume_name(job_id: str) -> str:
    return f"choo-out-{job_id}"


class _Archive:
    """A streamed tar answer: ``with podman.read_out(id) as stream: ...``."""

    def __init__(self, response):
        self.response = response

    def __enter__(self):
        self.response.raw.decode_content = True
        return self.response.raw

    def __exit__(self, *exc) -> None:
        self.response.close()


class _NotFound(Exception):
    pass


class _Conflict(Exception):
    pass


class _mapped:
    """Translate podman-py/requests failures of one call into choo errors."""

    def __init__(self, what: str, error: type[ChooError] = PodmanUnavailable):
        self.what = what
        self.error = error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, ChooError):
            return False
        if isinstance(exc, perr.NotFound | perr.ImageNotFound) and self.error is PodmanUnavailable:
            raise _NotFound() from exc
        if isinstance(exc, perr.APIError):
            status = getattr(exc, "status_code", None)
            if status is None or isinstance(exc.__context__, requests.ConnectionError):
                raise PodmanUnavailable(f"Podman did not answer when asked to {self.what}: {exc}")
            if status == 404 and self.error is PodmanUnavailable:
                raise _NotFound() from exc
            if status in (304, 409) and self.error is PodmanUnavailable:
                raise _Conflict() from exc
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise self.error(f"Podman could not {self.what}: {explanation}") from exc
        if isinstance(exc, requests.RequestException | OSError | perr.PodmanError):
            raise PodmanUnavailable(f"Podman did not answer when asked to {self.what}: {exc}")
        return False


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a number or an RFC 3339 string (nanoseconds allowed)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", value)
    if not match:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    stamp = datetime.fromisoformat(base + zone).timestamp()
    return stamp + float(fraction or 0)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

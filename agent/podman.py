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

from agent.errors import ChooError, CreateError, ImageError, PodmanUnavailable
from agent.spec import container_name

log = logging.getLogger(__name__)

LABEL_AGENT = "io.choo.agent"
LABEL_JOB = "io.choo.job"
LABEL_ATTEMPT = "io.choo.attempt"
MIN_API_VERSION = (4, 3)
#: A pull may be silent for a long time between progress lines (large layers).
PULL_READ_TIMEOUT = 600.0
#: Capabilities left to a job's container; everything else is dropped.
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP")


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
    ) -> str:
        """Create and start the container of one attempt of a job.

        Args:
            job_id: the job's ID (names and labels the container).
            attempt: the attempt number (a label).
            spec: the normalised job spec.
            on_pull: called with the image reference before a pull begins.

        Returns:
            The container ID.

        Raises:
            ImageError: the image is missing and may not (or could not) be pulled.
            CreateError: Podman refused the container.
            PodmanUnavailable: Podman did not answer.
        """
        kwargs = self._create_kwargs(job_id, attempt, spec)
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

    def _create_kwargs(self, job_id: str, attempt: int, spec: dict[str, Any]) -> dict[str, Any]:
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
            "cap_add": list(DEFAULT_CAPS),
            "no_new_privileges": True,
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
        if resources.get("memory"):
            kwargs["mem_limit"] = resources["memory"]
            kwargs["memswap_limit"] = resources["memory"]
        if resources.get("cpus"):
            kwargs["nano_cpus"] = int(resources["cpus"] * 1e9)
        if resources.get("pids"):
            kwargs["pids_limit"] = resources["pids"]
        return kwargs

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

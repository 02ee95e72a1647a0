"""Our containers as Podman reports them, and the calls that act on one container.

``ContainerState`` is what the controller reads; ``Containers`` inspects,
lists, starts, signals, stops and removes containers and follows their
events. A call that finds its container already in the state asked for
(gone, stopped) returns quietly: the controller is level-triggered and may
ask twice. Making a job's container is run.py's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import Conflict, NotFound, done_once, mapped
from agent.adapters.podman.names import LABEL_ATTEMPT, LABEL_JOB, OUT_MOUNT
from agent.protocol.errors import CreateError

log = logging.getLogger(__name__)


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
    #: Seconds since the epoch (from a listing only).
    created_at: float | None = None
    #: Where the container's /out lives on this host (from inspect only).
    out_source: str | None = None

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "stopping")

    @property
    def exited(self) -> bool:
        return self.status in ("exited", "stopped")


class Containers(Connection):
    """The per-container calls of ``Podman``."""

    def inspect(self, name_or_id: str) -> ContainerState | None:
        """Return the container's state, or None when it does not exist.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        try:
            with mapped(f"inspect container {name_or_id}"):
                attrs = self.client.containers.get(name_or_id).attrs
        except NotFound:
            return None
        return state_of(attrs)

    def list_ours(self) -> list[ContainerState]:
        """Every container (running or not) labelled as this agent's.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped("list containers"):
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
                    created_at=timestamp(item.get("Created")),
                )
            )
        return out

    def start(self, name_or_id: str) -> None:
        """Start a created container; one already started is fine.

        A start whose reply came late or was lost is sent again only if the
        container is still ``created``: one that runs or ran already must not
        run again.

        Raises:
            CreateError: Podman could not start it.
            PodmanUnavailable: Podman did not answer (``PodmanLate``: too slow
                to tell whether it started).
        """

        def start() -> bool:
            with mapped(f"start container {name_or_id}", CreateError):
                self.client.api.post(f"/containers/{name_or_id}/start").raise_for_status()
            return True

        def started() -> bool | None:
            found = self.inspect(name_or_id)
            return True if found is not None and (found.running or found.exited) else None

        done_once(start, started, f"start container {name_or_id}")

    def signal(self, name_or_id: str, sig: str) -> None:
        """Send a signal; a container that is already gone or stopped is fine.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        try:
            with mapped(f"signal container {name_or_id}"):
                self.client.api.post(
                    f"/containers/{name_or_id}/kill", params={"signal": sig}
                ).raise_for_status()
        except (NotFound, Conflict):
            pass

    def stop(self, name_or_id: str, timeout: float) -> None:
        """Stop a container: its stop signal, then SIGKILL after ``timeout`` seconds.

        Returns when it has stopped. One already stopped (Podman answers 304)
        or gone is fine.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        grace = int(timeout)
        try:
            with mapped(f"stop container {name_or_id}"):
                self.client.api.post(
                    f"/containers/{name_or_id}/stop",
                    params={"timeout": grace},
                    # The answer comes when the container has stopped.
                    timeout=(self.timeout, self.timeout + grace),
                ).raise_for_status()
        except (NotFound, Conflict):
            pass

    def remove(self, name_or_id: str) -> None:
        """Force-remove a container; one that is already gone is fine.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        try:
            with mapped(f"remove container {name_or_id}"):
                self.client.containers.remove(name_or_id, force=True)
        except NotFound:
            pass

    def events(self, read_timeout: float) -> Iterator[dict[str, Any]]:
        """Yield our containers' events as Podman reports them.

        Lines that do not parse are skipped (one bad event must not end the
        stream). Ends, by exception, when the connection breaks.

        Args:
            read_timeout: the longest silence before the stream counts as broken.

        Raises:
            PodmanUnavailable: the stream could not be opened or broke.
        """
        params = {
            "stream": "true",
            "filters": json.dumps({"type": ["container"], "label": [self.ours]}),
        }
        with mapped("follow Podman events"):
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


def state_of(attrs: dict[str, Any]) -> ContainerState:
    """A container's state from Podman's inspect answer (``Container.attrs``)."""
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
        out_source=next(
            (
                m.get("Source")
                for m in attrs.get("Mounts") or []
                if m.get("Destination") == OUT_MOUNT
            ),
            None,
        ),
    )


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a number or an RFC 3339 string.

    Podman writes nanoseconds (``2024-01-02T03:04:05.123456789Z``); Python
    3.11's ``fromisoformat`` reads any number of fraction digits and keeps
    microseconds. A string without a zone is UTC. Anything else is None.
    """
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

"""The connection to one rootless Podman API service, and what that Podman is and enforces.

``Connection`` holds the podman-py client and the settings every container
of the agent's is made with; the parts of the adapter (containers.py,
volumes.py, secrets.py, images.py, run.py) build on it. Every call has a
timeout: podman-py has none by default, and a hung Podman must not freeze the
agent. Nothing here decides what to create, stop or remove.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import podman

from agent.adapters.podman.errors import answered, mapped
from agent.adapters.podman.names import LABEL_AGENT
from agent.protocol.errors import ChooError, PodmanUnavailable

log = logging.getLogger(__name__)

#: The oldest Podman the agent is tested against.
MIN_API_VERSION = (4, 3)
#: How long ``resource_limits`` waits for Podman's answer on its way.
LIMITS_WAIT = 1.0


class Connection:
    """A timeout-bounded podman-py client, and whose containers are ours."""

    def __init__(
        self,
        url: str,
        *,
        agent_id: str,
        timeout: float,
        runtime: str = "",
        init: bool = False,
        ulimits: dict[str, list[int]] | None = None,
    ):
        """Prepare a client (Podman is first asked by ``version()``).

        Args:
            url: the API service (``unix:///run/user/UID/podman/podman.sock``).
            agent_id: the store's identity; labels and finds our containers.
            timeout: seconds any one call may take (a pull's reads excepted).
            runtime: the OCI runtime for job containers ("": Podman's default).
            init: run an init process as PID 1 in every job container.
            ulimits: ``{name: [soft, hard]}`` applied to every job container.
        """
        self.url = url
        self.agent_id = agent_id
        #: The label filter matching everything of this agent's.
        self.ours = f"{LABEL_AGENT}={agent_id}"
        self.timeout = timeout
        self.runtime = runtime
        self.init = init
        self.ulimits = ulimits or {}
        self.client = podman.PodmanClient(base_url=url, timeout=timeout)
        self._limits: dict[str, Any] | None = None
        self._limits_error = ""
        self._limits_lock = threading.Lock()
        self._asking: threading.Thread | None = None

    def version(self) -> str:
        """Return the API version, refusing a Podman older than we test against.

        Raises:
            PodmanUnavailable: Podman does not answer (in time, several
                times over: ``PodmanLate``) or is too old.
        """

        def ask() -> str:
            # The ping's header says it: /version runs conmon and the OCI
            # runtime to ask theirs, which takes a second or more.
            with mapped("ask Podman for its version"):
                response = self.client.api.get("/_ping")
                response.raise_for_status()
                return response.headers.get("Libpod-Api-Version") or "0"

        # A slow Podman (busy, or just started) is asked again; a dead one is not.
        version = answered(ask)
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parts < MIN_API_VERSION:
            raise PodmanUnavailable(
                f"Podman API {version} at {self.url} is older than the minimum "
                f"{'.'.join(map(str, MIN_API_VERSION))}; upgrade podman"
            )
        return version

    def ask_resource_limits(self) -> None:
        """Start asking Podman what it enforces, unless an ask is on its way or answered.

        ``GET /info`` takes Podman hundreds of milliseconds, seconds while it
        is busy, so it is asked in a thread of its own: the agent's start
        does not wait for it, and ``agent.info`` waits only a moment.
        """
        with self._limits_lock:
            if self._limits is not None or (self._asking and self._asking.is_alive()):
                return
            self._asking = threading.Thread(
                target=self._learn_limits, name="podman-info", daemon=True
            )
            self._asking.start()

    def resource_limits(self) -> dict[str, Any]:
        """Whether Podman enforces memory/cpu/pids limits here, and why not.

        Rootless Podman on cgroup v1 ignores them (it warns and creates the
        container anyway); on cgroup v2 it needs the controllers delegated to
        the user. The answer is kept once Podman gave it. An ask on its way
        is waited for ``LIMITS_WAIT`` at most; past that, or when Podman
        could not answer, ``enforced`` is None and ``reason`` says why (the
        next call asks again).
        """
        self.ask_resource_limits()
        asking = self._asking
        if self._limits is None and asking is not None:
            asking.join(LIMITS_WAIT)
        if self._limits is not None:
            return self._limits
        if asking is not None and asking.is_alive():
            return {"enforced": None, "reason": "unknown yet: Podman has not answered `info`"}
        return {"enforced": None, "reason": f"unknown: {self._limits_error}"}

    def _learn_limits(self) -> None:
        try:
            with mapped("ask Podman for host information"):
                host = (self.client.info() or {}).get("host") or {}
        except ChooError as exc:
            self._limits_error = exc.message
            return
        except Exception as exc:  # a thread of its own: nobody else would see it
            log.warning("asking Podman for host information failed: %r", exc)
            self._limits_error = f"asking Podman failed: {exc!r}"
            return
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

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

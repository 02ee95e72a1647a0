"""Find the rootless Podman API service, or run one for the agent's lifetime.

An agent started by hand on a machine where nobody enabled ``podman.socket``
still works: if nothing answers on the default socket it starts
``podman system service`` as a child and stops it on exit. This module only
manages that process; it does not speak the API (agent.adapters.podman does).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from agent.protocol.errors import PodmanUnavailable

log = logging.getLogger(__name__)


def default_url() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix://{runtime}/podman/podman.sock"


def answers(url: str, timeout: float = 2.0) -> bool:
    """Tell whether something accepts connections on a ``unix://`` URL."""
    path = url.removeprefix("unix://")
    if not url.startswith("unix://") or not Path(path).exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


class PodmanService:
    """A ``podman system service`` child process owned by the agent."""

    def __init__(self, url: str, runtime: str = ""):
        self.url = url
        self.runtime = runtime
        self.process: subprocess.Popen | None = None

    def start(self, wait: float = 30.0) -> None:
        """Start the service and wait until its socket answers.

        Raises:
            PodmanUnavailable: podman is not installed or the service did not come up.
        """
        podman = shutil.which("podman")
        if podman is None:
            raise PodmanUnavailable(
                "podman is not installed (or not on PATH); install it: apt-get install podman"
            )
        path = Path(self.url.removeprefix("unix://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        argv = [podman]
        if self.runtime:
            argv += ["--runtime", self.runtime]
        argv += ["system", "service", "--time=0", self.url]
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        log.info("no Podman API answers at %s; starting podman system service", self.url)
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own process group: a Ctrl-C meant for the agent must not kill
            # Podman before the agent has shut down in order.
            start_new_session=True,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace").strip()
                raise PodmanUnavailable(f"podman system service exited at once: {err[-500:]}")
            if answers(self.url, timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise PodmanUnavailable(
            f"podman system service did not answer at {self.url} in {wait:.0f}s"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

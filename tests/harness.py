"""Real processes for tests and benchmarks: a Podman API service and choo agents.

Used by tests/conftest.py (fixtures) and tests/bench.py. Everything here runs
the real thing: ``podman system service`` and ``python -m agent`` processes
with their own sockets, state directories and configuration files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.client import Client

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("CHOO_TEST_IMAGE", "localhost/choo-test")


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True, **kwargs)


class PodmanService:
    """A ``podman system service`` of the tests' own, on a private socket."""

    def __init__(self, root: Path):
        self.path = root / "podman.sock"
        self.url = f"unix://{self.path}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["podman", "--runtime", "runc", "system", "service", "--time=0", self.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        until(self.path.exists, 20, "podman system service did not create its socket")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.path.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()


def until(predicate, timeout: float, message: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message)


class AgentProcess:
    """A real choo-agent process with its own state dir, socket and config."""

    def __init__(self, root: Path, podman_url: str, settings: dict):
        self.root = root
        self.socket = root / "agent.sock"
        self.state_dir = root / "state"
        self.config_path = root / "agent.toml"
        self.log_path = root / "agent.log"
        self.podman_url = podman_url
        self.settings = settings
        self.process: subprocess.Popen | None = None
        self.agent_id: str | None = None

    def write_config(self, **settings) -> None:
        self.settings.update(settings)
        values = {
            "socket": str(self.socket),
            "state_dir": str(self.state_dir),
            "podman_url": self.podman_url,
            "log_level": "debug",
            **self.settings,
        }
        lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(
        self, wait: bool = True, env: dict | None = None, wrapper: list[str] | None = None
    ) -> AgentProcess:
        """Start the agent; ``wrapper`` is a command line it runs under (it execs the rest)."""
        self.write_config()
        with open(self.log_path, "a") as log:
            argv = [sys.executable, "-m", "agent", "--config", str(self.config_path)]
            self.process = subprocess.Popen(
                [*(wrapper or []), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **(env or {})},
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited {self.process.returncode}:\n{self.log()}")
            try:
                with self.client() as c:
                    self.agent_id = c.call("agent.info")["agent_id"]
                    return True
            except Exception:
                return False

        until(ready, timeout, f"agent did not become ready:\n{self.log()}", 0.05)

    def client(self, timeout: float | None = 60) -> Client:
        return Client(self.socket, timeout=timeout)

    def call(self, method: str, **params):
        with self.client() as c:
            return c.call(method, **params)

    def chooctl_argv(self) -> list[str]:
        return [str(Path(sys.executable).parent / "chooctl"), "--socket", str(self.socket)]

    def chooctl(self, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.chooctl_argv(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def containers(self) -> list[dict]:
        """Every container (any state) labelled as this agent's."""
        out = podman(
            "--url",
            self.podman_url,
            "ps",
            "-a",
            "--format",
            "json",
            "--filter",
            f"label=io.choo.agent={self.agent_id}",
        ).stdout
        return json.loads(out or "[]")

    def remove_containers(self) -> None:
        for container in self.containers():
            podman("--url", self.podman_url, "rm", "-f", container["Id"], check=False)


def wait_until(predicate, timeout: float = 30, message: str = "condition not met"):
    return until(predicate, timeout, message, 0.05)

"""Real processes for tests and benchmarks: a Podman API service and choo agents.

Used by tests/conftest.py (fixtures) and tests/bench.py. Everything here runs
the real thing: ``podman system service`` and ``python -m agent`` processes
with their own sockets, state directories and configuration files.

It also owns how tests wait, so none sleeps to synchronise: a job's progress is
awaited on the agent's own events (``AgentProcess.wait_job``), a job held at a
point of the test's choosing is let go with ``release`` (see ``HOLD``), and a
condition no event announces is polled by the one helper ``wait_until``, which
fails with what it was waiting for. Nothing here asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.client import Client, entry_bytes
from agent.protocol.states import TERMINAL

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("CHOO_TEST_IMAGE", "localhost/choo-test")


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True, **kwargs)


def volumes_of(agent: AgentProcess) -> list[str]:
    """The names of the volumes Podman holds labelled as this agent's (/out and caches)."""
    out = podman(
        "--url",
        agent.podman_url,
        "volume",
        "ls",
        "--format",
        "json",
        "--filter",
        f"label=io.choo.agent={agent.agent_id}",
    ).stdout
    return [v["Name"] for v in json.loads(out or "[]")]


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
        wait_until(self.path.exists, 20, "podman system service's socket")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.path.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()


def journal_entries(job_id: str) -> list[dict[str, Any]]:
    """The journal's copy of a job's output, as journalctl's JSON entries."""
    out = subprocess.run(
        ["journalctl", "-o", "json", f"CONTAINER_NAME=choo-{job_id}"],
        capture_output=True,
        text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def journal_lines(job_id: str) -> list[str]:
    """The journal's copy of a job's output, a stripped message per entry."""
    return [entry["MESSAGE"].strip() for entry in journal_entries(job_id)]


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30,
    what: str = "the condition",
    interval: float = 0.05,
    *,
    message: str | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something true, for a condition no event announces.

    Args:
        predicate: Called until its value is true; may raise to give up early.
        timeout: Seconds before giving up.
        what: What is awaited, for the failure message.
        interval: Seconds between calls.
        message: The former name of ``what``, still used by some test files.

    Returns:
        The predicate's first true value.

    Raises:
        AssertionError: ``timeout`` passed first; the message names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {message or what}")
        time.sleep(interval)


#: A job command's prefix that holds it (running) until the test calls ``release``:
#: the test, not a sleep's length, decides when the job goes on.
HOLD = "until [ -e /tmp/choo-release ]; do sleep 0.1; done"


def release(podman_url: str, job_id: str, timeout: float = 30) -> None:
    """Let a ``HOLD`` job go on, by creating its file inside its (running) container.

    ``podman exec`` can fail either way round on a loaded host: runc may refuse
    an exec into a container that has only just started (try again: the touch
    is idempotent), and an exec that did create the file can still answer an
    error when the job, released, ends at once and its container goes. So an
    exec that failed counts as done once the container no longer runs.
    """
    name = f"choo-{job_id}"
    tries: list[str] = []

    def went_on() -> bool:
        done = podman("--url", podman_url, "exec", name, "touch", "/tmp/choo-release", check=False)
        if done.returncode == 0:
            return True
        tries.append(done.stderr.strip())
        state = podman(
            "--url", podman_url, "inspect", "-f", "{{.State.Running}}", name, check=False
        )
        return state.returncode != 0 or state.stdout.strip() != "true"

    try:
        wait_until(went_on, timeout=timeout, what=f"the release of job {job_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; podman exec said: {tries[-1] if tries else '-'}") from None


def _toml(value: Any) -> str:
    """A setting's value as TOML: JSON, but a table inline as ``{"key" = value}``
    (in a list too)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


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
        lines = [f"{key} = {_toml(value)}" for key, value in values.items()]
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
                raise AssertionError(f"agent exited {self.process.returncode}")
            try:
                with self.client() as c:
                    self.agent_id = c.call("agent.info")["agent_id"]
                    return True
            except Exception:
                return False

        try:
            wait_until(ready, timeout, "the agent to answer agent.info")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{self.log()}") from None

    def client(self, timeout: float | None = 60) -> Client:
        return Client(self.socket, timeout=timeout)

    def call(self, method: str, **params):
        with self.client() as c:
            return c.call(method, **params)

    def output(self, job_id: str, **params: Any) -> dict[str, bytes]:
        """A job's output as ``job.logs`` gives it back (every page): each
        stream's exact bytes."""
        out = {"stdout": bytearray(), "stderr": bytearray()}
        with self.client() as client:
            for entry in client.output(job_id, **params):
                out[entry["stream"]] += entry_bytes(entry)
        return {stream: bytes(data) for stream, data in out.items()}

    def output_lines(self, job_id: str) -> list[str]:
        """A job's standard output as text lines (for tests that print text)."""
        return self.output(job_id)["stdout"].decode().splitlines()

    def wait_job(
        self, job_id: str, predicate: Callable[[dict], bool], what: str, timeout: float = 30
    ) -> dict:
        """Wait, on the agent's job events, until ``predicate(job)`` holds.

        Between looks at the job it blocks in ``events.subscribe`` for the job's
        next event; a subscription only sees events from its start, so it is
        bounded (1 s) to catch one committed between the look and the call.

        Args:
            job_id: The job.
            predicate: Called with the job record (``job.get``).
            what: What is awaited, for the failure message.
            timeout: Seconds before giving up.

        Returns:
            The job record that satisfied ``predicate``.

        Raises:
            AssertionError: ``timeout`` passed first.
        """
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                job = client.call("job.get", id=job_id)
                if predicate(job):
                    return job
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout:g} s waiting for job {job_id}: {what}; "
                        f"it is {job['state']}"
                    )
                client.call("events.subscribe", job=job_id, count=1, timeout=min(1.0, left))

    def run_to_end(self, *args: str, timeout: float = 120) -> dict:
        """``chooctl run -d ARGS``, then the job's record once it has ended."""
        done = self.chooctl("run", "-d", *args)
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.strip()
        self.call("job.wait", id=job_id, timeout=timeout)
        return self.call("job.get", id=job_id)

    def wait_state(self, job_id: str, state: str, timeout: float = 30) -> dict:
        """Wait on the job's events until it is in ``state``; fail at once if it ended instead.

        Returns:
            The job record.
        """

        def reached(job: dict) -> bool:
            if job["state"] != state and job["state"] in TERMINAL:
                raise AssertionError(f"job {job_id} ended {job['state']} before {state}: {job}")
            return job["state"] == state

        return self.wait_job(job_id, reached, state, timeout)

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

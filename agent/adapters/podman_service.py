"""Find the rootless Podman API service, or run one for the agent's lifetime.

An agent started by hand on a machine where nobody enabled ``podman.socket``
still works: if nothing answers on the default socket it starts
``podman system service`` and stops it on exit. This module only manages
that process and asks it for a ping; it does not speak the rest of the API
(agent.adapters.podman does).

The service's log goes to the journal (``SYSLOG_IDENTIFIER=choo-podman``)
through a journal stream of its own, never through a pipe the agent would
have to read: journald drains it whatever the agent is doing, and it
outlives the agent (a pipe's reader dies with a SIGKILLed agent, and the
service with it on its next write). The service runs in a session of its
own, so it outlives a crashed agent too; its pid is kept in the state
directory, and the next agent reuses it if it answers a ping, or ends it and
starts a fresh one if it does not.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from systemd import journal

from agent.protocol.errors import PodmanUnavailable

log = logging.getLogger(__name__)

#: The journal identifier of the service's own log lines.
JOURNAL_IDENTIFIER = "choo-podman"
PID_FILE = "podman-service.pid"
#: How long a service asked to stop (SIGTERM) has before it is killed.
STOP_GRACE = 10.0
#: Environment of the agent's that must not reach the service (it would
#: notify systemd, or take the agent's sockets, as if it were the agent).
_PRIVATE_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID")


def default_url() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix://{runtime}/podman/podman.sock"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def answers(url: str, timeout: float = 2.0) -> bool:
    """Tell whether a Podman API on a ``unix://`` URL answers a ping (``GET /_ping``).

    A real request, not just a connect: a service stuck on its own output, or
    a socket systemd holds for a service that cannot start, accepts
    connections and never answers.
    """
    path = url.removeprefix("unix://")
    if not url.startswith("unix://") or not Path(path).exists():
        return False
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class PodmanService:
    """A ``podman system service`` the agent runs (started, or adopted after a crash).

    Args:
        url: the ``unix://`` URL it serves.
        state_dir: where its pid is kept for the next agent.
        runtime: its default OCI runtime ("": Podman's own).
        log_level: its ``--log-level`` ("": Podman's default).
    """

    def __init__(self, url: str, state_dir: Path, *, runtime: str = "", log_level: str = ""):
        self.url = url
        self.pid_file = state_dir / PID_FILE
        self.runtime = runtime
        self.log_level = log_level
        self.pid: int | None = None
        self._child: subprocess.Popen | None = None

    def ensure(self) -> None:
        """Make sure a service answers: one that does is used (and adopted, if an
        earlier agent of this state directory started it), else ours is started.

        Raises:
            PodmanUnavailable: podman is not installed or the service did not come up.
        """
        if answers(self.url):
            if self.pid is None:
                self.adopt()
            return
        self.stop()
        self.start()

    def adopt(self) -> bool:
        """Take over the service an earlier agent of this state directory started.

        Returns:
            True when that service still runs (it answers: the caller checked),
            so this agent stops it on exit; False when there is none.
        """
        pid = self._recorded()
        if pid is not None:
            log.info("reusing the Podman service (pid %d) an earlier agent started", pid)
            self.pid = pid
        return pid is not None

    def start(self, wait: float = 30.0) -> None:
        """Start the service and wait until it answers a ping.

        A service an earlier agent left that does not answer (the caller found
        none that does) is ended first.

        Raises:
            PodmanUnavailable: podman is not installed or the service did not come up.
        """
        podman = shutil.which("podman")
        if podman is None:
            raise PodmanUnavailable(
                "podman is not installed (or not on PATH); install it: apt-get install podman"
            )
        leftover = self._recorded()
        if leftover is not None:
            log.warning(
                "the Podman service (pid %d) an earlier agent started does not answer; ending it",
                leftover,
            )
            _end(leftover)
        Path(self.url.removeprefix("unix://")).parent.mkdir(parents=True, exist_ok=True)
        argv = [podman]
        if self.runtime:
            argv += ["--runtime", self.runtime]
        if self.log_level:
            argv += [f"--log-level={self.log_level}"]
        argv += ["system", "service", "--time=0", self.url]
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        log.info("no Podman API answers at %s; starting podman system service", self.url)
        with _log_sink() as sink:
            self._child = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                # Its own session: a Ctrl-C meant for the agent must not kill
                # Podman before the agent has shut down in order.
                start_new_session=True,
            )
        self.pid = self._child.pid
        self.pid_file.write_text(f"{self.pid}\n")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self._child.poll() is not None:
                self._forget()
                raise PodmanUnavailable(
                    f"podman system service exited at once (status {self._child.returncode}); "
                    f"its log: journalctl -t {JOURNAL_IDENTIFIER}"
                )
            if answers(self.url, timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise PodmanUnavailable(
            f"podman system service did not answer at {self.url} in {wait:.0f}s; "
            f"its log: journalctl -t {JOURNAL_IDENTIFIER}"
        )

    def stop(self) -> None:
        """End the service (SIGTERM, then SIGKILL after ``STOP_GRACE``); none running is fine."""
        if self.pid is None:
            return
        if self._child is not None:
            if self._child.poll() is None:
                self._child.terminate()
                try:
                    self._child.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    self._child.wait()
        else:
            _end(self.pid)
        self._forget()

    def _forget(self) -> None:
        self.pid = None
        self._child = None
        self.pid_file.unlink(missing_ok=True)

    def _recorded(self) -> int | None:
        """The pid in the pid file, if it is still a Podman service on our URL.

        The command line is checked, not just the pid: after a reboot or a
        long time the number may belong to another process.
        """
        try:
            pid = int(self.pid_file.read_text().split()[0])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        serving = b"service" in argv and self.url.encode() in argv
        return pid if serving and _alive(pid) else None


@contextlib.contextmanager
def _log_sink():
    """A journal stream for the service's output; without journald, nowhere (DEVNULL).

    Either way it can never fill and block the service. The agent's copy of
    the stream is closed once the child has its own.
    """
    try:
        stream = journal.stream(JOURNAL_IDENTIFIER)
    except OSError as exc:
        log.warning("journald is not reachable (%s); the Podman service's log is discarded", exc)
        yield subprocess.DEVNULL
        return
    with stream:
        yield stream


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (ended, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _end(pid: int) -> None:
    """Stop a service that is not our child: SIGTERM, SIGKILL after ``STOP_GRACE``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid):
            return

"""systemd's protocols, spoken by a real agent process, with no systemd needed.

sd_notify: a datagram socket of the test's own stands in for systemd's
``$NOTIFY_SOCKET`` and records every message the agent sends. Socket
activation: the test makes the listening socket and hands it over as fd 3 with
``LISTEN_FDS``/``LISTEN_PID``, as systemd does. A hung controller loop is a
real one: Podman's API goes through a proxy the test can freeze, so the loop
blocks inside a Podman call exactly as it would on a wedged Podman. The unit
files are checked with ``systemd-analyze verify`` here, and run under a real
systemd by tests/system/run.sh (``make test-system``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from agent import config as configuration
from tests.harness import HOLD, REPO, AgentProcess, podman, release, wait_until

SYSTEMD = REPO / "packaging" / "systemd"


@pytest.fixture
def short_dir():
    """A directory with a short path: AF_UNIX paths must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="choo-sd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class NotifySocket:
    """Plays systemd's side of sd_notify: records each datagram as a dict."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(self, key: str, value: str | None = None, start: int = 0, timeout=30) -> int:
        """Index of the first message from ``start`` on that has ``key`` (= ``value``)."""

        def find():
            for i, (_, fields) in enumerate(self.messages[start:], start):
                if key in fields and (value is None or fields[key] == value):
                    return i
            return None

        with self._cond:
            found = self._cond.wait_for(lambda: find() is not None, timeout)
            assert found, f"no {key}={value or '*'} in {timeout}s; got {self.fields()}"
            return find()

    def fields(self) -> list[dict[str, str]]:
        with self._cond:
            return [f for _, f in self.messages]

    def values(self, key: str) -> list[str]:
        return [f[key] for f in self.fields() if key in f]

    def times(self, key: str) -> list[float]:
        with self._cond:
            return [t for t, f in self.messages if key in f]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(short_dir):
    listener = NotifySocket(short_dir / "notify")
    yield listener
    listener.close()


def _wrapped(env: dict[str, str], *, fd: int | None = None) -> str:
    """A ``python -c`` prelude that does what systemd does between fork and exec.

    systemd sets ``LISTEN_PID``/``WATCHDOG_PID`` to the service's own pid and
    puts the activated socket at fd 3; a test can know neither before it forks.
    """
    lines = ["import os, sys"]
    if fd is not None:
        lines.append(f"os.dup2({fd}, 3)")
    for key in ("LISTEN_PID", "WATCHDOG_PID"):
        if env.get(key) == "self":
            lines.append(f"os.environ[{key!r}] = str(os.getpid())")
    lines.append("os.execv(sys.executable, [sys.executable, '-m', 'agent', *sys.argv[1:]])")
    return "; ".join(lines)


def start_as_systemd(agent: AgentProcess, env: dict[str, str], sock=None) -> AgentProcess:
    """Start ``agent`` with systemd's environment; ``"self"`` stands for the child's pid."""
    agent.write_config()
    fd = sock.fileno() if sock is not None else None
    with open(agent.log_path, "a") as log:
        agent.process = subprocess.Popen(
            [sys.executable, "-c", _wrapped(env, fd=fd), "--config", str(agent.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **{k: v for k, v in env.items() if v != "self"}},
            pass_fds=[fd] if fd is not None else [],
        )
    return agent


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


# -- sd_notify ---------------------------------------------------------------


@pytest.mark.podman
def test_ready_only_after_the_recovery_pass_and_a_listening_socket(make_agent, image, notify):
    agent = make_agent().start()
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", HOLD]})
    agent.wait_state(job["id"], "running")
    agent.stop(signal.SIGKILL)  # leaves a stale socket file and a running container
    release(agent.podman_url, job["id"])  # it ends while the agent is down
    podman("--url", agent.podman_url, "wait", f"choo-{job['id']}")

    start_as_systemd(agent, {"NOTIFY_SOCKET": str(notify.path)})
    ready = notify.wait_for("READY", "1")
    # Straight after READY=1, with no retry: the socket answers and the job
    # that ended while the agent was down has already been recorded.
    with agent.client(timeout=5) as client:
        assert client.call("agent.ping") == "pong"
        assert client.call("job.get", id=job["id"])["state"] == "succeeded"
    assert notify.wait_for("STATUS", "starting: recovery pass") < ready
    assert notify.fields()[ready]["STATUS"] == "0 running, 0 queued"
    assert notify.values("WATCHDOG") == []  # no WATCHDOG_USEC, no pets


@pytest.mark.podman
def test_status_follows_the_jobs(make_agent, image, notify):
    agent = start_as_systemd(make_agent(), {"NOTIFY_SOCKET": str(notify.path)})
    ready = notify.wait_for("READY", "1")
    agent.wait_ready()
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", HOLD]})
    running = notify.wait_for("STATUS", "1 running, 0 queued", start=ready)
    agent.wait_state(job["id"], "running")  # "1 running" counts a starting job too
    release(agent.podman_url, job["id"])
    agent.call("job.wait", id=job["id"], timeout=30)
    notify.wait_for("STATUS", "0 running, 0 queued", start=running)


@pytest.mark.podman
def test_watchdog_pets_at_a_quarter_of_the_period_when_the_pid_is_ours(make_agent, image, notify):
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "self"}
    start_as_systemd(make_agent(), env)
    seen = notify.wait_for("READY", "1")
    for _ in range(4):
        seen = notify.wait_for("WATCHDOG", "1", start=seen + 1)
    pets = notify.times("WATCHDOG")
    gaps = [b - a for a, b in zip(pets, pets[1:], strict=False)]
    # Not a flood: about every 0.5 s (a quarter of the period). That each pet
    # lands inside the period is a deadline, not asserted here:
    # tests/system/run.sh checks a real systemd does not restart the agent.
    assert min(gaps) > 0.4, gaps


@pytest.mark.podman
def test_no_watchdog_for_another_pid(make_agent, image, notify):
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}
    start_as_systemd(make_agent(), env)
    notify.wait_for("READY", "1")
    time.sleep(1.5)  # deliberate: six would-be periods pass, and none is petted
    assert notify.values("WATCHDOG") == []


class FreezableProxy:
    """A Unix-socket relay to Podman's API that can stop relaying (a wedged Podman)."""

    def __init__(self, path: Path, upstream: str):
        self.path = path
        self.upstream = upstream.removeprefix("unix://")
        self.url = f"unix://{path}"
        self.thawed = threading.Event()
        self.thawed.set()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.upstream)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self.thawed.wait()  # frozen: hold the bytes, answer nothing
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.thawed.set()
        self.listener.close()


@pytest.mark.podman
def test_no_watchdog_while_the_controller_loop_hangs(make_agent, podman_service, notify, short_dir):
    proxy = FreezableProxy(short_dir / "podman", podman_service.url)
    # A pass (and so a Podman call) every 0.5 s, not only when there is work.
    agent = make_agent(podman_url=proxy.url, podman_timeout=60.0, resync_interval=0.5)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    try:
        start_as_systemd(agent, env)
        notify.wait_for("READY", "1")
        notify.wait_for("WATCHDOG", "1", start=len(notify.fields()))
        proxy.thawed.clear()  # the loop's next Podman call blocks, as on a wedged Podman
        time.sleep(1.5)  # the next pass blocks; one already past Podman may pet once more
        before = len(notify.times("WATCHDOG"))
        time.sleep(3.0)  # three watchdog periods: systemd would have restarted us
        assert len(notify.times("WATCHDOG")) == before
        assert agent.process.poll() is None
        proxy.thawed.set()
        notify.wait_for("WATCHDOG", "1", start=len(notify.fields()), timeout=5)
    finally:
        proxy.close()
        agent.podman_url = podman_service.url  # for the fixture's container check


@pytest.mark.podman
def test_sighup_sends_reloading_then_ready_and_applies_the_file(make_agent, image, notify):
    agent = start_as_systemd(make_agent(), {"NOTIFY_SOCKET": str(notify.path)})
    ready = notify.wait_for("READY", "1")
    agent.wait_ready()
    agent.write_config(max_concurrent=7)
    sent = monotonic_usec()
    agent.send_signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", "1", start=ready + 1)
    received = monotonic_usec()
    # MONOTONIC_USEC is what Type=notify-reload matches against its SIGHUP:
    # the agent's clock reading between the signal and its message.
    assert sent <= int(notify.fields()[reloading]["MONOTONIC_USEC"]) <= received
    notify.wait_for("READY", "1", start=reloading + 1)
    assert agent.call("agent.info")["max_concurrent"] == 7

    agent.config_path.write_text("max_concurrent = 'many'\n")  # a broken file
    agent.send_signal(signal.SIGHUP)
    again = notify.wait_for("RELOADING", "1", start=reloading + 1)
    notify.wait_for("READY", "1", start=again + 1)  # still serving, old settings kept
    assert agent.call("agent.info")["max_concurrent"] == 7
    assert "reload failed" in agent.log()


@pytest.mark.podman
def test_sigterm_sends_stopping_lets_a_call_finish_and_leaves_jobs(make_agent, image, notify):
    agent = start_as_systemd(make_agent(), {"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY", "1")
    agent.wait_ready()
    job = agent.call("job.submit", spec={"image": image, "command": ["sleep", "30"]})
    agent.wait_state(job["id"], "running")

    answers = []
    client = agent.client(timeout=10)
    waiter = threading.Thread(
        target=lambda: answers.append(client.call("job.wait", id=job["id"], timeout=1.5))
    )
    waiter.start()
    # No event says the agent has read the call; half a second lets it in.
    time.sleep(0.5)
    agent.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING", "1")
    assert agent.process.wait(15) == 0
    waiter.join(5)
    client.close()
    assert answers and answers[0]["state"] == "running"  # answered, not cut off
    name = f"choo-{job['id']}"
    state = podman("--url", agent.podman_url, "inspect", "-f", "{{.State.Status}}", name)
    assert state.stdout.strip() == "running"  # stop_containers_on_exit is off

    agent.start()  # adopts the job; cancelling it removes the container
    agent.call("job.cancel", id=job["id"])
    assert agent.call("job.wait", id=job["id"], timeout=30)["state"] == "cancelled"


@pytest.mark.podman
def test_stop_containers_on_exit_stops_running_jobs(make_agent, image):
    agent = make_agent(stop_containers_on_exit=True).start()
    # A job that ends on SIGTERM (a bare sleep as PID 1 would wait for the SIGKILL).
    command = ["sh", "-c", "trap 'exit 143' TERM; while :; do sleep 0.1; done"]
    job = agent.call("job.submit", spec={"image": image, "command": command})
    agent.wait_state(job["id"], "running")
    assert agent.stop() == 0
    # Stopped, recorded and removed by the stopping agent itself.
    name = f"choo-{job['id']}"
    assert podman("--url", agent.podman_url, "container", "exists", name, check=False).returncode
    agent.start()
    ended = agent.call("job.get", id=job["id"])
    assert (ended["state"], ended["reason"], ended["exit_code"]) == ("cancelled", "shutdown", 143)


# -- socket activation -------------------------------------------------------


def _listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def _ping(path: Path, timeout: float = 30) -> dict:
    from agent.client import Client

    with Client(path, timeout=timeout) as client:
        return client.call("agent.ping")


@pytest.mark.podman
def test_socket_activation_uses_fd_3_and_keeps_it_listening_across_restarts(
    make_agent, image, notify, short_dir
):
    path = short_dir / "activated.sock"
    listener = _listening(path)
    env = {"NOTIFY_SOCKET": str(notify.path), "LISTEN_FDS": "1", "LISTEN_PID": "self"}
    agent = start_as_systemd(make_agent(), env, sock=listener)
    notify.wait_for("READY", "1")
    assert _ping(path) == "pong"
    assert not agent.socket.exists()  # it took fd 3 instead of binding its own
    wait_until(lambda: "socket activation" in agent.log(), 5, "the ready line in the log")

    assert agent.stop() == 0
    # systemd's socket still listens: a client that comes now waits in the
    # backlog and is answered by the next agent (as across systemctl restart).
    queued = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    queued.settimeout(30)
    queued.connect(str(path))
    queued.sendall(b'{"jsonrpc":"2.0","id":1,"method":"agent.ping"}\n')
    start_as_systemd(agent, env, sock=listener)
    assert queued.makefile("rb").readline() == b'{"jsonrpc": "2.0", "result": "pong", "id": 1}\n'
    queued.close()
    listener.close()


@pytest.mark.podman
def test_listen_fds_for_another_pid_are_ignored(make_agent, image):
    agent = make_agent().start(env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    assert agent.socket.exists()  # bound its own socket
    assert _ping(agent.socket) == "pong"


# -- unit files ----------------------------------------------------------------


def _verify(unit_dir: Path, *units: str, user: bool = False) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` the units, with ExecStart pointing at this venv's agent.

    The units name /usr/local/bin/choo-agent (make install rewrites it to
    PREFIX); verify insists that the binary exists, so copies point at ours.
    Man pages are not looked up (--man=no): they are installed by make install.
    User=choo need not exist here: verify does not resolve users.
    """
    agent = Path(sys.executable).parent / "choo-agent"
    for unit in units:
        text = (unit_dir / unit).read_text().replace("/usr/local/bin/choo-agent", str(agent))
        (unit_dir / unit).write_text(text)
    scope = ["--user"] if user else []
    argv = ["systemd-analyze", *scope, "verify", "--man=no", *(str(unit_dir / u) for u in units)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_units_pass_systemd_analyze_verify(tmp_path, user):
    source = SYSTEMD / "user" if user else SYSTEMD
    units = ["choo-agent.service", "choo-agent.socket"]
    for unit in units:
        shutil.copy(source / unit, tmp_path / unit)
    if user and not os.environ.get("XDG_RUNTIME_DIR"):
        pytest.skip("a --user verify needs XDG_RUNTIME_DIR")
    done = _verify(tmp_path, *units, user=user)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_example_config_names_every_setting_and_loads(tmp_path):
    text = (REPO / "packaging" / "choo-agent.toml.example").read_text()
    settings = re.findall(r"^#(\w+ = .*?)(?:[ \t]+#.*)?$", text, re.MULTILINE)
    names = {line.split(" = ")[0] for line in settings}
    assert names == {f.name for f in dataclasses.fields(configuration.Config)}
    uncommented = tmp_path / "agent.toml"
    uncommented.write_text("\n".join(settings) + "\n")
    configuration.load(uncommented)


def test_system_unit_hardening_keeps_what_rootless_podman_needs():
    """The options a real systemd showed to break choo stay off (see the unit's comments)."""
    unit = (SYSTEMD / "choo-agent.service").read_text()
    options = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0].isupper()
    )
    assert options["ProtectHome"] == "read-only"  # yes hides /run/user/<uid>/podman
    assert options.get("PrivateUsers", "no") == "no"  # every peer would be uid 65534
    assert options["Type"] == "notify" and options["WatchdogSec"]
    assert options["RuntimeDirectoryPreserve"] == "yes"  # the socket unit owns the socket

"""The agent's own life: one per state directory, its own Podman service, a damaged or
lost database, and a shutdown that stops its jobs.

Real agent processes, real signals (SIGKILL, SIGSTOP, SIGTERM), real SQLite
files and real rootless Podman. The tests that let the agent run its own
``podman system service`` use the user's default Podman socket, as
``make run`` does; the ``own_podman`` fixture makes sure no service is left
there before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from agent.adapters.podman import out_volume_name
from agent.adapters.podman_service import JOURNAL_IDENTIFIER, PID_FILE, answers, default_url
from tests.harness import HOLD, AgentProcess, podman, wait_until

pytestmark = pytest.mark.podman

#: The exit statuses of choo-agent(8).
EXIT_DATABASE_DAMAGED = 65
EXIT_STATE_DIR_BUSY = 75


def _services_at(url: str) -> list[int]:
    """The pids of every ``podman system service`` of ours serving ``url``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"service" in argv and url.encode() in argv and proc.stat().st_uid == os.getuid():
            pids.append(int(proc.name))
    return pids


def _end_services_at(url: str) -> None:
    for pid in _services_at(url):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _services_at(url), what=f"no Podman service left at {url}")


@pytest.fixture
def own_podman(image):
    """The default Podman URL, with no service there: the agent starts its own.

    Ask for it before ``make_agent``, so the agents are stopped before it
    ends what is left.
    """
    url = default_url()
    _end_services_at(url)
    if answers(url):
        pytest.fail(f"a Podman service this test cannot stop answers at {url} (podman.socket?)")
    yield url
    _end_services_at(url)


def _exit_status(agent: AgentProcess) -> int:
    return wait_until(
        lambda: agent.process.poll() is not None and (agent.process.returncode,),
        what="the agent to exit",
    )[0]


def _run_one(agent: AgentProcess, image: str) -> dict:
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    return agent.call("job.wait", id=job["id"], timeout=120)


# -- one agent per state directory -------------------------------------------


def test_a_second_agent_on_the_same_state_dir_refuses_naming_the_first(make_agent, image):
    first = make_agent().start()
    second = make_agent()
    second.state_dir = first.state_dir
    second.start(wait=False)
    assert _exit_status(second) == EXIT_STATE_DIR_BUSY
    assert f"pid {first.process.pid}" in second.log()
    assert str(first.state_dir) in second.log()
    # It touched nothing: no socket of its own, the lock still names the first.
    assert not second.socket.exists()
    assert (first.state_dir / "agent.lock").read_text() == f"{first.process.pid}\n"
    assert _run_one(first, image)["state"] == "succeeded"


# -- the agent's own Podman service ------------------------------------------


def test_sigkill_an_agent_running_its_own_podman_then_restart_comes_up(
    own_podman, make_agent, image
):
    agent = make_agent(podman_url="").start()
    pid_file = agent.state_dir / PID_FILE
    service = int(pid_file.read_text())
    assert _services_at(own_podman) == [service]
    assert _run_one(agent, image)["state"] == "succeeded"

    # The service lives on in its own session; the next agent reuses it.
    agent.stop(signal.SIGKILL)
    agent.start()
    assert int(pid_file.read_text()) == service
    assert _run_one(agent, image)["state"] == "succeeded"

    # Twice in a row (the measured failure of issue 12 struck the second start).
    agent.stop(signal.SIGKILL)
    agent.start()
    assert _run_one(agent, image)["state"] == "succeeded"

    # A leftover that no longer answers (stopped dead) is replaced.
    agent.stop(signal.SIGKILL)
    os.kill(service, signal.SIGSTOP)
    agent.start()
    fresh = int(pid_file.read_text())
    assert fresh != service and _services_at(own_podman) == [fresh]
    assert _run_one(agent, image)["state"] == "succeeded"

    # A clean stop ends the service it adopted or started.
    assert agent.stop() == 0
    wait_until(lambda: not _services_at(own_podman), what="the agent's service gone")
    assert not pid_file.exists()


def _journal_bytes(identifier: str, since: float) -> int:
    out = subprocess.run(
        ["journalctl", "-t", identifier, "--since", f"@{since:.0f}", "-o", "cat"],
        capture_output=True,
        check=True,
    ).stdout
    return len(out)


def test_its_own_podman_at_debug_level_never_blocks_on_its_log(own_podman, make_agent, image):
    # The full run is 2,000 jobs (CHOO_OWN_PODMAN_JOBS=2000); the suite's
    # 100 already make the service write many pipes' worth of log.
    jobs = int(os.environ.get("CHOO_OWN_PODMAN_JOBS", "100"))
    since = time.time() - 1
    began = time.monotonic()
    agent = make_agent(
        podman_url="", podman_log_level="debug", max_concurrent=8, queue_limit=max(jobs, 1000)
    ).start()
    ids = [
        agent.call("job.submit", spec={"image": image, "command": ["true"]})["id"]
        for _ in range(jobs)
    ]
    states = [agent.call("job.wait", id=job_id, timeout=300)["state"] for job_id in ids]
    print(
        f"\n{jobs} jobs: {states.count('succeeded')} succeeded in {time.monotonic() - began:.0f} s"
    )
    assert states == ["succeeded"] * jobs, {s: states.count(s) for s in set(states)}
    # The service wrote many times what a pipe holds (64 KiB) to the journal,
    # and answered all along.
    logged = wait_until(
        lambda: (n := _journal_bytes(JOURNAL_IDENTIFIER, since)) > 8 * 65536 and n,
        what="the service's debug log in the journal",
    )
    assert answers(own_podman)
    assert agent.call("agent.info")["degraded"] is None, logged


# -- the database ------------------------------------------------------------


def test_a_damaged_database_is_refused_with_what_to_do(make_agent, image):
    agent = make_agent().start()
    assert _run_one(agent, image)["state"] == "succeeded"
    assert agent.stop() == 0
    database = agent.state_dir / "choo.db"
    for leftover in agent.state_dir.glob("choo.db-*"):
        leftover.unlink()
    damaged = b"\x00garbage\xff" * 4096
    database.write_bytes(damaged)
    agent.start(wait=False)
    assert _exit_status(agent) == EXIT_DATABASE_DAMAGED
    log = agent.log()
    assert f"the database {database} is damaged" in log
    assert "restore a backup" in log and "move it aside" in log
    assert "Traceback" not in log
    assert database.read_bytes() == damaged  # nothing written to it


def test_a_deleted_database_keeps_the_agent_id_so_old_containers_are_swept(make_agent, image):
    agent = make_agent(orphan_grace=0.0).start()
    agent_id = agent.agent_id
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", HOLD]})
    agent.wait_state(job["id"], "running")
    agent.stop(signal.SIGKILL)
    for path in agent.state_dir.glob("choo.db*"):
        path.unlink()
    agent.start()
    assert agent.agent_id == agent_id
    # Its job is unknown now, but the container is still recognised as ours.
    wait_until(lambda: agent.containers() == [], what="the old container swept")
    # And its /out volume (swept once a minute; the first sweep may meet the
    # container still holding it).
    volume = out_volume_name(job["id"])
    wait_until(
        lambda: (
            podman("--url", agent.podman_url, "volume", "exists", volume, check=False).returncode
            == 1
        ),
        timeout=150,
        what=f"the old volume {volume} swept",
    )


# -- shutdown with stop_containers_on_exit -----------------------------------

#: How each job answers SIGTERM: at once with a code, a moment later, or not at all.
ON_TERM = {
    "exits 0": "trap 'exit 0' TERM",
    "exits 1": "trap 'exit 1' TERM",
    "exits late": "trap 'sleep 1; exit 3' TERM",
    "ignores it": "trap '' TERM",
}


def _db_jobs(state_dir: Path) -> dict[str, tuple]:
    with sqlite3.connect(state_dir / "choo.db") as con:
        return {
            row[0]: row[1:]
            for row in con.execute("SELECT id, state, reason, retries_left FROM job")
        }


def test_shutdown_stops_every_job_and_each_ends_cancelled_shutdown(make_agent, image):
    agent = make_agent(stop_containers_on_exit=True, max_concurrent=12).start()
    ids = {}
    for kind, trap in ON_TERM.items():
        for _ in range(3):
            spec = {
                "image": image,
                "command": ["sh", "-c", f"{trap}; echo up; while :; do sleep 0.1; done"],
                "stop_timeout": 2,
                "retries": 2,
            }
            ids[agent.call("job.submit", spec=spec)["id"]] = kind
    for job_id in ids:
        agent.wait_state(job_id, "running")
    assert agent.stop(signal.SIGTERM, timeout=120) == 0
    # Ended by the stopping agent itself, before it exited.
    recorded = _db_jobs(agent.state_dir)
    assert {recorded[i][:2] for i in ids} == {("cancelled", "shutdown")}, recorded
    assert {recorded[i][2] for i in ids} == {2}  # no retry taken
    assert [c["Names"] for c in agent.containers()] == []
    # And the next start leaves them so: none runs again.
    agent.start()
    for job_id, kind in ids.items():
        job = agent.call("job.get", id=job_id)
        assert (job["state"], job["reason"], len(job["attempts"])) == (
            "cancelled",
            "shutdown",
            1,
        ), (kind, job)
        assert job["attempts"][0]["reason"] == "shutdown"
    exits = {kind: set() for kind in ON_TERM}
    for job_id, kind in ids.items():
        exits[kind].add(agent.call("job.get", id=job_id)["exit_code"])
    assert exits == {
        "exits 0": {0},
        "exits 1": {1},
        "exits late": {3},
        "ignores it": {137},
    }, json.dumps({k: sorted(v) for k, v in exits.items()})


class PullTrap:
    """A relay to Podman's API that holds every image pull, as a registry that never answers.

    Everything else is relayed as it comes; a connection whose request is a
    pull is held open with nothing forwarded either way.
    """

    def __init__(self, path: Path, upstream: str):
        self.url = f"unix://{path}"
        self.upstream = upstream.removeprefix("unix://")
        self.held = threading.Event()
        self.sockets: list[socket.socket] = []
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
            self.sockets += [client, server]
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if b"/images/pull" in data:
                    self.held.set()
                    return  # held: both ends stay open, nothing more is relayed
                dst.sendall(data)

    def _answers(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def test_sigterm_during_a_pull_that_never_ends_exits_after_the_work_grace(
    make_agent, podman_service
):
    short = Path(tempfile.mkdtemp(prefix="choo-pull-"))  # AF_UNIX paths are short
    trap = PullTrap(short / "podman.sock", podman_service.url)
    agent = make_agent(podman_url=trap.url)
    try:
        agent.start()
        spec = {"image": "localhost/choo-never-pulled:1", "command": ["true"], "pull": "always"}
        agent.call("job.submit", spec=spec)
        wait_until(trap.held.is_set, what="the job's pull held")
        # Without a bound the pool would wait for the pull's read timeout (600 s).
        assert agent.stop(signal.SIGTERM, timeout=120) == 0
        assert "still running after 10s" in agent.log()
    finally:
        agent.podman_url = podman_service.url  # for the fixture's container check
        trap.close()
        shutil.rmtree(short, ignore_errors=True)

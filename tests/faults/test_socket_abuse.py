"""The socket under abuse and load: the agent survives and keeps serving others.

Real agents over their real sockets: huge lines, stalled requests, floods of
connections, hundreds of concurrent clients, and a hypothesis fuzz of
thousands of lines, each followed by a probe on the same connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from agent.protocol.errors import ChooError
from tests.harness import wait_until
from tests.rpc_checks import PING, check_answer, codes
from tests.rpc_fuzz import raw_lines

pytestmark = pytest.mark.podman

MIB = 1024 * 1024
PONG = {"jsonrpc": "2.0", "result": "pong", "id": "probe"}


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(path, timeout: float = 30) -> socket.socket:
    """Connect as a well-behaved client: wait while the accept queue is full."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def ping_on(sock: socket.socket) -> dict:
    sock.sendall(PING + b"\n")
    return json.loads(sock.makefile("rb").readline())


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_a_10mb_line_gets_an_error_and_memory_stays_bounded(agent):
    pid = agent.process.pid
    with connect(agent.socket) as warm:  # first use of a connection thread's database
        assert ping_on(warm) == PONG
    before = rss(pid)
    for _ in range(3):
        with connect(agent.socket) as sock:
            payload = b'{"jsonrpc":"2.0","id":1,"method":"agent.ping","params":["' + b"a" * (
                10 * MIB
            )

            def send(sock=sock, payload=payload):
                # The agent closes the connection half-way: expected.
                with contextlib.suppress(OSError):
                    sock.sendall(payload + b'"]}\n')

            sender = threading.Thread(target=send)
            sender.start()
            answer = read_all(sock)
            sender.join(30)
        assert codes(answer) == [-32600]
        assert b"max_request_bytes" in answer
        assert agent.call("agent.ping") == "pong"
    grown = rss(pid) - before
    assert grown < 8 * MIB, f"RSS grew by {grown / MIB:.1f} MiB after three 10 MB lines"


def test_a_stalled_half_request_times_out_without_blocking_others(make_agent):
    agent = make_agent(request_timeout=1.0).start()
    stalled = connect(agent.socket)
    stalled.sendall(b'{"jsonrpc":"2.0","id":1,')
    dribbler = connect(agent.socket)
    dribbler.sendall(b'{"jsonrpc"')

    def cut_while_dribbling() -> bool:
        """Dribbling a byte now and then does not reset the clock: the agent
        answers the dribbler while it still dribbles (a reset clock would keep
        it open for as long as it does). Others are served meanwhile."""
        assert agent.call("agent.ping") == "pong"
        readable, _, _ = select.select([dribbler], [], [], 0)
        if readable:
            return True
        dribbler.sendall(b" ")
        return False

    wait_until(cut_while_dribbling, interval=0.1, what="the agent to cut a dribbled request")
    for sock in (stalled, dribbler):
        answer = read_all(sock)
        assert codes(answer) == [-32600], answer
        assert b"request_timeout" in answer
        sock.close()
    # An idle connection (nothing half-sent) is not a stalled one: it stays.
    with connect(agent.socket) as idle:
        time.sleep(1.5)
        assert ping_on(idle) == PONG


def test_500_connections_at_once_do_not_lock_others_out(agent):
    pid = agent.process.pid
    assert agent.call("agent.ping") == "pong"
    fds_before = fds(pid)
    with ThreadPoolExecutor(50) as pool:
        held = list(pool.map(lambda _: connect(agent.socket), range(500)))
    try:
        # All 500 are held open, idle; the agent keeps max_connections (256)
        # of them and closes the longest-idle to make room for newcomers.
        for _ in range(20):
            assert agent.call("agent.ping") == "pong"
        # Held connections still open are served; the others were closed.
        served = closed = 0
        for sock in held[-100:]:
            try:
                sock.sendall(PING + b"\n")
                line = sock.makefile("rb").readline()
            except OSError:
                line = b""
            if line:
                assert json.loads(line) == PONG
                served += 1
            else:
                closed += 1
        assert served > 0
    finally:
        for sock in held:
            sock.close()
    assert agent.call("agent.ping") == "pong"
    wait_until(
        lambda: fds(pid) <= fds_before + 5,
        timeout=30,
        message=f"descriptors leaked: {fds(pid)} open, {fds_before} before",
    )
    assert "Traceback" not in agent.log()


def test_200_clients_times_50_mixed_calls_without_an_error(make_agent, image):
    agent = make_agent(max_concurrent=8, queue_limit=100_000).start()
    errors: list[str] = []
    submitted: list[str] = []
    barrier = threading.Barrier(200)

    def client(n: int) -> None:
        try:
            with agent.client(timeout=120) as c:
                barrier.wait(60)
                for i in range(50):
                    kind = (n + i) % 5
                    if kind < 3:
                        assert c.call("agent.ping") == "pong"
                    elif kind == 3:
                        assert isinstance(c.call("job.list", limit=5)["jobs"], list)
                    else:
                        spec = {"image": image, "command": ["true"], "name": f"load{n % 10}"}
                        submitted.append(c.call("job.submit", spec=spec)["id"])
        except Exception as exc:  # collected: one failure must not hide the others
            errors.append(f"client {n}: {exc!r}")

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    elapsed = time.monotonic() - start
    assert errors == [], errors[:5]
    assert len(submitted) == 200 * 10
    print(f"\n200 clients x 50 calls: {10_000 / elapsed:.0f} calls/s")
    # Leave no containers behind: cancel what has not run yet.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: _cancel(agent, i), submitted))
    wait_until(
        lambda: not agent.call("job.list", all=False, limit=10)["jobs"],
        timeout=180,
        message="jobs still active",
    )
    assert agent.call("agent.ping") == "pong"


def _cancel(agent, job_id: str) -> None:
    with contextlib.suppress(ChooError):  # already ended
        agent.call("job.cancel", id=job_id)


@pytest.fixture
def fuzz_agent(make_agent):
    agent = make_agent(max_concurrent=2, request_timeout=5.0).start()
    yield agent
    for job in agent.call("job.list", all=False, limit=1000)["jobs"]:
        _cancel(agent, job["id"])
    wait_until(
        lambda: not agent.call("job.list", all=False, limit=10)["jobs"],
        timeout=120,
        message="fuzzed jobs still active",
    )


def test_fuzzed_lines_get_valid_answers_and_the_agent_stays_up(fuzz_agent, image):
    agent = fuzz_agent
    sock = connect(agent.socket)
    reader = sock.makefile("rb")
    seen = {"lines": 0, "answered": 0}

    @settings(
        max_examples=3000,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=False,
    )
    @given(line=raw_lines(image))
    def one(line: bytes) -> None:
        sock.sendall(line + b"\n" + PING + b"\n")
        first = reader.readline()
        assert first, f"the agent hung up after {line[:100]!r}"
        seen["lines"] += 1
        if json.loads(first) == PONG:
            return  # a notification (or blank line): no answer, as the spec says
        check_answer(first)
        seen["answered"] += 1
        probe = reader.readline()
        assert json.loads(probe) == PONG, (line[:100], probe)

    one()
    sock.close()
    assert seen["lines"] >= 1000 and seen["answered"] >= 500, seen
    assert agent.call("agent.ping") == "pong"
    assert agent.process.poll() is None
    internal = [line for line in agent.log().splitlines() if "internal error in" in line]
    assert internal == [], internal[:5]


def test_a_wait_whose_client_hung_up_frees_its_connection(make_agent, image):
    """A client that gives up on a long job.wait must not hold a slot until the job ends."""
    agent = make_agent(max_connections=2).start()
    job = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    for _ in range(2):
        with connect(agent.socket) as sock:
            request = {"jsonrpc": "2.0", "id": 1, "method": "job.wait", "params": {"id": job["id"]}}
            sock.sendall(json.dumps(request).encode() + b"\n")
            time.sleep(0.2)
    # Both slots are free of calls again: two new waits, in flight at the
    # same time, are both served (a slot held by a call cannot be taken).
    wait_until(
        lambda: _two_waits_served(agent, job["id"]),
        timeout=15,
        message="hung-up waits still hold the slots",
    )
    agent.call("job.cancel", id=job["id"])
    agent.call("job.wait", id=job["id"], timeout=60)


def _two_waits_served(agent, job_id: str) -> bool:
    socks = [connect(agent.socket) for _ in range(2)]
    try:
        for sock in socks:
            request = {"jsonrpc": "2.0", "id": 1, "method": "job.wait"}
            request["params"] = {"id": job_id, "timeout": 1}
            sock.sendall(json.dumps(request).encode() + b"\n")
        answers = [json.loads(sock.makefile("rb").readline() or b"{}") for sock in socks]
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()
    return all("result" in answer for answer in answers)

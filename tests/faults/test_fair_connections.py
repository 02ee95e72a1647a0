"""Fair connection slots between uids, with real other uids over the real socket.

One uid holding busy calls (log follows) up to its ``max_connections_per_uid``
is refused past it while another uid and the agent's own user are served;
with the socket full, the uid holding the most gives a connection up, even
one inside a call. The other uids are the test user's subordinate uids
(tests/other_uids.py). The choice itself is unit-tested in
tests/unit/test_ownership.py.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from tests import other_uids
from tests.harness import wait_until

pytestmark = pytest.mark.podman
open_socket_dir = other_uids.open_socket_dir


#: Run as another uid: opens connections one at a time, each following the
#: job argv[2]'s output (so inside a call once its first line arrives), and
#: prints "held" for each or the agent's refusal, stopping at the first one;
#: then holds them all until its standard input closes.
HOLDER = r"""
import json, socket, sys
held = []
request = {"jsonrpc": "2.0", "id": 1, "method": "job.logs",
           "params": {"id": sys.argv[2], "follow": True}}
for _ in range(int(sys.argv[3])):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(sys.argv[1])
    try:
        s.sendall(json.dumps(request).encode() + b"\n")
    except BrokenPipeError:
        pass  # refused at once, before the request was sent: the refusal is still there to read
    line = s.makefile("rb").readline().decode()
    if '"job.log"' not in line:
        print("refused " + line.strip(), flush=True)
        break
    held.append(s)
    print("held", flush=True)
print("done", flush=True)
sys.stdin.read()
"""


def _hold(agent, who: int, job_id: str, most: int) -> tuple[subprocess.Popen, list[str]]:
    """Have uid ``who`` open up to ``most`` busy connections; its report lines."""
    holder = other_uids.python(who, HOLDER, str(agent.socket), job_id, str(most))
    lines = []
    while (line := holder.stdout.readline().strip()) != "done":
        assert line, f"the holder died: {holder.stderr.read()}"
        lines.append(line)
    return holder, lines


def _ping_as(agent, who: int) -> dict:
    return other_uids.call(who, agent.socket, "agent.ping")


def test_one_uid_holding_its_cap_of_busy_calls_locks_nobody_else_out(
    make_agent, image, open_socket_dir
):
    """A uid opens busy connections until refused at max_connections_per_uid; another
    uid and the agent's own user are still served, and when the socket is full the
    uid holding the most gives way, even inside a call."""
    alice, bob = other_uids.host_uid(other_uids.ALICE), other_uids.host_uid(other_uids.BOB)
    agent = other_uids.start_open(
        make_agent,
        open_socket_dir,
        max_connections=5,
        max_connections_per_uid=3,
        allowed_users=[str(alice), str(bob)],
        list_others=True,
    )
    command = ["sh", "-c", "echo ready; exec sleep 300"]
    job = agent.call("job.submit", spec={"image": image, "command": command})
    agent.wait_state(job["id"], "running", timeout=60)
    # Alice's job to follow is her own (job.logs is the owner's).
    alices = _job_as(agent, other_uids.ALICE, image, command)
    holder, lines = _hold(agent, other_uids.ALICE, alices, most=10)
    try:
        assert lines[:3] == ["held"] * 3 and len(lines) == 4, lines
        assert "max_connections_per_uid (3), all inside calls" in lines[3]
        assert '"code": -32600' in lines[3]
        # Bob and the agent's own user are served meanwhile.
        assert _ping_as(agent, other_uids.BOB)["result"] == "pong"
        assert agent.call("agent.ping") == "pong"
        # The agent's user fills the socket (it is not capped per uid): 3 + 2 = 5.
        own = [_follow(agent, job["id"]) for _ in range(2)]
        # Bob still gets in: Alice holds the most, and one of hers is closed for him.
        assert _ping_as(agent, other_uids.BOB)["result"] == "pong"
        wait_until(
            lambda: f"closed a connection of uid {alice}" in agent.log(),
            timeout=30,
            message="no connection of the uid holding the most was closed",
        )
        # And so does the agent's user, full socket or not.
        assert agent.call("agent.ping") == "pong"
        for sock in own:
            sock.close()
    finally:
        holder.stdin.close()
        holder.wait(60)
        for job_id in (job["id"], alices):
            agent.call("job.cancel", id=job_id)
            agent.call("job.wait", id=job_id, timeout=60)


def _job_as(agent, who: int, image: str, command: list[str]) -> str:
    """A running job submitted by uid ``who``: its ID."""
    spec = {"image": image, "command": command}
    job_id = other_uids.call(who, agent.socket, "job.submit", spec=spec)["result"]["id"]
    agent.wait_state(job_id, "running", timeout=60)
    return job_id


def _follow(agent, job_id: str) -> socket.socket:
    """A connection of the agent's user inside a job.logs follow (its first line read)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(60)
    sock.connect(str(agent.socket))
    request = {"jsonrpc": "2.0", "id": 1, "method": "job.logs"}
    request["params"] = {"id": job_id, "follow": True}
    sock.sendall(json.dumps(request).encode() + b"\n")
    assert json.loads(sock.makefile("rb").readline())["method"] == "job.log"
    return sock

"""The socket speaks JSON-RPC 2.0, one JSON text per line, and survives bad input."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

import pytest

pytestmark = pytest.mark.podman


def _exchange(sock_file, lines: list[bytes]) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(sock_file))
        reader = sock.makefile("rb")
        replies = []
        for line in lines:
            sock.sendall(line + b"\n")
            replies.append(json.loads(reader.readline()))
        return replies


def test_socat_round_trip(agent):
    request = '{"jsonrpc":"2.0","id":1,"method":"agent.ping"}'
    done = subprocess.run(
        ["socat", "-t", "30", "-", f"UNIX-CONNECT:{agent.socket}"],
        input=request + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(done.stdout) == {"jsonrpc": "2.0", "result": "pong", "id": 1}


def test_errors_have_spec_codes_and_connection_survives(agent):
    replies = _exchange(
        agent.socket,
        [
            b'{"jsonrpc":"2.0","id":1,"method":"no.such.method"}',
            b'{"jsonrpc":"2.0","id":2,"method":"job.get","params":{"nope":1}}',
            b"this is not json",
            b'{"jsonrpc":"2.0","id":3,"method":"job.submit","params":{"spec":{"image":""}}}',
            b"\xff\xfe garbage",
            b'{"jsonrpc":"2.0","id":4,"method":"agent.ping","params":[]}',
        ],
    )
    codes = [r.get("error", {}).get("code") for r in replies]
    assert codes == [-32601, -32602, -32700, -32602, -32700, None]
    assert replies[3]["error"]["message"].startswith("image:")
    assert replies[5]["result"] == "pong"
    # Nothing was stored for the refused spec.
    assert agent.call("job.list", all=True)["jobs"] == []


def test_socket_file_is_0660(agent):
    assert stat.S_IMODE(os.stat(agent.socket).st_mode) == 0o660


def test_agent_refuses_a_second_agent_on_a_live_socket(agent, make_agent):
    other = make_agent()
    other.socket = agent.socket
    other.start(wait=False)
    assert other.process.wait(30) == 1
    assert "another agent is listening" in other.log()
    assert agent.call("agent.ping") == "pong"

"""The socket speaks JSON-RPC 2.0, one JSON text per line, and survives bad input."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

import pytest

from agent.protocol.errors import InvalidParams
from tests.rpc_checks import NASTY, PING, codes

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


# -- JSON-RPC 2.0 conformance over the real socket --------------------------------


def _answers(sock_file, lines: list[bytes]) -> list[bytes]:
    """Send each line followed by a ping probe; return each line's answer (b"" for none).

    Answers come in request order on one connection, so whatever arrives before
    the probe's pong is the line's answer.
    """
    out = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(sock_file))
        reader = sock.makefile("rb")
        for line in lines:
            sock.sendall(line + b"\n" + PING + b"\n")
            first = reader.readline()
            assert first, f"the agent hung up after {line[:80]!r}"
            if json.loads(first) == {"jsonrpc": "2.0", "result": "pong", "id": "probe"}:
                out.append(b"")
                continue
            probe = json.loads(reader.readline())
            assert probe.get("result") == "pong", (line[:80], probe)
            out.append(first)
    return out


def test_nasty_inputs_get_the_answers_the_spec_asks_for(agent):
    answers = _answers(agent.socket, [line for line, _ in NASTY])
    for (line, expected), answer in zip(NASTY, answers, strict=True):
        if expected == "none":
            assert answer == b"", (line[:80], answer)
        else:
            assert codes(answer) == expected, (line[:80], answer[:300])
    assert agent.call("job.list", all=True)["jobs"] == []
    assert agent.call("agent.ping") == "pong"


def test_a_submitted_job_records_the_callers_uid_and_pid(agent, image):
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert (job["submitter_uid"], job["submitter_pid"]) == (os.getuid(), os.getpid())
    agent.call("job.wait", id=job["id"], timeout=60)


BAD_SPECS = [
    ({"image": "Not An Image!"}, "image: "),
    ({"image": "alpine::latest"}, "image: "),
    ({"command": "echo hi"}, "command: expected a list of strings"),
    ({"command": ["echo", 1]}, "command: expected a list of strings"),
    ({"env": {"1BAD": "x"}}, "env: "),
    ({"env": {"A=B": "x"}}, "env: "),
    ({"timeout": -5}, "timeout: must be zero or more"),
    ({"timeout": "-5s"}, "timeout: "),
    ({"stop_timeout": 10**400}, "stop_timeout: at most"),
    ({"resources": {"memory": -1}}, "resources.memory: "),
    ({"resources": {"swap": 1}}, "resources: unknown field"),
    ({"secrets": "GITHUB_TOKEN"}, "secrets: expected a list"),
    ({"secrets": ["not-a-name"]}, "secrets: "),
    ({"secrets": ["TOKEN"], "env": {"TOKEN": "x"}}, "secrets: TOKEN is also set in env"),
    ({"privileged": True}, "spec: unknown field(s) privileged"),
    ({"workspace": "/etc"}, "workspace: "),
]


@pytest.mark.parametrize(("fields", "message"), BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_a_bad_spec_is_refused_naming_the_field_and_nothing_is_stored(
    agent, image, fields, message
):
    with pytest.raises(InvalidParams) as excinfo:
        agent.call("job.submit", spec={"image": image, **fields})
    assert message in excinfo.value.message
    assert agent.call("job.list", all=True)["jobs"] == []

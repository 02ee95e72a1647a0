"""Who may connect: SO_PEERCRED checked on every connection, over the real socket.

The second unprivileged user is one of the test user's own subordinate uids:
``podman unshare`` enters the rootless user namespace (uid 0 inside is the
test user, uids 1.. are its /etc/subuid range) and ``setpriv`` becomes uid
1000 there, which the agent (outside) sees as a different, unprivileged uid
with no account and no groups. That needs no root, no sudo and no second
account on the host, and the kernel reports it through SO_PEERCRED exactly as
it would a real other user. The socket file is opened up (0666) for these
tests, so that the credential check, not the file mode, is what refuses.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests import other_uids
from tests.harness import REPO
from tests.other_uids import host_uid, start_open
from tests.rpc_checks import check_answer

pytestmark = pytest.mark.podman

INSIDE_UID = 1000
open_socket_dir = other_uids.open_socket_dir
CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
try:
    s.sendall(sys.argv[2].encode() + b"\n")
except BrokenPipeError:
    pass  # refused before we wrote: the agent's error is waiting to be read
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:
        break
    data += chunk
    if not chunk or data.endswith(b"\n"):
        break
s.settimeout(2)
try:
    closed = s.recv(1) == b""
except ConnectionResetError:
    closed = True
except TimeoutError:
    closed = False
print(json.dumps({"pid": __import__("os").getpid(), "answer": data.decode(), "closed": closed}))
"""


PING = '{"jsonrpc":"2.0","id":1,"method":"agent.ping"}'


def _as_other(socket_path: Path, *setpriv: str, request: str = PING) -> dict:
    """Run one request as uid INSIDE_UID of the rootless user namespace."""
    argv = ["podman", "unshare", "setpriv", f"--reuid={INSIDE_UID}", *setpriv]
    done = subprocess.run(
        [*argv, "/usr/bin/python3", "-c", CLIENT, str(socket_path), request],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_peer_in_no_allowed_group_is_refused_logged_and_closed(make_agent, open_socket_dir):
    agent = start_open(make_agent, open_socket_dir)
    outsider = host_uid(INSIDE_UID)
    result = _as_other(agent.socket, f"--regid={INSIDE_UID}", "--clear-groups")
    replies = check_answer(result["answer"])
    assert result["closed"], "the agent kept a refused connection open"
    error = replies[0]["error"]
    assert error["code"] == -32006
    assert f"uid {outsider}" in error["message"] and "may not use this agent" in error["message"]
    log = agent.log()
    assert f"refused connection from pid {result['pid']} uid {outsider}" in log
    # The agent is unharmed and still serves its own user.
    assert agent.call("agent.ping") == "pong"


def test_a_member_of_an_allowed_group_may_connect(make_agent, open_socket_dir):
    group = grp.getgrgid(os.getgid()).gr_name  # gid 0 in the namespace is ours outside
    agent = start_open(make_agent, open_socket_dir, allowed_groups=[group])
    primary = _as_other(agent.socket, "--regid=0", "--clear-groups")
    assert json.loads(primary["answer"].splitlines()[0])["result"] == "pong"
    # A supplementary group counts too (the kernel's SO_PEERGROUPS list).
    supplementary = _as_other(agent.socket, f"--regid={INSIDE_UID}", "--groups=0")
    assert json.loads(supplementary["answer"].splitlines()[0])["result"] == "pong"


def test_a_listed_uid_may_connect(make_agent, open_socket_dir):
    agent = start_open(make_agent, open_socket_dir, allowed_users=[str(host_uid(INSIDE_UID))])
    result = _as_other(agent.socket, f"--regid={INSIDE_UID}", "--clear-groups")
    assert json.loads(result["answer"].splitlines()[0])["result"] == "pong"


def test_the_socket_file_is_0660_with_the_agents_group(agent):
    st = os.stat(agent.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660
    try:
        choo = grp.getgrnam("choo").gr_gid
    except KeyError:
        pytest.skip("no group choo on this host")
    if choo not in os.getgroups():
        pytest.skip("the test user is not in group choo, so it cannot hand the socket to it")
    assert st.st_gid == choo


def test_a_refused_peer_cannot_submit(make_agent, open_socket_dir, image):
    """A refused connection is closed before any request is read."""
    agent = start_open(make_agent, open_socket_dir)
    submit = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "job.submit", "params": {"spec": {"image": image}}}
    )
    result = _as_other(agent.socket, f"--regid={INSIDE_UID}", "--clear-groups", request=submit)
    assert json.loads(result["answer"].splitlines()[0])["error"]["code"] == -32006
    assert agent.call("job.list", all=True)["jobs"] == []


def test_own_user_connects(agent):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(agent.socket))
        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"agent.ping"}\n')
        assert json.loads(sock.makefile("rb").readline())["result"] == "pong"


def test_the_client_library_reports_the_refusal(make_agent, open_socket_dir):
    """agent.client (and so chooctl) shows the agent's reason, not a broken pipe."""
    agent = start_open(make_agent, open_socket_dir)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from agent.client import Client\n"
        "from agent.protocol.errors import Unauthorized\n"
        "try:\n"
        "    Client(sys.argv[2], timeout=20).call('agent.ping')\n"
        "except Unauthorized as exc:\n"
        "    print('refused:', exc.message)\n"
    )
    done = subprocess.run(
        [
            "podman",
            "unshare",
            "setpriv",
            f"--reuid={INSIDE_UID}",
            f"--regid={INSIDE_UID}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            script,
            str(REPO),
            str(agent.socket),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "No module named" in done.stderr or "Permission denied" in done.stderr:
        pytest.skip("the source tree is not readable by the other uid")
    assert done.stdout.startswith("refused: uid "), done.stdout + done.stderr

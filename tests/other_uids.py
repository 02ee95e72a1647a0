"""Running a client as another real uid, without root: the test user's subordinate uids.

``podman unshare`` enters the test user's rootless user namespace (uid 0
inside is the test user, uids 1.. are its /etc/subuid range) and ``setpriv``
becomes uid N there, which the agent (outside) sees as a different,
unprivileged host uid with no account. ``--groups=0`` adds the test user's
own primary group (gid 0 inside) as a supplementary group, as the kernel then
reports it through SO_PEERGROUPS: the way to make such a uid a member of a
named group (``admin_groups``). The kernel reports these exactly as it would
real other users; no root, sudo or second account is needed.

The agent's socket must be reachable by them: ``open_socket_dir`` gives a
directory they may pass (0711), and the socket file is opened up (0666) so
that the credential check, not the file mode, is what decides.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: Three uids inside the namespace, as three users: two members, one admin.
ALICE, BOB, ADMIN = 1000, 1001, 1002
#: The group ``--groups=0`` gives (the test user's primary group), by name.
ADMIN_GROUP = grp.getgrgid(os.getgid()).gr_name


def host_uid(inside: int) -> int:
    """The host uid that uid ``inside`` of the rootless user namespace maps to."""
    done = subprocess.run(
        ["podman", "unshare", "cat", "/proc/self/uid_map"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        start, host, count = map(int, line.split())
        if start <= inside < start + count:
            return host + inside - start
    pytest.skip(f"uid {inside} is not mapped in the rootless user namespace")


def as_uid(inside: int, *groups: str) -> list[str]:
    """The command prefix that runs the rest as uid ``inside`` (``groups``: setpriv's
    group options; default: its own gid, no supplementary groups)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    options = groups or (f"--regid={inside}", "--clear-groups")
    return ["podman", "unshare", "setpriv", f"--reuid={inside}", *options]


def user_argv(inside: int) -> list[str]:
    """The prefix for one of the three users: ADMIN gets the admin group."""
    if inside == ADMIN:
        return as_uid(inside, f"--regid={inside}", "--groups=0")
    return as_uid(inside)


def chooctl(inside: int, socket: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``chooctl --socket SOCKET ARGS`` as one of the three users."""
    argv = [str(Path(sys.executable).parent / "chooctl"), "--socket", str(socket), *args]
    return subprocess.run(
        [*user_argv(inside), "env", "HOME=/", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def python(inside: int, script: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start ``/usr/bin/python3 -c SCRIPT ARGS`` as one of the three users (pipes on)."""
    return subprocess.Popen(
        [*user_argv(inside), "/usr/bin/python3", "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        **kwargs,
    )


#: One request on a fresh connection; prints the first line answered.
ONE_CALL = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(60)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
print(s.makefile("rb").readline().decode(), end="")
"""


def call(inside: int, socket: Path, method: str, **params) -> dict:
    """One JSON-RPC call as one of the three users, on a connection of its own; the response."""
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    process = python(inside, ONE_CALL, str(socket), request)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out)


@pytest.fixture
def open_socket_dir():
    """A directory the other uids may pass through to reach a socket in it."""
    path = Path(tempfile.mkdtemp(prefix="choo-access-", dir="/tmp"))
    path.chmod(0o711)  # others may reach the socket, not list the directory
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_open(make_agent, directory: Path, env: dict | None = None, **settings):
    """Start an agent (``env``: added to its environment) whose socket, in
    ``directory``, the other uids can open."""
    agent = make_agent(**settings)
    agent.socket = directory / f"agent{len(list(directory.iterdir()))}.sock"
    agent.start(env=env)
    os.chmod(agent.socket, 0o666)
    return agent

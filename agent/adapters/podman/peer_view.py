"""Whether Podman sees a directory of the agent's at the same path: the check behind /out dirs.

A job's /out can be a host directory (agent/adapters/out_dirs.py) only if
Podman, which resolves a bind mount's source in its own mount namespace,
finds that very directory at the path the agent gives. It does not when the
agent has a mount namespace of its own (a tmpfs over its state directory, a
container, a systemd unit's private mounts of another file system) or when
``podman_url`` is served from elsewhere. So the agent asks the kernel, not
Podman: the pid of whoever listens on Podman's unix socket (``SO_PEERCRED``:
the Podman service, or the user's systemd under socket activation, which
hands the socket to Podman in its own view), then compares the device and
inode of ``/proc/<pid>/root/<path>`` with its own ``stat`` of ``path``. The
same (st_dev, st_ino) is the same directory whatever mounts lead to it
(a read-only remount or a bind of it included); anything that cannot be
read (a TCP or SSH URL, the pid gone, ``/proc`` hidden, another user
namespace's permissions) answers "no", and the jobs get volumes as before.

It never talks to the Podman API and never decides which job gets what.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: URL schemes of a Podman service on a local unix socket (podman-py's spellings).
UNIX_SCHEMES = ("unix", "http+unix")
#: ``struct ucred``: pid, uid, gid.
UCRED = struct.Struct("3i")
#: Who the pid is, in what the agent says (Podman, or systemd holding its socket).
LISTENER = "the process listening on Podman's socket"
#: How long connecting to the socket may take (it only has to be accepted).
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class View:
    """The answer: whether Podman sees the directory, and why (for the log and agent.info)."""

    same: bool
    reason: str


def socket_path(url: str) -> str | None:
    """The socket file of a unix-socket Podman URL; None for any other URL.

    ``unix:///run/user/1000/podman/podman.sock`` and podman-py's
    ``http+unix://%2Frun%2F...`` both name a path.
    """
    parts = urlsplit(url)
    if parts.scheme not in UNIX_SCHEMES:
        return None
    path = unquote(parts.netloc + parts.path) if parts.scheme == "http+unix" else parts.path
    return path or None


def listener_pid(path: str) -> int:
    """The pid of the process that listens on the unix socket ``path``.

    Raises:
        OSError: the socket cannot be reached.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, UCRED.size)
    pid, _uid, _gid = UCRED.unpack(raw)
    return pid


def podman_view(url: str, directory: Path) -> View:
    """Whether the Podman at ``url`` sees ``directory`` (which must exist) as the agent does.

    Args:
        url: the Podman service's URL.
        directory: an absolute path of the agent's (``STATE_DIR/out``).

    Returns:
        ``View(same=True, ...)`` only when the listener's view of the path is
        the agent's directory; otherwise why not. Never raises.
    """
    directory = Path(os.path.abspath(directory))  # /proc/PID/root + an absolute path
    path = socket_path(url)
    if path is None:
        return View(False, f"Podman is reached at {url}, not on a local unix socket")
    try:
        pid = listener_pid(path)
    except OSError as exc:
        return View(False, f"cannot ask who listens on {path}: {exc.strerror or exc}")
    if pid <= 0:
        # A listener in another pid namespace shows as 0.
        return View(False, f"the listener on {path} is in another pid namespace")
    try:
        ours = os.stat(directory)
        theirs = os.stat(f"/proc/{pid}/root{directory}")
    except OSError as exc:
        return View(
            False, f"cannot see {directory} as {LISTENER} (pid {pid}) does: {exc.strerror or exc}"
        )
    if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
        return View(False, f"{LISTENER} (pid {pid}) sees another directory at {directory}")
    return View(True, f"{LISTENER} (pid {pid}) sees {directory} as the agent does")

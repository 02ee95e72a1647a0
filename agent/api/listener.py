"""The listening socket: bound by the agent, or taken from systemd (socket activation).

Owns the socket file (its mode, group, a stale one's replacement and removal)
and the descriptor limit a full house of connections needs. It never reads
from a connection (connection.py does) nor decides who may connect (peers.py).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import resource
import socket
import stat
from pathlib import Path

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
#: File descriptors one connection may hold: its socket and its thread's
#: SQLite connection (database, WAL and shared-memory files).
FDS_PER_CONNECTION = 4


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed us (socket activation), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    if count < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.setblocking(True)
    return sock


def bind(path: Path, group: str | None) -> socket.socket:
    """Bind a listening socket at ``path`` (mode 0660, given group).

    A stale socket file (nobody answers) is replaced; one a live agent holds
    is not.

    Raises:
        OSError: the path is in use by a live agent, or cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket; remove it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody is listening
        else:
            raise OSError(errno.EADDRINUSE, f"another agent is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # the file is born 0660: no window where it is wider
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if group:
        _give_to_group(path, group)
    # A deep backlog: a burst of clients waits to be accepted instead of
    # being refused with EAGAIN (the kernel caps it at net.core.somaxconn).
    sock.listen(socket.SOMAXCONN)
    return sock


def _give_to_group(path: Path, group: str) -> None:
    """Give the socket to ``group``, so its members may connect (best effort).

    Without it only the agent's user and root may, which is safe, so the
    agent starts either way. A group the agent's user is not in concerns an
    agent run by that user alone (an ordinary user's ``make run``): nothing
    to warn about. A member whose chown fails is worth a warning.
    """
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.debug("socket group %s does not exist; not applied", group)
        return
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        log.debug("socket group %s: this user is not a member; the socket stays its own", group)
        return
    try:
        os.chown(path, -1, gid)
    except OSError as exc:
        log.warning("socket group %s not applied to %s: %s", group, path, exc.strerror)


def socket_identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino)


def unlink_if_ours(path: Path, identity: tuple[int, int]) -> None:
    """Remove our socket file, unless another agent has since bound that path."""
    with contextlib.suppress(OSError):
        if socket_identity(path) == identity:
            path.unlink()


def raise_fd_limit(connections: int) -> None:
    """Let the soft RLIMIT_NOFILE hold ``connections`` clients at once.

    The soft limit is often 1024 while the hard one is far higher; a full
    house of clients must find descriptors for their sockets and database
    connections. Never above the hard limit, never lowered.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections * FDS_PER_CONNECTION + 256
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and want > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

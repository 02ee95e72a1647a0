"""The Unix socket: bind (or take from systemd), check peers, frame lines.

One JSON-RPC text per line each way. Each connection gets a thread; requests
on one connection are answered in order, and a streaming call writes its
notifications before its response. The server owns transport concerns only:
who may connect (SO_PEERCRED), how big a request may be, how long a half-sent
request may stall. What a request means is rpc.py's business.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import select
import socket
import stat
import struct
import threading
from pathlib import Path

from agent import rpc
from agent.config import Config
from agent.errors import INVALID_REQUEST, Unauthorized
from agent.service import Peer, Service

log = logging.getLogger(__name__)

#: A client that sent part of a request and then nothing for this long is dropped.
STALL_SECONDS = 30.0
MAX_CONNECTIONS = 256
SD_LISTEN_FDS_START = 3


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
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except (KeyError, PermissionError):
            log.debug("socket group %s not applied", group)
    sock.listen(128)
    return sock


def socket_identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino)


def unlink_if_ours(path: Path, identity: tuple[int, int]) -> None:
    """Remove our socket file, unless another agent has since bound that path."""
    with contextlib.suppress(OSError):
        if socket_identity(path) == identity:
            path.unlink()


def peer_of(conn: socket.socket) -> Peer:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid=pid, uid=uid, gid=gid)


class AccessPolicy:
    """Who may talk to the agent: itself, root, the socket group, listed users/groups."""

    def __init__(self, config: Config):
        self.config = config

    def check(self, peer: Peer) -> None:
        if peer.uid in (0, os.getuid()):
            return
        try:
            user = pwd.getpwuid(peer.uid)
        except KeyError:
            user = None
        if user and user.pw_name in self.config.allowed_users:
            return
        groups = set(self.config.allowed_groups)
        if self.config.socket_group:
            groups.add(self.config.socket_group)
        for name in groups:
            try:
                group = grp.getgrnam(name)
            except KeyError:
                continue
            if peer.gid == group.gr_gid or (user and user.pw_name in group.gr_mem):
                return
            if user and user.pw_gid == group.gr_gid:
                return
        raise Unauthorized(
            f"uid {peer.uid} may not use this agent; add the user to group "
            f"{self.config.socket_group or '(socket_group)'} or to allowed_users"
        )


class Server:
    def __init__(self, sock: socket.socket, service: Service, config: Config):
        self.sock = sock
        self.service = service
        self.config = config
        self.policy = AccessPolicy(config)
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stopping = threading.Event()
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            if not self._connections.acquire(blocking=False):
                _send_error(conn, None, INVALID_REQUEST, "too many connections; try again later")
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        """Stop accepting; connections in flight finish their current call."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                peer = peer_of(conn)
                try:
                    self.policy.check(peer)
                except Unauthorized as exc:
                    log.warning("refused connection from pid %d uid %d", peer.pid, peer.uid)
                    _send_error(conn, None, exc.code, exc.message)
                    return
                Connection(conn, peer, self).run()
        except OSError as exc:
            log.debug("connection ended: %s", exc)
        finally:
            self._connections.release()


class Connection:
    """One client: read lines, answer each, allow notifications in between."""

    def __init__(self, conn: socket.socket, peer: Peer, server: Server):
        self.conn = conn
        self.peer = peer
        self.server = server
        self.write_lock = threading.Lock()
        self.call = rpc.Call(
            service=server.service, peer=peer, notify=self.notify, closed=self.closed
        )

    def run(self) -> None:
        buffer = b""
        limit = self.server.config.max_request_bytes
        self.conn.settimeout(STALL_SECONDS)
        while True:
            try:
                chunk = self.conn.recv(65536)
            except TimeoutError:
                if buffer:
                    _send_error(self.conn, None, INVALID_REQUEST, "request incomplete; timed out")
                    return
                continue
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if len(line) > limit:
                    self._too_large(limit)
                    return
                if line.strip():
                    self._answer(line)
            if len(buffer) > limit:
                self._too_large(limit)
                return

    def _answer(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._write(_error_text(None, -32700, "Parse error", "request is not valid UTF-8"))
            return
        reply = rpc.handle(text, self.call)
        if reply:
            self._write(reply)

    def _too_large(self, limit: int) -> None:
        _send_error(
            self.conn, None, INVALID_REQUEST, f"request larger than max_request_bytes ({limit})"
        )

    def notify(self, method: str, params: dict) -> None:
        self._write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    def closed(self) -> bool:
        """True once the client hung up (checked by long streaming calls)."""
        # POLLHUP means the peer closed both directions; a client that only
        # shut its writing side (socat after stdin ends) still reads replies.
        poller = select.poll()
        poller.register(self.conn, select.POLLHUP | select.POLLERR)
        return any(mask & (select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))

    def _write(self, text: str) -> None:
        with self.write_lock:
            self.conn.sendall(text.encode() + b"\n")


def _error_text(req_id, code: int, message: str, data=None) -> str:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "error": error, "id": req_id})


def _send_error(conn: socket.socket, req_id, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(_error_text(req_id, code, message).encode() + b"\n")

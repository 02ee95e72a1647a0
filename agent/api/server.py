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
import resource
import select
import socket
import stat
import struct
import threading
import time
from pathlib import Path

from agent.api import rpc
from agent.api.service import Peer, Service
from agent.config import Config
from agent.protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, Unauthorized

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
#: getsockopt option for the peer's supplementary groups (Linux >= 4.13; not in
#: Python's socket module). Like SO_PEERCRED, taken at connect() time.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
#: File descriptors one connection may hold: its socket and its thread's
#: SQLite connection (database, WAL and shared-memory files).
FDS_PER_CONNECTION = 4
#: accept() errors that mean "not now" (out of descriptors or memory, a client
#: that gave up): the accept loop pauses and carries on instead of dying.
TRANSIENT_ACCEPT_ERRORS = {
    errno.EMFILE,
    errno.ENFILE,
    errno.ENOBUFS,
    errno.ENOMEM,
    errno.ECONNABORTED,
    errno.EINTR,
    errno.EAGAIN,
}
#: How often the accept loop checks whether it should stop.
ACCEPT_POLL = 0.2


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
        # Best effort: members of the group get access; without it only the
        # agent's user and root do, which is safe, so the agent still starts.
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except KeyError:
            log.debug("socket group %s does not exist; not applied", group)
        except OSError as exc:
            log.warning("socket group %s not applied to %s: %s", group, path, exc.strerror)
    # A deep backlog: a burst of clients waits to be accepted instead of
    # being refused with EAGAIN (the kernel caps it at net.core.somaxconn).
    sock.listen(socket.SOMAXCONN)
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
    """The connecting process's credentials, as the kernel took them at connect().

    The pid is for the log and the job record only: a process can exit and its
    pid be reused, but uid and groups are the peer's own and cannot be forged.
    """
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid=pid, uid=uid, gid=gid, groups=_peer_groups(conn))


def _peer_groups(conn: socket.socket) -> tuple[int, ...]:
    """The peer's supplementary group IDs (SO_PEERGROUPS); empty where unsupported."""
    for size in (64, 65536):  # most processes have few groups; NGROUPS_MAX is 65536
        try:
            raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * size)
        except OSError as exc:
            if exc.errno == errno.ERANGE:
                continue
            return ()
        return struct.unpack(f"{len(raw) // 4}I", raw)
    return ()


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


class AccessPolicy:
    """Who may talk to the agent: itself, root, listed users, members of listed groups.

    The groups are ``socket_group`` and ``allowed_groups``; a peer is a member
    when its primary or a supplementary group (as the kernel reports them for
    the connecting process) is one of them, or when the group database lists
    its user. ``allowed_users`` holds user names or numeric uids. Looked up on
    every connection, so changes to the group database apply at once.
    """

    def __init__(self, config: Config):
        self.config = config

    def check(self, peer: Peer) -> None:
        """Return if ``peer`` may connect.

        Raises:
            Unauthorized: naming the uid and how to grant access.
        """
        if peer.uid in (0, os.getuid()):
            return
        try:
            user = pwd.getpwuid(peer.uid)
        except KeyError:
            user = None
        allowed_users = set(self.config.allowed_users)
        if str(peer.uid) in allowed_users or (user and user.pw_name in allowed_users):
            return
        names = [*self.config.allowed_groups]
        if self.config.socket_group:
            names.append(self.config.socket_group)
        gids = {peer.gid, *peer.groups}
        if user:
            gids.add(user.pw_gid)
        for name in names:
            try:
                group = grp.getgrnam(name)
            except KeyError:
                continue
            if group.gr_gid in gids or (user and user.pw_name in group.gr_mem):
                return
        who = f"uid {peer.uid}" + (f" ({user.pw_name})" if user else "")
        groups = ", ".join(dict.fromkeys(names)) or "none configured"
        raise Unauthorized(
            f"{who} may not use this agent: only its own user, root, members of the "
            f"allowed groups ({groups}) and allowed_users may; ask for membership of "
            f"group {self.config.socket_group or 'choo'} or an entry in allowed_users"
        )


class Server:
    def __init__(self, sock: socket.socket, service: Service, config: Config):
        self.sock = sock
        self.service = service
        self.config = config
        self.policy = AccessPolicy(config)
        self._connections: set[Connection] = set()
        self._slots = threading.Lock()
        raise_fd_limit(config.max_connections)
        self._stopping = threading.Event()
        self._active: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition()

    def serve_forever(self) -> None:
        # Wait with a timeout rather than block in accept(): stop() cannot wake
        # accept() with shutdown(), because under socket activation the
        # listening socket is systemd's and must keep listening (and queueing
        # clients) for the next agent.
        while not self._stopping.is_set():
            try:
                if not select.select([self.sock], [], [], ACCEPT_POLL)[0]:
                    continue
                conn, _ = self.sock.accept()
            except (OSError, ValueError) as exc:
                if self._stopping.is_set():
                    return
                if isinstance(exc, OSError) and exc.errno in TRANSIENT_ACCEPT_ERRORS:
                    log.warning("cannot accept a connection now: %s", exc)
                    self._stopping.wait(0.1)
                    continue
                raise
            self._accepted(conn)

    def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; wait up to ``grace`` seconds for calls in flight to answer.

        A submit or cancel takes milliseconds; a long poll (``job.wait``, a log
        follow) is cut when the grace runs out. Never ``shutdown()`` the
        listening socket: an activated one is shared with systemd, and shutting
        it down would refuse every later client.
        """
        self._stopping.set()
        self.sock.close()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, grace)

    @contextlib.contextmanager
    def in_flight(self):
        """Count a call (and the writing of its answer) as in flight."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _accepted(self, conn: socket.socket) -> None:
        """Check the peer and take a connection slot; serve it on a thread of its own.

        Runs on the accept loop, so a refused peer never costs a thread or a
        slot. Every failure here closes ``conn`` and nothing else.
        """
        try:
            peer = peer_of(conn)
            self.policy.check(peer)
        except Unauthorized as exc:
            log.warning(
                "refused connection from pid %d uid %d gid %d: %s",
                peer.pid,
                peer.uid,
                peer.gid,
                exc.message,
            )
            _refuse(conn, exc.code, exc.message)
            return
        except Exception:
            log.exception("cannot check a connecting peer")
            conn.close()
            return
        connection = Connection(conn, peer, self)
        if not self._take_slot(connection):
            log.warning(
                "refused connection from pid %d uid %d: max_connections (%d) reached",
                peer.pid,
                peer.uid,
                self.config.max_connections,
            )
            _refuse(conn, INVALID_REQUEST, "too many connections; try again later")
            return
        try:
            threading.Thread(
                target=self._serve, args=(connection,), name="connection", daemon=True
            ).start()
        except RuntimeError:  # no more threads
            self._release_slot(connection)
            _refuse(conn, INVALID_REQUEST, "the agent is overloaded; try again later")

    def _take_slot(self, connection: Connection) -> bool:
        """Admit a connection within ``max_connections``.

        When all slots are taken, the connection that has waited longest
        without a call in progress (idle, or stalled half-way through a
        request) is closed to make room: clients that merely hold connections
        open cannot lock others out. Only calls in progress are never cut.
        """
        with self._slots:
            if len(self._connections) >= self.config.max_connections:
                idle = [c for c in self._connections if not c.busy]
                if not idle:
                    return False
                victim = min(idle, key=lambda c: c.last_active)
                self._connections.discard(victim)
                victim.evict()
                log.debug("closed idle connection of pid %d to make room", victim.peer.pid)
            self._connections.add(connection)
            return True

    def _release_slot(self, connection: Connection) -> None:
        with self._slots:
            self._connections.discard(connection)

    def _serve(self, connection: Connection) -> None:
        try:
            with connection.conn:
                connection.run()
        except OSError as exc:
            log.debug("connection ended: %s", exc)
        except Exception:
            log.exception("connection of pid %d failed", connection.peer.pid)
        finally:
            self._release_slot(connection)
            with contextlib.suppress(Exception):
                self.service.release_thread()


class Connection:
    """One client: read lines, answer each, allow notifications in between.

    Memory stays bounded whatever the client sends: at most
    ``max_request_bytes`` plus one read are buffered. A request left
    incomplete for ``request_timeout`` seconds, or an answer the client does not
    read for as long, ends the connection.
    """

    def __init__(self, conn: socket.socket, peer: Peer, server: Server):
        self.conn = conn
        self.peer = peer
        self.server = server
        self.write_lock = threading.Lock()
        self.call = rpc.Call(
            service=server.service, peer=peer, notify=self.notify, closed=self.closed
        )
        #: Inside a call (never evicted); guarded by the server's slot lock.
        self.busy = False
        self.evicted = False
        self.last_active = time.monotonic()

    def evict(self) -> None:
        """Close this idle connection (called with the server's slot lock held)."""
        self.evicted = True
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)

    def _begin_call(self) -> bool:
        with self.server._slots:
            if self.evicted:
                return False
            self.busy = True
            return True

    def _end_call(self) -> None:
        with self.server._slots:
            self.busy = False
            self.last_active = time.monotonic()

    def run(self) -> None:
        config = self.server.config
        limit = config.max_request_bytes
        buffer = bytearray()
        scanned = 0  # bytes of ``buffer`` known to hold no newline
        deadline: float | None = None  # when the incomplete request in ``buffer`` times out
        while True:
            if deadline is None:
                self.conn.settimeout(None)
            else:
                self.conn.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                chunk = self.conn.recv(65536)
            except TimeoutError:
                _send_error(
                    self.conn,
                    None,
                    INVALID_REQUEST,
                    f"request incomplete after {config.request_timeout:g}s (request_timeout); "
                    "closing",
                )
                return
            if not chunk or self.evicted:
                return
            self.last_active = time.monotonic()
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", scanned)) >= 0:
                line = bytes(buffer[start:end])
                start = scanned = end + 1
                deadline = None
                if len(line) > limit:
                    self._too_large(limit)
                    return
                if line.strip():
                    if not self._begin_call():
                        return
                    try:
                        with self.server.in_flight():
                            self._answer(line)
                    finally:
                        self._end_call()
                if self.server._stopping.is_set():
                    return  # answered; take no new calls while stopping
            del buffer[:start]
            scanned = len(buffer)
            if len(buffer) > limit:
                self._too_large(limit)
                return
            if buffer and deadline is None and config.request_timeout:
                deadline = time.monotonic() + config.request_timeout

    def _answer(self, line: bytes) -> None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self._write(_error_text(None, -32700, "Parse error", "request is not valid UTF-8"))
            return
        try:
            reply = rpc.handle(text, self.call)
        except Exception:  # rpc.handle answers everything; this is the last resort
            log.exception("unexpected failure answering a request")
            reply = _error_text(None, INTERNAL_ERROR, "Internal error")
        if reply:
            self._write(reply)

    def _too_large(self, limit: int) -> None:
        log.warning(
            "closing the connection of pid %d uid %d: a request is over max_request_bytes (%d)",
            self.peer.pid,
            self.peer.uid,
            limit,
        )
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
        # A client that stops reading must not hold this thread forever: the
        # write times out (and the connection ends) after request_timeout.
        timeout = self.server.config.request_timeout or None
        with self.write_lock:
            self.conn.settimeout(timeout)
            self.conn.sendall(text.encode() + b"\n")


def _error_text(req_id, code: int, message: str, data=None) -> str:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "error": error, "id": req_id})


def _send_error(conn: socket.socket, req_id, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(_error_text(req_id, code, message).encode() + b"\n")


def _refuse(conn: socket.socket, code: int, message: str) -> None:
    """Answer a connection we will not serve with one error, then close it."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)  # the accept loop must never wait on a client
    _send_error(conn, None, code, message)
    conn.close()

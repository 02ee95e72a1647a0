"""The accept loop: check each peer, give it a connection slot and a thread.

One JSON-RPC text per line each way (connection.py frames them). Who may
connect is peers.py's policy, the listening socket listener.py's; this module
owns the connection slots (``max_connections``, evicting the longest idle)
and a graceful stop. What a request means is rpc.py's business.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import threading
import time

from agent.api.connection import Connection, refuse
from agent.api.listener import raise_fd_limit
from agent.api.peers import AccessPolicy, peer_of
from agent.api.schedules import Schedules
from agent.api.service import Service
from agent.config import Config
from agent.protocol.errors import INVALID_REQUEST, Unauthorized

log = logging.getLogger(__name__)

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


class Server:
    """Serves one listening socket until ``stop()``."""

    def __init__(self, sock: socket.socket, service: Service, schedules: Schedules, config: Config):
        self.sock = sock
        self.service = service
        self.schedules = schedules
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
            refuse(conn, exc.code, exc.message)
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
            refuse(conn, INVALID_REQUEST, "too many connections; try again later")
            return
        try:
            threading.Thread(
                target=self._serve, args=(connection,), name="connection", daemon=True
            ).start()
        except RuntimeError:  # no more threads
            self._release_slot(connection)
            refuse(conn, INVALID_REQUEST, "the agent is overloaded; try again later")

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

    def begin_call(self, connection: Connection) -> bool:
        """Mark ``connection`` inside a call; False if it was evicted meanwhile."""
        with self._slots:
            if connection.evicted:
                return False
            connection.busy = True
            return True

    def end_call(self, connection: Connection) -> None:
        with self._slots:
            connection.busy = False
            connection.last_active = time.monotonic()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

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

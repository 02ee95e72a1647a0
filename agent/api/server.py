"""The accept loop: check each peer, give it a connection slot and a thread.

One JSON-RPC text per line each way (connection.py frames them). Who may
connect is peers.py's policy, the listening socket listener.py's; this module
owns the connection slots (``max_connections``, ``max_connections_per_uid``;
which connection gives way is agent/rules/fairness.py's choice) and a graceful
stop. What a request means is rpc.py's business.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
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
from agent.rules import fairness

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
        self.agent_uid = os.getuid()
        self._connections: set[Connection] = set()
        #: Guards the slots, each connection's busy/evicted/last_active and the
        #: count of calls in flight: one lock, taken once as a call begins and
        #: once as it ends (a lock per concern cost a hand-off each, per call).
        self._slots = threading.Lock()
        raise_fd_limit(config.max_connections)
        self._stopping = threading.Event()
        self._in_flight = 0
        self._idle = threading.Condition(self._slots)

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
        refusal = self._take_slot(connection)
        if refusal:
            log.warning("refused connection from pid %d uid %d: %s", peer.pid, peer.uid, refusal)
            refuse(conn, INVALID_REQUEST, f"too many connections: {refusal}; try again later")
            return
        try:
            threading.Thread(
                target=self._serve, args=(connection,), name="connection", daemon=True
            ).start()
        except RuntimeError:  # no more threads
            self._release_slot(connection)
            refuse(conn, INVALID_REQUEST, "the agent is overloaded; try again later")

    def _take_slot(self, connection: Connection) -> str | None:
        """Admit a connection, fairly between uids; returns why not (None: admitted).

        A uid holds at most ``max_connections_per_uid`` (root and the agent's
        user: any number): past it, that uid's own longest-idle connection is
        closed to make room, and with all of them inside calls the newcomer is
        refused. When all ``max_connections`` are taken, the uid holding the
        most gives way (fairness.py chooses): its longest-idle connection is
        closed, or, when all of its connections are inside calls, the one in
        a call the longest. So no uid can lock out another, and root and the
        agent's user always get in.
        """
        config = self.config
        with self._slots:
            victim = fairness.victim(
                self._connections,
                connection.peer.uid,
                privileged=(0, self.agent_uid),
                per_uid=config.max_connections_per_uid,
                total=config.max_connections,
            )
            if isinstance(victim, str):
                return victim
            if victim is not None:
                self._connections.discard(victim)
                victim.evict()
                log.info(
                    "closed a connection of uid %d (pid %d) to make room for uid %d",
                    victim.peer.uid,
                    victim.peer.pid,
                    connection.peer.uid,
                )
            self._connections.add(connection)
            return None

    def _release_slot(self, connection: Connection) -> None:
        with self._slots:
            self._connections.discard(connection)

    def begin_call(self, connection: Connection) -> bool:
        """Mark ``connection`` inside a call, counted in flight until ``end_call``
        (the writing of its answer included); False if it was evicted meanwhile."""
        with self._slots:
            if connection.evicted:
                return False
            connection.busy = True
            self._in_flight += 1
            return True

    def end_call(self, connection: Connection) -> None:
        """The call ``begin_call`` admitted has answered."""
        with self._slots:
            connection.busy = False
            connection.last_active = time.monotonic()
            self._in_flight -= 1
            if self._stopping.is_set():
                self._idle.notify_all()  # stop() waits for the last one

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

"""One client connection: line framing, answers in order, notifications in between.

Bounded whatever the client sends: a request larger than ``max_request_bytes``
or left incomplete for ``request_timeout`` ends the connection with one error
line. What a request means is rpc.py's business; accepting connections and
their slots is server.py's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
from typing import Any, Protocol

from agent.api import rpc
from agent.api.peers import Peer
from agent.api.schedules import Schedules
from agent.api.service import Service
from agent.config import Config
from agent.protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR

log = logging.getLogger(__name__)


class Host(Protocol):
    """What a connection needs of its server (agent.api.server.Server)."""

    service: Service
    schedules: Schedules
    config: Config

    @property
    def stopping(self) -> bool: ...

    def begin_call(self, connection: Connection) -> bool: ...

    def end_call(self, connection: Connection) -> None: ...


class Connection:
    """One client: read lines, answer each, allow notifications in between.

    Memory stays bounded whatever the client sends: at most
    ``max_request_bytes`` plus one read are buffered. A request left
    incomplete for ``request_timeout`` seconds, or an answer the client does not
    read for as long, ends the connection.
    """

    def __init__(self, conn: socket.socket, peer: Peer, server: Host):
        self.conn = conn
        self.peer = peer
        self.server = server
        self.write_lock = threading.Lock()
        self.call = rpc.Call(
            service=server.service,
            schedules=server.schedules,
            peer=peer,
            notify=self.notify,
            closed=self.closed,
        )
        #: Inside a call (closed only to make room when its uid holds the most
        #: connections, agent/rules/fairness.py); guarded by the server's slot lock.
        self.busy = False
        self.evicted = False
        self.last_active = time.monotonic()
        #: The socket's timeout as last set: set again only when it changes, as
        #: each settimeout() is a system call (and a hand-off of the GIL).
        self._timeout: float | None = None
        conn.settimeout(None)

    @property
    def uid(self) -> int:
        """The peer's uid, which the connection slots are shared between."""
        return self.peer.uid

    def evict(self) -> None:
        """Close this connection to make room (called with the server's slot lock
        held); a call in progress sees its client gone and ends."""
        self.evicted = True
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        config = self.server.config
        limit = config.max_request_bytes
        buffer = bytearray()
        scanned = 0  # bytes of ``buffer`` known to hold no newline
        deadline: float | None = None  # when the incomplete request in ``buffer`` times out
        while True:
            # Wait for the client with no database connection held: the clients'
            # threads then share the few that are inside a call at once, each
            # warm (schema read, pages cached), instead of one each, opened
            # cold, per client (as many as 50 at once took more than the calls).
            self.server.service.release_thread()
            self._set_timeout(None if deadline is None else max(0.001, deadline - time.monotonic()))
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
                    if not self.server.begin_call(self):
                        return
                    try:
                        self._answer(line)
                    finally:
                        self.server.end_call(self)
                if self.server.stopping:
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
            self._write(_error_text(None, PARSE_ERROR, "Parse error", "request is not valid UTF-8"))
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

    def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification (a streaming call's line or event) before the answer."""
        self._write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    def closed(self) -> bool:
        """True once the client hung up (checked by long streaming calls)."""
        # POLLHUP means the peer closed both directions; a client that only
        # shut its writing side (socat after stdin ends) still reads replies.
        poller = select.poll()
        poller.register(self.conn, select.POLLHUP | select.POLLERR)
        return any(mask & (select.POLLHUP | select.POLLERR) for _, mask in poller.poll(0))

    def _write(self, text: str) -> None:
        data = text.encode() + b"\n"
        with self.write_lock:
            # An answer usually fits the socket's buffer: one send, no waiting.
            try:
                sent = self.conn.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                # A client that stops reading must not hold this thread forever: the
                # write times out (and the connection ends) after request_timeout.
                self._set_timeout(self.server.config.request_timeout or None)
                self.conn.sendall(memoryview(data)[sent:])

    def _set_timeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:
            self.conn.settimeout(timeout)
            self._timeout = timeout


def _error_text(req_id, code: int, message: str, data=None) -> str:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return json.dumps({"jsonrpc": "2.0", "error": error, "id": req_id})


def _send_error(conn: socket.socket, req_id, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(_error_text(req_id, code, message).encode() + b"\n")


def refuse(conn: socket.socket, code: int, message: str) -> None:
    """Answer a connection we will not serve with one error, then close it."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)  # the accept loop must never wait on a client
    _send_error(conn, None, code, message)
    conn.close()

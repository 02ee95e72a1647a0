"""A fault-injecting relay in front of the Podman API socket.

The agent is pointed at the relay's Unix socket instead of Podman's; every
HTTP request passes through to the real service, and a test chooses what goes
wrong on the way: the reply of a chosen endpoint comes late, never comes, or
the connection drops after Podman acted; or a callback runs (e.g. SIGKILL the
agent) when a chosen request passes.

Each request gets a connection of its own to Podman, sent with ``Connection:
close``, and its reply is returned with ``Connection: close`` too: then a
reply ends where Podman's connection ends (streams such as the event stream
and pulls included), and the relay never has to parse a response body. HTTP
clients reconnect per request, which costs nothing on a Unix socket.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: How much a relay reads at a time.
CHUNK = 65536


@dataclass(frozen=True)
class Request:
    """One request as it passes the relay."""

    method: str
    path: str


@dataclass
class Rule:
    """What to do to the requests that match ``method`` and ``path`` (a regex).

    Args:
        method: the HTTP method, or "*".
        path: a regular expression searched in the request path (query included).
        delay: seconds to hold the reply after Podman answered.
        hang: never answer (Podman still acts); the client's timeout ends it.
        drop: close the client's connection once Podman acted, with no reply.
        before: called with the request before it is sent on.
        after: called with the request once Podman answered, before the reply.
        when: which matching requests the rule applies to (by 1-based count);
            None: all of them.
    """

    method: str
    path: str
    delay: float = 0.0
    hang: bool = False
    drop: bool = False
    before: Callable[[Request], None] | None = None
    after: Callable[[Request], None] | None = None
    when: Callable[[int], bool] | None = None
    matched: int = field(default=0, init=False)

    def applies(self, request: Request) -> bool:
        """Count a matching request; True when the rule is to act on this one."""
        if self.method not in ("*", request.method) or not re.search(self.path, request.path):
            return False
        self.matched += 1
        return self.when is None or self.when(self.matched)


class PodmanRelay:
    """A relay from a socket of its own to ``upstream`` (Podman's API socket path).

    Args:
        upstream: the path of Podman's API socket.
        path: where the relay listens.
    """

    def __init__(self, upstream: str, path: Path):
        self.upstream = upstream
        self.path = path
        self.url = f"unix://{path}"
        self.rules: list[Rule] = []
        #: Every request that passed, in order.
        self.seen: list[Request] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.bind(str(path))
        self._sock.listen(128)
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)

    def start(self) -> PodmanRelay:
        self._thread.start()
        return self

    def add(self, rule: Rule) -> Rule:
        """Apply ``rule`` to requests from now on (rules are tried in order; the
        first that applies wins)."""
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Let every request through again, and answer those left hanging."""
        with self._lock:
            self.rules.clear()

    def count(self, method: str, path: str) -> int:
        """How many requests matching ``method`` and the ``path`` regex passed."""
        with self._lock:
            return sum(1 for r in self.seen if r.method == method and re.search(path, r.path))

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)

    # -- serving ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # A client that hung up (or a Podman that went away) ends the relay of
        # that one request, as it would end a direct connection.
        with contextlib.ExitStack() as stack, contextlib.suppress(OSError):
            stack.enter_context(client)
            head, body = _read_request(client)
            if head is None:
                return
            request = _parse(head)
            with self._lock:
                self.seen.append(request)
                rule = next((r for r in self.rules if r.applies(request)), None)
            if rule and rule.before:
                rule.before(request)
            upstream = stack.enter_context(socket.socket(socket.AF_UNIX))
            upstream.connect(self.upstream)
            upstream.sendall(_closing_head(head) + body)
            first = _read_reply_head(upstream)
            if rule:
                if rule.after:
                    rule.after(request)
                if rule.drop:
                    return
                if rule.hang:
                    self._hold(rule)
                    return
                if rule.delay:
                    self._closing.wait(rule.delay)
            client.sendall(_closing_head(first))
            while chunk := upstream.recv(CHUNK):
                client.sendall(chunk)

    def _hold(self, rule: Rule) -> None:
        """Wait until ``rule`` is cleared or the relay closes (then drop the reply)."""
        while not self._closing.wait(0.05):
            with self._lock:
                if rule not in self.rules:
                    return


def _read_request(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """Read one request: its head (through the blank line) and its whole body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(CHUNK)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    head += b"\r\n\r\n"
    headers = head.decode("latin-1").lower()
    length = re.search(r"\r\ncontent-length:\s*(\d+)", headers)
    if length:
        need = int(length.group(1))
        while len(rest) < need:
            chunk = sock.recv(CHUNK)
            if not chunk:
                break
            rest += chunk
        return head, rest
    if re.search(r"\r\ntransfer-encoding:\s*chunked", headers):
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(CHUNK)
            if not chunk:
                break
            rest += chunk
    return head, rest


def _read_reply_head(sock: socket.socket) -> bytes:
    """Read the reply up to and including its blank line (and whatever came with it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(CHUNK)
        if not chunk:
            break
        data += chunk
    return data


def _parse(head: bytes) -> Request:
    method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return Request(method, path)


def _closing_head(message: bytes) -> bytes:
    """``message`` (a head, maybe with body bytes after it) with ``Connection: close``."""
    head, sep, rest = message.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + sep + rest if sep else message

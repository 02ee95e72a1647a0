"""One JSON-RPC connection to the agent's socket: where it is, connect, call, stream.

Untyped: ``call(method, **params)``; the typed methods over it are
agent.client.Client's. Errors come back as the ``ChooError`` subclasses of
agent.protocol.errors. Deliberately light on imports: chooctl starts with
every command.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.protocol.errors import AgentUnavailable, ProtocolError, from_response

SYSTEM_SOCKET = "/run/choo/agent.sock"
SYSTEM_GROUP = "choo"


def default_socket() -> str:
    """Where chooctl looks for the agent.

    ``$CHOO_SOCKET`` if set; the system agent's ``/run/choo/agent.sock`` for
    root and members of group ``choo`` (when it exists); otherwise the
    per-user agent's ``$XDG_RUNTIME_DIR/choo/agent.sock``.
    """
    if os.environ.get("CHOO_SOCKET"):
        return os.environ["CHOO_SOCKET"]
    user_socket = None
    if os.environ.get("XDG_RUNTIME_DIR"):
        user_socket = os.path.join(os.environ["XDG_RUNTIME_DIR"], "choo", "agent.sock")
    # The group's lookup last: it may ask NSS (systemd-userdb) when no group file has it.
    if (os.path.exists(SYSTEM_SOCKET) or user_socket is None) and _in_system_group():
        return SYSTEM_SOCKET
    return user_socket or f"/tmp/choo-{os.getuid()}/agent.sock"


def _in_system_group() -> bool:
    if os.getuid() == 0:
        return True
    try:
        gid = grp.getgrnam(SYSTEM_GROUP).gr_gid
    except KeyError:
        return False
    return gid in os.getgroups() or gid == os.getgid()


class Connection:
    """One connection to the agent, opened at the first call; calls are answered in order.

    After the agent hangs up, the next call connects again.
    """

    def __init__(self, path: str | os.PathLike | None = None, timeout: float | None = None):
        self.path = str(path or default_socket())
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader = None
        self._next_id = 0

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._reader = None

    def _connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect_waiting(sock)
        except FileNotFoundError:
            sock.close()
            raise AgentUnavailable(
                f"no agent socket at {self.path}; is choo-agent running? "
                "(start it with 'make run' or 'systemctl start choo-agent', "
                "or point --socket/CHOO_SOCKET at it)"
            ) from None
        except PermissionError:
            sock.close()
            raise AgentUnavailable(
                f"permission denied on {self.path}; ask for membership in group {SYSTEM_GROUP}"
            ) from None
        except OSError as exc:
            sock.close()
            raise AgentUnavailable(
                f"cannot connect to {self.path}: {exc.strerror or exc}"
            ) from None
        self._sock = sock
        self._reader = sock.makefile("rb")

    def _connect_waiting(self, sock: socket.socket) -> None:
        """connect(), waiting while the agent's accept queue is full.

        With a timeout the socket is non-blocking, and a Unix socket whose
        backlog is full answers EAGAIN at once instead of waiting.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                sock.connect(self.path)
                return
            except BlockingIOError:
                if deadline is not None and time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def call(self, method: str, **params: Any) -> Any:
        """Call a method and return its result.

        Raises:
            ChooError: the agent's error, as its subclass (NoSuchJob, ...).
            AgentUnavailable: the socket cannot be reached or closed mid-call.
        """
        return self.stream(method, params, None)

    def stream(
        self,
        method: str,
        params: dict[str, Any],
        on_notification: Callable[[str, Any], None] | None,
    ) -> Any:
        """Call a method that may send notifications before its response.

        Args:
            on_notification: gets each notification's method and params; an
                exception it raises ends the call (and is raised here).

        Raises:
            ChooError: as for ``call``.
        """
        self._connect()
        self._next_id += 1
        request_id = self._next_id
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            # The agent may have refused the connection (unauthorized, too
            # many connections) and closed it before we wrote: its one error
            # line, if any, says why.
            refusal = self._pending_error()
            self.close()
            if refusal is not None:
                raise from_response(refusal) from None
            raise AgentUnavailable(f"the agent hung up: {exc}") from None
        while True:
            message = self._read()
            if "id" not in message and "method" in message:
                if on_notification is not None:
                    on_notification(message["method"], message.get("params"))
                continue
            if "error" in message:
                if message.get("id") not in (request_id, None):
                    raise ProtocolError(f"answer to request {message.get('id')}, not {request_id}")
                raise from_response(message["error"])
            if message.get("id") != request_id:
                raise ProtocolError(f"answer to request {message.get('id')}, not {request_id}")
            return message.get("result")

    def _pending_error(self) -> dict[str, Any] | None:
        """The error object of an answer already waiting on a dead connection."""
        try:
            self._sock.settimeout(1.0)
            line = self._reader.readline()
            message = json.loads(line)
        except (OSError, ValueError):
            return None
        error = message.get("error") if isinstance(message, dict) else None
        return error if isinstance(error, dict) else None

    def _read(self) -> dict[str, Any]:
        try:
            line = self._reader.readline()
        except OSError as exc:
            self.close()
            raise AgentUnavailable(f"lost the connection to the agent: {exc}") from None
        if not line:
            self.close()
            raise AgentUnavailable("the agent closed the connection (did it stop?)")
        try:
            message = json.loads(line)
        except ValueError:
            raise ProtocolError(
                f"the agent sent something that is not JSON: {line[:200]!r}"
            ) from None
        if not isinstance(message, dict):
            raise ProtocolError(f"unexpected message from the agent: {line[:200]!r}")
        return message

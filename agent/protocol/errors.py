"""The one exception hierarchy of choo, shared by agent, client and CLI.

Every error a user can cause is a ``ChooError`` subclass with a stable JSON-RPC
code. The server turns them into error responses (rpc.py), the client turns
error responses back into the same classes (``from_response``), and chooctl
prints their message and exits 125. The codes are part of the wire protocol:
never renumber one.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 reserved codes, for reference by server and client.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class ChooError(Exception):
    """Base class: a failure with a stable code and a message a user can act on."""

    code = INTERNAL_ERROR

    def __init__(self, message: str, data: Any = None):
        super().__init__(message)
        self.message = message
        self.data = data


class InvalidParams(ChooError):
    """The request's parameters (including a job spec) are wrong."""

    code = INVALID_PARAMS


class NoSuchJob(ChooError):
    code = -32001


class AmbiguousPrefix(ChooError):
    code = -32002


class QueueFull(ChooError):
    code = -32003


class InvalidTransition(ChooError):
    code = -32004


class PodmanUnavailable(ChooError):
    code = -32005


class Unauthorized(ChooError):
    code = -32006


class StorageError(ChooError):
    """The database could not be written (disk full, read-only, locked)."""

    code = -32007


class NoSuchSchedule(ChooError):
    code = -32008


class ImageError(ChooError):
    """Agent side: the job's image is missing and may not, or could not, be pulled."""


class CreateError(ChooError):
    """Agent side: Podman refused to create or start a job's container."""


class AgentUnavailable(ChooError):
    """Client side: the agent's socket could not be reached or hung up."""

    code = -32010


class ProtocolError(ChooError):
    """Client side: the agent answered something that is not JSON-RPC."""

    code = -32011


_BY_CODE: dict[int, type[ChooError]] = {
    cls.code: cls
    for cls in (
        InvalidParams,
        NoSuchJob,
        AmbiguousPrefix,
        QueueFull,
        InvalidTransition,
        PodmanUnavailable,
        Unauthorized,
        StorageError,
        NoSuchSchedule,
    )
}


def from_response(error: dict) -> ChooError:
    """Rebuild the exception a JSON-RPC error object stands for.

    Args:
        error: the ``error`` member of a JSON-RPC response.

    Returns:
        An instance of the matching ``ChooError`` subclass (``ChooError`` itself
        for codes this client does not know).
    """
    code = error.get("code", INTERNAL_ERROR)
    message = str(error.get("message", "unknown error"))
    data = error.get("data")
    if code == INVALID_PARAMS and isinstance(data, str) and data:
        message = f"{message}: {data}"
    cls = _BY_CODE.get(code, ChooError)
    exc = cls(message, data)
    exc.code = code
    return exc

"""How a job's output travels over the socket: log entries and their cursors.

An entry (``types.LogEntry``) carries bytes one stream of the job wrote,
exactly: as ``text`` when they are valid UTF-8, else as ``data``, their
base64. Its ``cursor``, ``"<attempt>:<offset>"``, is where the output after
the entry begins; a reader resumes there (``job.logs`` ``after``). The agent
builds entries with ``entry``, a client turns one back into bytes with
``entry_bytes``: both read this one definition. Pure data, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the TypedDicts cost chooctl's start to build
    from agent.protocol import types

STREAMS = ("stdout", "stderr")
#: ``<attempt>:<end offset>``, both whole numbers.
_CURSOR = re.compile(r"(\d{1,9}):(\d{1,19})")


def format_cursor(attempt: int, offset: int) -> str:
    """The cursor of the output up to ``offset`` in attempt ``attempt``'s log."""
    return f"{attempt}:{offset}"


def parse_cursor(cursor: Any) -> tuple[int, int] | None:
    """``(attempt, offset)`` of a cursor, or None if it is not one."""
    if not isinstance(cursor, str):
        return None
    match = _CURSOR.fullmatch(cursor)
    return (int(match[1]), int(match[2])) if match else None


def entry(stream: str, time: float, cursor: str, data: bytes) -> types.LogEntry:
    """The entry carrying ``data``, written to ``stream`` at ``time`` (seconds)."""
    out: dict[str, Any] = {"stream": stream, "time": time, "cursor": cursor}
    try:
        out["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["data"] = base64.b64encode(data).decode("ascii")
    return out  # type: ignore[return-value]


def entry_bytes(entry: Any) -> bytes:
    """The exact bytes an entry carries (b"" for anything that is not an entry)."""
    if not isinstance(entry, dict):
        return b""
    text = entry.get("text")
    if isinstance(text, str):
        # The agent sends only valid UTF-8 as text; "replace" is for anything else.
        return text.encode("utf-8", errors="replace")
    data = entry.get("data")
    if isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return b""
    return b""

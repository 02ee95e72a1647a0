"""How far one attempt's log is shipped: the shipper's bookkeeping, and the
facts about the file it reads (agent/runtime/shipper.py).

Kept in memory only (the database and the journal are told by the shipper);
this module reads a file's size and its reserve, and gives the reserve back,
never reads or ships a record.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from agent.adapters import log_space
from agent.rules.output_cap import Budget

log = logging.getLogger("choo-agent.shipper")


@dataclass
class Copy:
    """How far one attempt's log is shipped."""

    job_id: str
    number: int
    path: Path
    #: The end of the last record shipped: where the next one begins.
    offset: int
    #: What the database holds (None: nothing yet).
    saved: int | None
    #: The file's size when last read to its end (-1: read it again).
    seen: int = -1
    #: The attempt's container has ended: once shipped to the end, it is done.
    ended: bool = False
    #: The output the attempt kept under its job's max_log_bytes (None: no cap).
    budget: Budget | None = None
    #: The space reserved ahead of the file could not be topped up (disk full).
    no_room: bool = False
    #: Where the records conmon could not finish begin (each recorded once;
    #: joblogs ends each where the next record begins).
    torn: frozenset[int] = frozenset()


def size_of(path: Path) -> int:
    """The file's size (0 for a file that is gone: its job was removed)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def torn_tail(copy: Copy) -> bool:
    """Whether bytes after the last whole record are a record conmon could not
    finish: conmon is done (the attempt ended), or its write came back short."""
    return copy.ended or log_space.no_room(copy.path)


def release(path: Path) -> None:
    """Give back the space reserved ahead of an ended attempt's log."""
    try:
        log_space.release(path)
    except OSError as exc:
        log.warning("cannot release the space reserved for %s: %s", path, exc.strerror)

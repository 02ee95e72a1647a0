"""The shipper's mark of a clean stop: how far back a start must look for unshipped output.

At a clean stop the shipper writes, into ``SHIPPED_MARK`` in the state
directory, the submission time of the oldest job it still follows (a running
one included: it may end before the next start), or the time of the stop
when it follows none. Every ended job submitted before that time was shipped
to the journal to the end, so the next start reads only the ended jobs
submitted since (their IDs are ULIDs: a range of the primary key), not the
whole window of history. The start removes the mark as it reads it: after a
crash there is none, and the shipper looks back its whole window again.
Never reads a log or the database.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from ulid import ULID

log = logging.getLogger("choo-agent.shipper")

#: The mark's file name, in the state directory.
SHIPPED_MARK = "shipped-before"


def take_mark(path: Path | None) -> float:
    """The time the last clean stop left, and remove it.

    Args:
        path: the mark (None: none is kept).

    Returns:
        Seconds since the epoch; 0.0 when there is none (or it is unreadable).
    """
    if path is None:
        return 0.0
    try:
        text = path.read_text()
        path.unlink()
    except OSError:
        return 0.0
    try:
        return float(text)
    except ValueError:
        log.warning("ignoring %s: %r is not a time", path, text[:40])
        return 0.0


def leave_mark(path: Path | None, followed: Iterable[str]) -> None:
    """Write the mark of a clean stop (a failure is logged: the next start looks back further).

    Args:
        path: the mark (None: none is kept).
        followed: the IDs of the jobs whose output is still followed.
    """
    if path is None:
        return
    oldest = min((ULID.from_str(job_id).timestamp for job_id in followed), default=None)
    partial = path.with_name(path.name + ".tmp")
    try:
        partial.write_text(repr(time.time() if oldest is None else oldest))
        os.replace(partial, path)
    except OSError as exc:
        log.warning("could not leave %s (the next start looks back further): %s", path, exc)

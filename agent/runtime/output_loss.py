"""Output a log file lost, recorded on the job: never silent.

Two things can take output from an attempt's log behind the shipper's back: the
file is cut in place (Podman's ``log_size_max``), or conmon cannot write it
(the disk is full and the attempt's reserve, agent/adapters/log_space.py, is
used up: conmon writes what fits of a record and drops the rest). Each is an
``output-lost`` event on the job, with the bytes known lost added to its
``log_lost``; the shipper finds them, this module only records them (and
warns while a running attempt's reserve cannot be topped up), and says where
the records cut short begin, for the readers that end them there.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.adapters import log_space
from agent.protocol.errors import ChooError
from agent.storage.store import Store

log = logging.getLogger("choo-agent.shipper")

#: The event recording output a log file lost.
LOST_EVENT = "output-lost"


class OutputLoss:
    """Records lost output on jobs.

    Args:
        store: the jobs database.
    """

    def __init__(self, store: Store):
        self.store = store

    def cut(self, job_id: str, attempt: int, *, seen: int, size: int, unshipped: int) -> None:
        """The file shrank from ``seen`` bytes to ``size`` (cut in place)."""
        log.warning(
            "the log of job %s attempt %d was cut (%d bytes, now %d): output lost",
            job_id,
            attempt,
            seen,
            size,
        )
        self._record(
            job_id,
            seen,
            {
                "attempt": attempt,
                "bytes": seen,
                "unshipped": unshipped,
                "message": "the job's log file was cut (Podman's log_size_max?); the journal"
                " keeps what was shipped before",
            },
        )

    def torn(self, job_id: str, attempt: int, *, offset: int, size: int) -> None:
        """conmon wrote only the start of the record at ``offset`` (the file ends,
        or stalls on a full disk, at ``size``): the rest of it, and whatever
        the job wrote until space came back, is lost. Recorded once per record,
        also across restarts."""
        try:
            events = self.store.events(job_id)
        except ChooError:
            return
        if offset in torn_offsets(events, attempt):
            return
        log.error(
            "the log of job %s attempt %d could not be written (disk full): output lost"
            " from byte %d",
            job_id,
            attempt,
            offset,
        )
        self._record(
            job_id,
            size - offset,
            {
                "attempt": attempt,
                "offset": offset,
                "bytes": size - offset,
                "message": "the disk was full and the job's log had no space left: a record"
                " was cut short, and output written until space came back is lost (how much"
                " is not known); free space on the agent's state directory",
            },
        )

    def torn_at(self, job_id: str, attempt: int) -> frozenset[int]:
        """Where the records conmon cut short in an attempt's log begin, as
        recorded (none for a job that is gone)."""
        try:
            return torn_offsets(self.store.events(job_id), attempt)
        except ChooError:
            return frozenset()

    def keep_room(self, job_id: str, path: Path, short: bool) -> bool:
        """Top up the space reserved ahead of a running attempt's log.

        Args:
            job_id: the attempt's job.
            path: the attempt's log.
            short: the last top-up failed (and was warned about).

        Returns:
            Whether this top-up failed (the disk is full).
        """
        try:
            log_space.top_up(path)
        except OSError as exc:
            if not short:
                log.warning(
                    "cannot reserve space for the output of job %s (%s): %d bytes of"
                    " reserve left before its output is lost",
                    job_id,
                    exc.strerror,
                    log_space.ahead(path),
                )
            return True
        if short:
            log.info("space for the output of job %s is reserved again", job_id)
        return False

    def _record(self, job_id: str, lost: int, detail: dict[str, Any]) -> None:
        try:
            self.store.note(job_id, LOST_EVENT, detail)
            before = self.store.get(job_id).get("log_lost") or 0
            self.store.update(job_id, log_lost=before + lost)
        except ChooError as exc:
            log.error("cannot record lost output of job %s: %s", job_id, exc.message)


def torn_offsets(events: list[dict[str, Any]], attempt: int) -> frozenset[int]:
    """Where, by a job's ``events``, the records conmon cut short in the log of
    ``attempt`` begin (agent/adapters/joblogs.py ends them there)."""
    return frozenset(
        detail["offset"]
        for detail in (e["detail"] or {} for e in events if e["kind"] == LOST_EVENT)
        if detail.get("attempt") == attempt and isinstance(detail.get("offset"), int)
    )

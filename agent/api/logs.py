"""``job.logs``: a job's output read back from its attempts' k8s-file logs.

Each attempt of a job has its own log (agent.adapters.joblogs), which conmon
writes and nothing rewrites, so the files are the job's output, exactly.
This module turns their records into the protocol's entries (consecutive
records of one stream coalesced, up to ENTRY_BYTES each), one attempt after
the other: a page of them (at most about PAGE_BYTES, so no reply holds a
whole log), or all of them as they are written (``follow``), until the job
has ended and every file is read to its end. Memory stays bounded whatever
a log's size. It never decides when a job ended (the caller says so) and
never writes a file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from agent.adapters.joblogs import (
    RECORD,
    JobLogs,
    blocks,
    count_kept,
    parse_time,
    pieces,
    suspect,
    tail_position,
)
from agent.api.log_runs import ENTRY_BYTES, admit_run, plain_run
from agent.protocol import types
from agent.protocol.errors import ChooError, InvalidParams
from agent.protocol.output import entry, format_cursor, parse_cursor
from agent.rules.output_cap import Budget
from agent.runtime.output_wakes import FALLBACK

log = logging.getLogger(__name__)

#: About the most bytes of output one non-follow reply carries.
PAGE_BYTES = 1 << 20
#: One line of a log file (its bytes may hold a carriage return, never a newline).
LINE = re.compile(rb"[^\n]*\n")


def no_cuts(attempt: int) -> frozenset[int]:
    """No record of ``attempt`` was cut short (the default ``torn``)."""
    return frozenset()


class Reading:
    """A position in a job's output, moved on by reading entries from it.

    Args:
        logs: where the job's attempts keep their logs.
        job_id: the job.
        attempt: the attempt to begin with (earlier ones are skipped).
        offset: where to begin in that attempt's log (later ones begin at 0).
        since: skip records read before this time (seconds), if set.
        cap: the job's ``max_log_bytes`` (0: none): no record past an
            attempt's cut is read, even before the shipper truncated the file.
        torn: where an attempt's records conmon cut short begin, as recorded
            (asked only of a block that may hold one): each ends where the
            next record begins.
    """

    def __init__(
        self,
        logs: JobLogs,
        job_id: str,
        attempt: int,
        offset: int,
        since: float | None = None,
        cap: int = 0,
        torn: Callable[[int], frozenset[int]] = no_cuts,
    ):
        self.logs = logs
        self.torn = torn
        self.job_id = job_id
        self.attempt = attempt
        self.offset = offset
        self.since = since
        self.cap = cap
        self._budgets: dict[int, Budget] = {}

    @property
    def path(self) -> Path:
        """The log of the attempt the position is in."""
        return self.logs.path(self.job_id, self.attempt)

    @property
    def cut(self) -> bool:
        """Whether some attempt read so far was cut at the job's cap."""
        return any(budget.cut is not None for budget in self._budgets.values())

    @classmethod
    def tail(
        cls,
        logs: JobLogs,
        job_id: str,
        lines: int,
        since: float | None,
        cap: int = 0,
        torn: Callable[[int], frozenset[int]] = no_cuts,
    ) -> Reading:
        """The position of the last ``lines`` lines of the job's output, all
        attempts counted, newest last (``torn`` as for ``Reading``)."""
        attempts = logs.attempts(job_id)
        wanted = lines
        for attempt in reversed(attempts):
            offset, found = tail_position(logs.path(job_id, attempt), wanted)
            if found >= wanted:
                return cls(logs, job_id, attempt, offset, since, cap, torn)
            wanted -= found
        return cls(logs, job_id, attempts[0] if attempts else 0, 0, since, cap, torn)

    def entries(self) -> Iterator[types.LogEntry]:
        """The entries written since the position, oldest first; the position
        moves past each as it is yielded. Ends at the end of what is written.

        Raises:
            ChooError: a log cannot be read (what the error says).
        """
        try:
            yield from self._entries()
        except OSError as exc:
            raise ChooError(f"cannot read the output of job {self.job_id}: {exc}") from exc

    def _entries(self) -> Iterator[types.LogEntry]:
        for attempt in self.logs.attempts(self.job_id):
            if attempt < self.attempt:
                continue
            if attempt > self.attempt:
                # A later attempt exists, so this one's container has ended and
                # its log is complete: what is left of it was read above.
                self.attempt, self.offset = attempt, 0
            yield from self._attempt_entries(self.logs.path(self.job_id, attempt), attempt)

    def _attempt_entries(self, path: os.PathLike, attempt: int) -> Iterator[types.LogEntry]:
        self._check_shrunk(path)
        pending = bytearray()
        stream = b""
        first_stamp = b""
        end = self.offset
        for run_end, stamp, run_stream, data in self._runs(path, attempt):
            if pending and (run_stream != stream or len(pending) + len(data) > ENTRY_BYTES):
                yield self._entry(stream, first_stamp, end, pending)
                pending = bytearray()
            if not pending:
                stream, first_stamp = run_stream, stamp
            pending += data
            end = run_end
        if pending:
            yield self._entry(stream, first_stamp, end, pending)

    def _runs(self, path: os.PathLike, attempt: int) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        """The output from the position on, in runs of records of one stream:
        (where the run ends, its first record's time stamp, its stream, its
        bytes, each at most ENTRY_BYTES); under a cap, only what comes before
        the attempt's cut.

        A block of plain records of one stream (``plain_run``) is one run, read
        without any work per record: a chatty job's output is mostly that.
        Anything else (two streams, a ``since``, a record cut short, a block
        near the cap) is read record by record, each a run of its own.
        """
        budget = None
        if self.cap:
            budget = self._budgets.setdefault(attempt, Budget(self.cap))
            count_kept(path, budget, self.offset)
        torn: frozenset[int] | None = None  # asked once a read: a job may print headers
        for start, block in blocks(path, self.offset):
            suspicious = suspect(block)
            if torn is None and suspicious:
                torn = self.torn(attempt)
            end = start + len(block)
            run = None
            if not (
                suspicious or self.since is not None or any(start <= t < end for t in torn or ())
            ):
                run = plain_run(block)
            if run is not None and admit_run(budget, start, end, len(run[2])):
                yield end, *run
                continue
            for at, record_end, part in block_records(block, start, torn or frozenset()):
                if part is None:  # the cut came within its header: no output in it
                    continue
                stamp, record_stream, tag, data = part.groups()
                data = (data or b"") + (b"\n" if tag == b"F" else b"")
                if budget is not None and not budget.admit(at, record_end, len(data)):
                    return
                if self.since is None or parse_time(stamp) >= self.since:
                    yield record_end, stamp, record_stream, data

    def _entry(self, stream: bytes, stamp: bytes, end: int, data: bytearray) -> types.LogEntry:
        self.offset = end
        cursor = format_cursor(self.attempt, end)
        return entry(stream.decode(), parse_time(stamp), cursor, bytes(data))

    def _check_shrunk(self, path: os.PathLike) -> None:
        """Start over at a log that is now shorter than the position.

        conmon truncates a log in place when it reaches containers.conf's
        ``log_size_max``: what it held is gone, and the new output starts at 0.
        """
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return
        if size < self.offset:
            log.warning(
                "job %s attempt %d: its log was cut to %d bytes from at least %d "
                "(log_size_max in containers.conf?); output in between is lost",
                self.job_id,
                self.attempt,
                size,
                self.offset,
            )
            self.offset = 0
            self._budgets.pop(self.attempt, None)  # the new content has the whole cap again


def block_records(
    block: bytes, start: int, torn: frozenset[int]
) -> Iterator[tuple[int, int, re.Match[bytes] | None]]:
    """Each record of a block of whole records that begins at ``start``: (where
    it begins, where it ends, its ``RECORD`` match, None for a piece that is no
    record). A line at a ``torn`` offset, and a line that is no record (conmon
    cut a record short within its header), go through ``pieces``: the record
    cut short ends where the next one's header begins."""
    read = 0  # how much of the block is read
    for match in RECORD.finditer(block):
        if match.start() > read:  # lines that are no record
            yield from _split(block[read : match.start()], start + read, torn)
        if start + match.start() in torn:
            yield from _split(match[0], start + match.start(), torn)
        else:
            yield start + match.start(), start + match.end(), match
        read = match.end()
    if read < len(block):
        yield from _split(block[read:], start + read, torn)


def _split(
    lines: bytes, start: int, torn: frozenset[int]
) -> Iterator[tuple[int, int, re.Match[bytes] | None]]:
    """``block_records`` of whole lines that may each hold a record cut short."""
    for line in LINE.finditer(lines):
        for begin, end, piece in pieces(line[0], start + line.start(), torn):
            yield begin, end, RECORD.match(piece)


def start(
    logs: JobLogs,
    job_id: str,
    *,
    tail: int | None,
    since: float | None,
    after: str | None,
    cap: int = 0,
    torn: Callable[[int], frozenset[int]] = no_cuts,
) -> Reading:
    """Where ``job.logs`` begins: after the ``after`` cursor, else at the last
    ``tail`` lines, else at the start; records before ``since`` are skipped,
    and none past an attempt's cut under ``cap`` (the job's ``max_log_bytes``);
    ``torn`` says where records conmon cut short begin (``Reading``).

    Raises:
        InvalidParams: ``after`` is not a cursor.
    """
    if after is not None:
        position = parse_cursor(after)
        if position is None:
            raise InvalidParams(
                "after: expected the cursor of an entry of this job's output (<attempt>:<offset>)"
            )
        return Reading(logs, job_id, *position, since, cap, torn)
    if tail is not None:
        return Reading.tail(logs, job_id, tail, since, cap, torn)
    return Reading(logs, job_id, 0, 0, since, cap, torn)


def page(reading: Reading) -> types.Logs:
    """At most about PAGE_BYTES of output from ``reading``; ``next`` when more remains."""
    out: list[types.LogEntry] = []
    size = 0
    entries = reading.entries()
    for item in entries:
        out.append(item)
        size += len(item.get("text") or item.get("data") or "")
        if size >= PAGE_BYTES:
            more = next(entries, None) is not None
            return {"entries": out, "next": out[-1]["cursor"] if more else None}
    return {"entries": out, "next": None}


def follow(
    reading: Reading,
    job_id: str,
    *,
    ended: Callable[[], bool],
    emit: Callable[[types.LogEntry], None],
    closed: Callable[[], bool],
    wait: Callable[[float], None],
    watch: Callable[[Path], None] = lambda path: None,
    idle: Callable[[], None] = lambda: None,
) -> int:
    """Pass each entry to ``emit`` as it is written, until the job has ended
    and its logs are read to their ends, or the client hung up.

    The end is known, not guessed: once ``ended()`` holds, the job's last
    container has exited and conmon has written all of its output, so one
    more read that finds nothing new is the end.

    Args:
        reading: where to begin.
        job_id: the job (each entry carries its ``id``).
        ended: whether the job has ended.
        emit: sends one entry.
        closed: whether the client hung up.
        wait: sleeps up to that many seconds, less when woken: by a write to
            the log last given to ``watch``, or by an event of the job
            (agent/runtime/output_wakes.py's ``Waiter``).
        watch: be woken by writes to this log from now on (called before
            each read of it, so a write after the read ends the next wait).
        idle: called before each wait, to give back what the follower holds
            only while it reads (its database connection: fifty followers
            waiting need none).

    Returns:
        How many entries were sent.
    """
    sent = 0
    while not closed():
        done = ended()  # before the read, so the read sees all of the output
        at = reading.attempt
        watch(reading.path)
        got = False
        for item in reading.entries():
            emit({"id": job_id, **item})
            sent += 1
            got = True
            if closed():
                return sent
        if not got:
            if done:
                break
            if reading.attempt == at:  # else watch the later attempt's log first
                idle()
                wait(FALLBACK)
    return sent

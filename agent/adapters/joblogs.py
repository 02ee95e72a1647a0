"""A job's output as conmon writes it: one k8s-file log per attempt.

Podman's ``k8s-file`` log driver has conmon append one record per read of the
container's stdout or stderr, ``<RFC 3339 time> <stdout|stderr> <F|P> <bytes>\\n``:
``F`` ends a line (its newline is not written), ``P`` is part of one (a line
longer than conmon's 8 KiB buffer, a read that came mid-line, or output that
does not end in a newline). Nothing is escaped, so the records give back the
job's bytes exactly: each ``F`` record's bytes plus a newline, each ``P``
record's bytes as they are.

This module only reads and names those files. Where a job's attempts keep
their logs is ``JobLogs``; what to do with the records (stream them to a
client, ship them to the journal) is for its callers. A record is complete
once its newline is on disk: a reader never returns the half of a record
conmon is still writing.

A record conmon *cut short* (the disk was full: its write came back short)
has no newline, so once space returns the next record is written right after
it and the two read as one line. Where the agent recorded such a cut (the
record's offset, agent/runtime/output_loss.py), or where the line is no
record at all (the cut came within its header: nothing else writes such a
line), the readers here end the cut record where the next record's header
(time, stream, tag) begins, so that record starts cleanly; in a line that is
a record, anywhere else, a header-like text is the job's output.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.adapters import log_space
from agent.rules.output_cap import Budget

#: What one read of the file takes at most; a record longer than this (conmon
#: writes at most 8 KiB of output per record) is still read whole.
READ_BLOCK = 1 << 16


@dataclass(frozen=True)
class Record:
    """One record of a k8s-file log.

    Attributes:
        offset: where the record starts in the file.
        end: where the next record starts.
        time: when conmon read the bytes (seconds since the epoch).
        stream: ``stdout`` or ``stderr``.
        data: the job's bytes, with the newline of a full line put back.
        partial: the bytes do not end a line.
    """

    offset: int
    end: int
    time: float
    stream: str
    data: bytes
    partial: bool


def parse_time(stamp: bytes) -> float:
    """Seconds since the epoch of conmon's ``2026-12-01T22:23:30.410197384+00:00``."""
    try:
        return datetime.fromisoformat(stamp.decode("ascii")).timestamp()
    except (UnicodeDecodeError, ValueError):
        return 0.0


def parse(line: bytes, offset: int, end: int | None = None) -> Record | None:
    """The record of one file line (its newline included), or None if it is not one;
    ``end`` is where it ends in the file (if not ``offset`` plus its length: a
    record cut short, whose newline is only put back)."""
    parts = line[:-1].split(b" ", 3)
    if len(parts) == 3:
        parts.append(b"")  # an empty line: "<time> stdout F" and nothing after the space
    if len(parts) != 4 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    stamp, stream, tag, data = parts
    partial = tag == b"P"
    return Record(
        offset=offset,
        end=offset + len(line) if end is None else end,
        time=parse_time(stamp),
        stream=stream.decode(),
        data=data if partial else data + b"\n",
        partial=partial,
    )


def records(path: Path, offset: int = 0, torn: frozenset[int] = frozenset()) -> Iterator[Record]:
    """The complete records of a log from ``offset`` on, oldest first.

    Reads in blocks (``blocks``), so memory stays bounded whatever the log's
    size; stops at the end of the last complete record (one conmon is still
    writing is left for the next call). A missing file has no records.
    ``torn``: where records conmon cut short begin (``pieces``).
    """
    for position, block in blocks(path, offset):
        start = 0
        while (newline := block.find(b"\n", start)) >= 0:
            line, at = block[start : newline + 1], position + start
            if at not in torn and (record := parse(line, at)) is not None:
                yield record  # the common case: one parse a line
            else:
                split = (parse(piece, begin, end) for begin, end, piece in pieces(line, at, torn))
                yield from (record for record in split if record is not None)
            start = newline + 1


#: conmon's record header: its time stamp, the stream, the tag.
HEADER = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) [FP][ \n]"
)


def suspect(block: bytes) -> bool:
    """Whether a block of whole records may hold a record cut short: more
    headers than lines (a cheap count; ``pieces`` then looks closer)."""
    return block.count(b" stdout ") + block.count(b" stderr ") > block.count(b"\n")


def pieces(line: bytes, offset: int, torn: frozenset[int]) -> list[tuple[int, int, bytes]]:
    """A file line as records to parse: (where each begins, where it ends, its
    line). One, unless the line begins at a ``torn`` offset or is no record,
    and another record's header follows within it: then the record cut short
    ends there (its newline put back) and the next one begins there."""
    end = offset + len(line)
    if offset not in torn and parse(line, offset) is not None:
        return [(offset, end, line)]
    header = HEADER.search(line, 1)
    if header is None:
        return [(offset, end, line)]
    cut = header.start()
    return [(offset, offset + cut, line[:cut] + b"\n"), (offset + cut, end, line[cut:])]


def at_boundary(path: Path, offset: int, torn: frozenset[int] = frozenset()) -> bool:
    """Whether ``offset`` is where a record begins: the file start, just after a
    newline, or where a record cut short (at a ``torn`` offset) ends."""
    if _after_newline(path, offset):
        return True
    return any(t < offset for t in torn) and end_of_record_at(path, offset, torn) is not None


def end_of_record_at(path: Path, offset: int, torn: frozenset[int] = frozenset()) -> int | None:
    """The end of the record that begins at ``offset``, or None if none begins there."""
    if _after_newline(path, offset):
        begin = offset
    else:  # only the end of a record cut short is a record's start mid-line
        starts = [t for t in torn if t < offset]
        if not starts:
            return None
        begin = max(starts)
    for record in records(path, begin, torn):
        if record.offset >= offset:
            return record.end if record.offset == offset else None
    return None


def _after_newline(path: Path, offset: int) -> bool:
    if offset == 0:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(offset - 1)
            return handle.read(1) == b"\n"
    except OSError:
        return False


def count_kept(path: Path, budget: Budget, offset: int) -> None:
    """Feed ``budget`` the records of a log before ``offset`` it has not counted
    yet, so a reader that starts mid-log (a resumed copy, a cursor, a tail)
    still knows where the attempt's output cap cuts it."""
    if budget.cut is not None or budget.end >= offset:
        return
    for record in records(path, budget.end):
        if record.offset >= offset or not budget.admit(record.offset, record.end, len(record.data)):
            return


#: One record, for readers that go through many at once (``blocks``): the
#: time, the stream, ``F`` or ``P``, and the bytes (absent for an empty line).
RECORD = re.compile(rb"^([^ \n]+) (stdout|stderr) ([FP])(?: ([^\n]*))?\n", re.MULTILINE)


def blocks(path: Path, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """The log from ``offset`` on in blocks of whole records: (where each
    starts, its bytes). Faster than ``records`` for a reader that matches
    ``RECORD`` over a block; the same bounded memory, the same unfinished last
    record left for the next call. A missing file has none."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, also on a generator's close
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        pending = b""
        position = offset
        while block := handle.read(READ_BLOCK):
            pending += block
            cut = pending.rfind(b"\n") + 1
            if cut:
                yield position, pending[:cut]
                position += cut
                pending = pending[cut:]


def cut_of(path: Path, cap: int) -> int | None:
    """Where the output cap ``cap`` (0: none) cuts a log, or None if it does not."""
    if not cap:
        return None
    budget = Budget(cap)
    count_kept(path, budget, 1 << 62)
    return budget.cut


def tail_offset(path: Path, lines: int, end: int | None = None) -> int:
    """Where the last ``lines`` lines of a log (up to ``end``, if given) begin
    (an offset for ``records``).

    A line is the records up to and including an ``F`` one; trailing ``P``
    records (output that ends without a newline) make one line more. Reads
    backwards in blocks, so the tail of a huge log costs what the tail is.
    """
    return tail_position(path, lines, end)[0]


def tail_position(path: Path, lines: int, end: int | None = None) -> tuple[int, int]:
    """``tail_offset``, and how many lines there are from there (fewer than
    ``lines`` when the whole log is shorter: the rest is in an earlier log)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0, 0
    with handle:
        size = _complete_size(handle, _until(handle, end))
        if lines <= 0:
            return size, 0
        counted = 0
        last = True
        for end, full in _backwards(handle, size):
            if last and not full:
                counted = 1  # the unfinished last line
            last = False
            if full:
                if counted == lines:
                    return end, counted  # just after the line before the wanted ones
                counted += 1
        return 0, counted


def tail_bytes(path: Path, lines: int, limit: int, end: int | None = None) -> bytes:
    """The job's bytes of the last ``lines`` lines of a log, at most the last ``limit``.

    Both streams, in the order written, up to ``end`` if given (an attempt's
    cut). ``limit`` keeps a log without newlines (or with huge lines) from
    being read whole: a record's bytes never hold a newline, so any newline
    in the file ends a record, and the first one within the last ``limit``
    bytes is a place to start.
    """
    start = tail_offset(path, lines, end)
    try:
        with open(path, "rb") as handle:
            size = _complete_size(handle, _until(handle, end))
            if size - start > limit:
                handle.seek(size - limit)
                newline = handle.read(READ_BLOCK).find(b"\n")
                start = size - limit + newline + 1 if newline >= 0 else size
    except FileNotFoundError:
        return b""
    out = bytearray()
    for record in records(path, start):
        if record.offset >= size:
            break
        out += record.data
    return bytes(out[-limit:])


def _until(handle, end: int | None) -> int:
    """The file's size, or ``end`` if that is less."""
    size = handle.seek(0, os.SEEK_END)
    return size if end is None else min(size, end)


def _complete_size(handle, size: int) -> int:
    """The end of the last complete record (conmon may be writing the next one)."""
    position = size
    while position > 0:
        step = min(READ_BLOCK, position)
        position -= step
        handle.seek(position)
        newline = handle.read(step).rfind(b"\n")
        if newline >= 0:
            return position + newline + 1
    return 0


def _backwards(handle, size: int) -> Iterator[tuple[int, bool]]:
    """Each complete record's end offset and whether it is ``F``, last first."""
    position = size
    carry = b""  # the start of a record whose beginning is in an earlier block
    while position > 0:
        step = min(READ_BLOCK, position)
        position -= step
        handle.seek(position)
        buffer = handle.read(step) + carry
        index = len(buffer)  # buffer[:index] still to split; it ends with a newline
        while True:
            newline = buffer.rfind(b"\n", 0, index - 1)
            if newline < 0:
                break
            yield position + index, _full(buffer[newline + 1 : index])
            index = newline + 1
        carry = buffer[:index]
    if carry:
        yield len(carry), _full(carry)


def _full(line: bytes) -> bool:
    parts = line.split(b" ", 3)
    return len(parts) >= 3 and parts[2].rstrip(b"\n") == b"F"


class JobLogs:
    """Where each attempt of each job keeps its log: ``<root>/<job ID>/<attempt>.log``.

    The agent makes a job's directory before it creates the container (conmon
    refuses a path whose directory is missing) and removes it with the job.
    """

    def __init__(self, root: Path):
        self.root = root
        #: The attempts whose logs ``prepare`` made, until ``made_here`` is asked.
        self._made: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def path(self, job_id: str, attempt: int) -> Path:
        return self.root / job_id / f"{attempt}.log"

    def prepare(self, job_id: str, attempt: int) -> Path:
        """Make the attempt's log, with space reserved ahead of it; return its path.

        A fresh file (conmon appends, so a leftover of a create that failed is
        removed first), with ``log_space.RESERVE`` bytes allocated past its
        end, so output is kept even if the disk fills while the job runs.

        Raises:
            OSError: the file or its reserve cannot be made (ENOSPC: the disk
                is full; a job started now would lose its output).
        """
        path = self.path(job_id, attempt)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)
        with self._lock:  # before the file exists: whoever sees the file, sees this
            self._made.add((job_id, attempt))
        try:
            log_space.reserve(path)
        except OSError:
            path.unlink(missing_ok=True)
            with self._lock:
                self._made.discard((job_id, attempt))
            raise
        return path

    def made_here(self, job_id: str, attempt: int) -> bool:
        """Whether ``prepare`` made the attempt's log in this process, and this is
        the first time it is asked (later calls: False).

        The shipper asks when it begins to copy an attempt: a log made here has
        nothing in the journal yet, so it need not look there (a look maps
        every journal file the agent may read: tens of MiB of its memory).
        """
        with self._lock:
            if (job_id, attempt) not in self._made:
                return False
            self._made.discard((job_id, attempt))
            return True

    def attempts(self, job_id: str) -> list[int]:
        """The attempts of a job that have a log, in order."""
        try:
            names = os.listdir(self.root / job_id)
        except FileNotFoundError:
            return []
        return sorted(
            int(name[:-4]) for name in names if name[:-4].isdigit() and name.endswith(".log")
        )

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._made = {made for made in self._made if made[0] != job_id}
        shutil.rmtree(self.root / job_id, ignore_errors=True)

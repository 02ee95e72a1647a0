"""Output read a block at a time: a block of plain records of one stream as one run.

A chatty job's log is mostly blocks of plain records of one stream;
agent/api/logs.py reads each such block with ``plain_run`` (substitutions
that run in C) instead of record by record, and asks ``admit_run`` whether
an output cap keeps all of it. Both give exactly what reading the block
record by record would; anything they are not sure of is left to that.
Pure: bytes in, bytes out, never I/O.
"""

from __future__ import annotations

import re

from agent.protocol.output import STREAMS
from agent.rules.output_cap import Budget

#: The most bytes of output one entry carries (records are at most 8 KiB).
ENTRY_BYTES = 64 * 1024

#: A newline and the header of a full line's record of each stream (its bytes
#: follow), and of a partial record (its bytes up to the line's newline).
_FULL = {
    stream: re.compile(rb"\n[^ \n]+ " + stream + rb" F(?: |(?=\n))")
    for stream in map(str.encode, STREAMS)
}
_PARTIAL = {
    stream: re.compile(rb"\n[^ \n]+ " + stream + rb" P(?: ([^\n]*))?(?=\n)")
    for stream in map(str.encode, STREAMS)
}


def plain_run(block: bytes) -> tuple[bytes, bytes, bytes] | None:
    """A block of whole records that ``suspect`` does not flag as one run, if
    it can be read as one: (its first record's time stamp, its stream, its
    bytes).

    That is a block of at most ENTRY_BYTES of output whose lines are all
    records (``RECORD``) of one stream; its bytes are then what
    ``block_records`` gives record by record, taken out by substitutions that
    run in C. Each pattern begins with the newline before a header (so the
    regex engine jumps from newline to newline): a full record's header goes
    with the newline before it, which then ends the record before; a partial
    record's newline is dropped. None for any other block.
    """
    if b" stderr " not in block:  # every record's header names its stream
        stream = b"stdout"
    elif b" stdout " not in block:
        stream = b"stderr"
    else:
        return None
    full = _FULL[stream]
    text = b"\n" + block
    parts = []
    found = read = 0
    for partial in _PARTIAL[stream].finditer(text):
        if partial.start() > read:  # full records, then the newline that ends the last
            lines, count = full.subn(b"\n", text[read : partial.start()])
            parts += (lines[1:], b"\n")
            found += count
        parts.append(partial[1] or b"")
        found += 1
        read = partial.end()  # the partial record's newline: dropped below
    lines, count = full.subn(b"\n", text[read:])
    parts.append(lines[1:])
    data = b"".join(parts)
    if found + count != block.count(b"\n") or len(data) > ENTRY_BYTES:
        return None  # a line that is no record, or too much for one entry
    return block[: block.index(b" ")], stream, data


def admit_run(budget: Budget | None, start: int, end: int, size: int) -> bool:
    """Whether a run of records from ``start`` to ``end`` with ``size`` bytes of
    output is all kept under ``budget``, as admitting each record would decide
    (counted, if so); False also when only some of them might be (the caller
    then asks record by record)."""
    if budget is None:
        return True
    if budget.cut is not None:
        return end <= budget.cut
    if start < budget.end or (budget.cap and budget.kept + size > budget.cap):
        return False
    return budget.admit(start, end, size)

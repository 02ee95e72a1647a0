"""Disk space kept allocated ahead of a running attempt's log, so a full disk loses no output.

conmon appends each record to the attempt's log and drops what it cannot
write: on a full disk the job's output would be lost without a trace. So the
agent allocates space past the end of the file (``fallocate`` with
``FALLOC_FL_KEEP_SIZE``: the file's size does not change, and appends land
in blocks that are already the file's), tops it up while the attempt runs,
and gives back what is left once the attempt has ended. A disk that fills
for any other reason leaves a running job ``RESERVE`` bytes of output (and
more at each top-up that still succeeds) before anything can be lost.

How far ahead a file is covered is read from the file itself (its allocated
blocks past its size), so nothing needs remembering across a restart. This
module only allocates; what to record when space runs out is the shipper's.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

#: Bytes allocated past the end of a running attempt's log.
RESERVE = 8 << 20
#: The reserve is topped up when less than this is left ahead.
RESERVE_LOW = 4 << 20
#: How much space a file needs ahead to take conmon's next record whole
#: (a record holds at most 8 KiB of output, plus its time stamp and tag).
ONE_RECORD = 9 << 10

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def ahead(path: Path) -> int:
    """Bytes allocated past the end of ``path`` (0 for a missing file)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return 0
    return max(0, status.st_blocks * 512 - status.st_size)


def reserve(path: Path, amount: int = RESERVE, *, create: bool = True) -> None:
    """Allocate ``amount`` bytes past the end of ``path``; ``create`` makes the
    file (empty, mode 0600) if it is missing.

    Raises:
        OSError: the space cannot be had (ENOSPC: the disk is full), or the file
            cannot be made. A file system without ``fallocate`` (EOPNOTSUPP)
            is not an error: there is simply no reserve there.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        size = os.fstat(fd).st_size
        _fallocate(fd, _FALLOC_FL_KEEP_SIZE, size, amount)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
    finally:
        os.close(fd)


def top_up(path: Path) -> int:
    """Keep at least ``RESERVE_LOW`` allocated past the end of a running attempt's log.

    Returns:
        The bytes ahead of the file's end after the top-up (0 for a file that
        is gone: its job was removed).

    Raises:
        OSError: the top-up failed (ENOSPC: the disk is full); what was
            allocated before is still there.
    """
    left = ahead(path)
    if left >= RESERVE_LOW:
        return left
    try:
        reserve(path, create=False)
    except FileNotFoundError:
        return 0
    return ahead(path)


def release(path: Path) -> None:
    """Give back what is allocated past the end of an ended attempt's log."""
    left = ahead(path)
    if not left:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        try:
            _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, size, left)
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise
        # ext4 punches no holes past the end of a file, but a truncate to the
        # same size drops the blocks allocated there.
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def no_room(path: Path) -> bool:
    """Whether conmon cannot write another record to ``path``: nothing reserved
    ahead of it, and no room for one on its file system (a write comes back
    short, and the rest of the record is lost)."""
    if ahead(path) >= ONE_RECORD:
        return False
    try:
        status = os.statvfs(path)
    except OSError:
        return False
    return status.f_bavail * status.f_frsize < ONE_RECORD

"""inotify(7) through libc: one instance, its watches, and the events read from it.

The agent's file wake-ups (conmon's exit files, adapters/podman/exits.py; the
attempts' logs a follower waits on, runtime/output_wakes.py) all come from
here, so there is one wrapper of the system calls. An ``Inotify`` is one
kernel instance (a user has ``fs.inotify.max_user_instances`` of them,
typically 128): callers share one and add a watch per path
(``max_user_watches`` is far larger). It only reports events; what they mean
is for its callers. Linux-only; where inotify is missing, ``open()`` raises
``OSError`` saying why.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
from dataclasses import dataclass

#: inotify(7) event flags used by the agent.
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
#: The watch ended: its file or directory is gone (or the watch was removed).
IN_IGNORED = 0x00008000
#: The kernel's event queue overflowed: events were lost (wd is -1).
IN_Q_OVERFLOW = 0x00004000
#: struct inotify_event: int wd; uint32 mask, cookie, len; char name[len].
_EVENT = struct.Struct("iIII")
#: One read takes this many bytes of events at most.
_READ = 64 * 1024


@dataclass(frozen=True)
class Event:
    """One inotify event.

    Attributes:
        wd: the watch it is about (-1 for a queue overflow).
        mask: its ``IN_*`` flags.
        name: the file's name within a watched directory ("" for the watched path itself).
    """

    wd: int
    mask: int
    name: str


class Inotify:
    """One inotify instance (non-blocking, close-on-exec)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._libc = None

    def open(self) -> None:
        """Make the instance.

        Raises:
            OSError: no inotify in the C library, or ``inotify_init1`` failed (EMFILE: the
                user's ``fs.inotify.max_user_instances`` are all taken).
        """
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the agent already runs on
        if not hasattr(libc, "inotify_init1"):
            raise OSError(errno.ENOSYS, "the C library has no inotify")
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self._libc, self._fd = libc, fd

    def fileno(self) -> int:
        """The instance's file descriptor (readable when events are queued).

        Raises:
            OSError: the instance is not open.
        """
        if self._fd is None:
            raise OSError(errno.EBADF, "the inotify instance is not open")
        return self._fd

    def add_watch(self, path: os.PathLike | str, mask: int) -> int:
        """Watch ``path`` for ``mask``; the watch descriptor (the same one for a
        path already watched, whose mask is then replaced).

        Raises:
            OSError: the path cannot be watched (ENOENT: it does not exist;
                ENOSPC: ``fs.inotify.max_user_watches`` reached).
        """
        wd = self._libc.inotify_add_watch(self.fileno(), os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fspath(path))
        return wd

    def remove_watch(self, wd: int) -> None:
        """Stop a watch (its ``IN_IGNORED`` event follows); one already gone is no error."""
        self._libc.inotify_rm_watch(self.fileno(), wd)

    def read(self, timeout: float | None) -> list[Event]:
        """The events queued, waiting up to ``timeout`` seconds (None: until there are some).

        Returns:
            The events, oldest first; none if the time passed.

        Raises:
            OSError: the instance is not open.
        """
        ready, _, _ = select.select([self.fileno()], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fileno(), _READ)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            events.append(Event(wd, mask, raw.decode(errors="replace")))
        return events

    def close(self) -> None:
        """Close the instance (every watch ends with it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

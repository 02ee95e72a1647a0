"""Conmon's exit files: the moment a container's process ends, without polling.

When a container's main process exits, its conmon writes an *exit file*
named after the container's full ID into the exits directory of Podman's
temporary directory (``$XDG_RUNTIME_DIR/libpod/tmp/exits`` for rootless
Podman), within a millisecond or two. Podman's own ``died`` event comes much
later: it is emitted by the ``podman container cleanup`` process conmon
starts, and the ``file`` events backend is read by polling every 250 ms;
``POST /containers/{id}/wait`` in Podman 4.3 answers only after that cleanup
too (measured: 160-570 ms after the container's FinishedAt, whatever its
``interval``). An inotify watch on the directory sees the exit file at once,
and an inspect right after it already reports the container ``stopped``
with its exit code (Podman reads the exit file).

``ExitFiles`` only reports container IDs; it never reads a container or
decides anything. It is linux-only (inotify through libc) and needs the
agent to run as the user whose rootless Podman it talks to; where the
directory cannot be watched, ``open()`` says why and the agent relies on the
event stream and the periodic resync.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import select
import struct
from pathlib import Path

#: inotify(7) flags: conmon writes the file in place (close after write) or
#: renames a finished temporary file into place (moved to).
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
#: The watch ended: the directory itself was removed.
_IN_IGNORED = 0x00008000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
#: struct inotify_event: int wd; uint32 mask, cookie, len; char name[len].
_EVENT = struct.Struct("iIII")
#: A container's full ID (a temporary file beside it has a suffix).
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def default_exits_dir() -> Path:
    """Where rootless Podman's conmon writes exit files for this user (its default tmp_dir)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime) / "libpod" / "tmp" / "exits"


class ExitFiles:
    """An inotify watch on conmon's exits directory.

    Args:
        directory: the exits directory (``default_exits_dir()``).
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self._fd: int | None = None

    def open(self) -> str | None:
        """Start watching; returns None, or why the directory cannot be watched."""
        libc_name = ctypes.util.find_library("c")
        if libc_name is None:
            return "no C library to ask for inotify"
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return f"inotify_init1: {os.strerror(ctypes.get_errno())}"
        mask = _IN_CLOSE_WRITE | _IN_MOVED_TO
        if libc.inotify_add_watch(fd, os.fsencode(self.directory), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            if err == errno.ENOENT:
                return f"{self.directory} does not exist (yet: Podman makes it with a container)"
            return f"cannot watch {self.directory}: {os.strerror(err)}"
        self._fd = fd
        return None

    def read(self, timeout: float) -> list[str]:
        """The IDs of the containers whose exit file appeared, waiting up to ``timeout`` s.

        Returns:
            Full container IDs, possibly none (the timeout passed).

        Raises:
            OSError: the watch broke (the directory was removed: call ``open()`` again).
        """
        if self._fd is None:
            raise OSError(errno.EBADF, "the exits directory is not watched")
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return []
        ids, offset = [], 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            name = raw.decode(errors="replace")
            if mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO) and _CONTAINER_ID.fullmatch(name):
                ids.append(name)
            elif mask & _IN_IGNORED:
                raise OSError(errno.ENOENT, f"{self.directory} was removed")
        return ids

    def close(self) -> None:
        """Stop watching."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

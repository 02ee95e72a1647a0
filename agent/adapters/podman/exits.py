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
decides anything. It is linux-only (inotify, agent/adapters/inotify.py) and needs the
agent to run as the user whose rootless Podman it talks to; where the
directory cannot be watched, ``open()`` says why and the agent relies on the
event stream and the periodic resync.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from agent.adapters.inotify import IN_CLOSE_WRITE, IN_IGNORED, IN_MOVED_TO, Inotify

#: conmon writes the file in place (close after write) or renames a finished
#: temporary file into place (moved to).
_MASK = IN_CLOSE_WRITE | IN_MOVED_TO
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
        self._inotify: Inotify | None = None

    def open(self) -> str | None:
        """Start watching; returns None, or why the directory cannot be watched."""
        inotify = Inotify()
        try:
            inotify.open()
        except OSError as exc:
            return exc.strerror
        try:
            inotify.add_watch(self.directory, _MASK)
        except OSError as exc:
            inotify.close()
            if exc.errno == errno.ENOENT:
                return f"{self.directory} does not exist (yet: Podman makes it with a container)"
            return f"cannot watch {self.directory}: {exc.strerror}"
        self._inotify = inotify
        return None

    def read(self, timeout: float) -> list[str]:
        """The IDs of the containers whose exit file appeared, waiting up to ``timeout`` s.

        Returns:
            Full container IDs, possibly none (the timeout passed).

        Raises:
            OSError: the watch broke (the directory was removed: call ``open()`` again).
        """
        if self._inotify is None:
            raise OSError(errno.EBADF, "the exits directory is not watched")
        ids = []
        for event in self._inotify.read(timeout):
            if event.mask & _MASK and _CONTAINER_ID.fullmatch(event.name):
                ids.append(event.name)
            elif event.mask & IN_IGNORED:
                raise OSError(errno.ENOENT, f"{self.directory} was removed")
        return ids

    def close(self) -> None:
        """Stop watching."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

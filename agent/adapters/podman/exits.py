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

``ExitFiles`` reports container IDs and reads what an exit file says
(``status``: the exit code, and whether the kernel's OOM killer struck, from
the ``oom`` file conmon leaves beside the container's bundle, as Podman
itself decides it); it never asks Podman or decides anything. It is
linux-only (inotify, agent/adapters/inotify.py) and needs the agent to run as the user
whose rootless Podman it talks to; where the directory cannot be watched,
``open()`` says why and the agent relies on the event stream and the
periodic resync.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
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


def default_storage_roots() -> tuple[Path, ...]:
    """Where rootless Podman keeps this user's containers by default (its graph root)."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(data) / "containers" / "storage",)


@dataclass(frozen=True)
class ExitStatus:
    """What a container's exit file says about how its process ended."""

    exit_code: int
    #: Whether the OOM killer struck; None when it cannot be told from files
    #: (the container's bundle was not found: ask Podman).
    oom: bool | None


class ExitFiles:
    """An inotify watch on conmon's exits directory.

    Args:
        directory: the exits directory (``default_exits_dir()``).
        storage_roots: Podman's graph roots, under which each container's
            bundle (``<driver>-containers/<id>/userdata``) holds conmon's
            ``oom`` file (``default_storage_roots()``).
    """

    def __init__(self, directory: Path, storage_roots: Sequence[Path] | None = None):
        self.directory = directory
        self.storage_roots = (
            default_storage_roots() if storage_roots is None else tuple(storage_roots)
        )
        self._inotify: Inotify | None = None
        self._drivers_dirs: tuple[Path, ...] = ()

    def status(self, container_id: str) -> ExitStatus | None:
        """How the container's process ended, as its exit file says.

        Podman 4 counts a container OOM-killed when conmon left an ``oom``
        file in its bundle directory (Podman 5 in ``<tmp>/persist/<id>``);
        both are looked at. Read it at once: Podman's cleanup removes the exit
        file a few hundred milliseconds after it appears.

        Args:
            container_id: the container's full ID.

        Returns:
            The exit code and OOM flag, or None when the exit file is gone or
            unreadable (ask Podman instead).
        """
        if not _CONTAINER_ID.fullmatch(container_id):
            return None
        try:
            exit_code = int((self.directory / container_id).read_text().strip())
        except (OSError, ValueError):
            return None
        return ExitStatus(exit_code=exit_code, oom=self.oom(container_id))

    def oom(self, container_id: str) -> bool | None:
        """Whether conmon marked the (exited) container OOM-killed, as Podman decides it.

        Returns:
            True or False, or None when the container's bundle directory is
            not found (another graph root, or the container is gone: ask Podman).
        """
        if not _CONTAINER_ID.fullmatch(container_id):
            return None
        found = self._bundles(container_id, self._drivers_dirs)
        if not found:  # a storage driver new since the last look (podman system reset)
            self._drivers_dirs = self._find_drivers_dirs()
            found = self._bundles(container_id, self._drivers_dirs)
        return any((bundle / "oom").exists() for bundle in found) if found else None

    def _bundles(self, container_id: str, drivers_dirs: Sequence[Path]) -> list[Path]:
        bundles = [self.directory.parent / "persist" / container_id]
        bundles += [path / container_id / "userdata" for path in drivers_dirs]
        return [bundle for bundle in bundles if bundle.is_dir()]

    def _find_drivers_dirs(self) -> tuple[Path, ...]:
        """Each graph root's ``<driver>-containers`` directories (listing a root is
        what costs: once, and again only when a bundle is not found in them)."""
        return tuple(path for root in self.storage_roots for path in root.glob("*-containers"))

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

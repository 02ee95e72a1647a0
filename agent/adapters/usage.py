"""How many bytes the jobs' files hold, against ``max_files_bytes``.

Measured once (a walk of ``STATE_DIR/jobs`` on first use), then kept by
counting: a snapshot adds what it copies as it copies it, a packed archive
its size, a removed job directory what was counted for it. So a submit costs
a lookup, never a walk. What a job writes into its own ``/workspace`` is not
seen until the next measurement (the next start of the agent).

This module only counts and refuses; it never writes or deletes a file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from agent.protocol.errors import StorageError


class Usage:
    """The bytes of each job's files, and their total.

    Args:
        root: the directory holding one directory per job.
        cap: the current ``max_files_bytes`` (0: no limit), read at each check.
    """

    def __init__(self, root: Path, cap: Callable[[], int]):
        self.root = root
        self.cap = cap
        self._lock = threading.Lock()
        self._sizes: dict[str, int] | None = None
        self._total = 0

    def total(self) -> int:
        """Bytes of file content all jobs' files hold (measured on first use)."""
        with self._lock:
            self._measured()
            return self._total

    def grow(self, job_id: str, size: int, *, enforce: bool) -> None:
        """Count ``size`` more bytes for ``job_id``; with ``enforce``, refuse them
        past the cap (and, for 0 bytes, refuse once the cap is reached).

        Raises:
            StorageError: saying what is used, the cap, and how to free space.
        """
        cap = self.cap()
        with self._lock:
            sizes = self._measured()
            full = self._total + size > cap if size else self._total >= cap
            if enforce and cap and full:
                raise StorageError(
                    f"job files would pass max_files_bytes ({cap} bytes): workspaces and "
                    f"archives already use {self._total} bytes; free space with "
                    "`chooctl prune` or `chooctl rm ID`, or raise max_files_bytes "
                    "(choo-agent.toml(5))"
                )
            if size:
                sizes[job_id] = sizes.get(job_id, 0) + size
                self._total += size

    def forget(self, job_id: str) -> None:
        """The job's directory is gone: its bytes no longer count."""
        with self._lock:
            if self._sizes is not None:
                self._total -= self._sizes.pop(job_id, 0)

    def _measured(self) -> dict[str, int]:
        """The bytes of each job's files (walked on first use; call with the lock held)."""
        if self._sizes is None:
            self._sizes = {}
            with contextlib.suppress(OSError):
                for entry in os.scandir(self.root):
                    self._sizes[entry.name] = _measure(Path(entry.path))
            self._total = sum(self._sizes.values())
        return self._sizes


def _measure(path: Path) -> int:
    """Bytes of the regular files under ``path`` (what cannot be read is not counted)."""
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total

"""One agent per state directory: an exclusive lock held for the agent's whole life.

Two agents on one state directory would each resume the other's jobs (and
run them twice). ``StateLock`` takes ``flock(LOCK_EX | LOCK_NB)`` on
``<state_dir>/agent.lock`` before anything else of the directory is opened
and writes the holder's pid into the file. The kernel drops the lock when the
process ends, however it ends (SIGKILL included), so a file left behind never
blocks the next agent; only a live holder does. This module touches nothing
else in the state directory and never waits for the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from agent.protocol.errors import ChooError

LOCK_NAME = "agent.lock"


class StateDirBusy(ChooError):
    """Another live agent holds the state directory's lock."""


class StateLock:
    """The exclusive lock on one state directory.

    Args:
        state_dir: the agent's state directory (created, mode 0750, if missing).
    """

    def __init__(self, state_dir: Path):
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid into the lock file.

        Raises:
            StateDirBusy: another process holds it; the message names its pid.
            OSError: the state directory or lock file cannot be made or opened.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        # No O_TRUNC: until the lock is ours, the file holds the holder's pid.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process (pid not yet written)"
            raise StateDirBusy(
                f"another choo-agent ({who}) is using the state directory "
                f"{self.path.parent} (it holds {self.path}); stop it first, or give this "
                "agent a state directory of its own (--state-dir or state_dir)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (exit drops it too). The file stays: removing it would
        let a third agent lock a new file while a second waits on the old one."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(os.pread(fd, 32, 0).split()[0])
    return None

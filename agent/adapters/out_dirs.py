"""Jobs' /out as host directories: ``STATE_DIR/out/<ID>/``, made, listed and removed.

A job whose container runs as root of the agent's user namespace (the
agent's own uid, rootless) gets this directory bind-mounted at /out instead
of a Podman volume: a ``mkdir`` and a local removal instead of two Podman
calls. The directories live beside ``jobs/``, not in it: they are not job
files counted against ``max_files_bytes`` (a volume never was either), and
the folder holds only the directories of jobs still running (or of a kept
container), so listing it for strays is cheap. A job's attempts share it.

New directories are handed out only once ``use`` says Podman sees this
folder at its path (agent/adapters/podman/peer_view.py checks it at start;
the launcher turns them off for good when a create still cannot find one):
otherwise every job gets a volume, as it would without this module.

What a job chowned to a subordinate uid there is deleted through
``unshare`` (agent/adapters/podman/scrub.py), as in a job's own directory.
Which job gets a directory, and when one is a stray, is the runtime's call;
this module never talks to the Podman API or the database (peer_view.py asks the
kernel, not Podman).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from agent.adapters.podman.peer_view import podman_view
from agent.adapters.removal import remove_tree, say_cannot_remove

log = logging.getLogger(__name__)

#: The folder, under the state directory, holding one directory per job.
OUT_ROOT = "out"
#: The mode of a job's /out directory: what a new Podman volume has.
OUT_MODE = 0o755
#: ``OutDirs.mode``: what a job running as root gets at /out.
MODE_DIRECTORY = "directory"
MODE_VOLUME = "volume"


class OutDirs:
    """The host directories jobs see at /out.

    Args:
        root: ``STATE_DIR/out``.
        unshare: returns the hook deleting a tree the agent alone cannot
            (None: nothing more is tried); read at each removal, as the
            composition root sets it once Podman is up.
    """

    def __init__(self, root: Path, unshare: Callable[[], Callable[[Path], OSError | None] | None]):
        self.root = root
        self.unshare = unshare
        self._lock = threading.Lock()
        #: Jobs whose directory could not be removed (logged once each).
        self._failed: set[str] = set()
        #: Whether new jobs get a directory (``use``), and why or why not.
        self.enabled = False
        self.reason = "Podman's view of the state directory is not checked yet"

    def use(self, enabled: bool, reason: str) -> bool:
        """Hand out directories to new jobs, or stop (a job that has one keeps it).

        Args:
            enabled: whether Podman sees ``root`` at its path.
            reason: why (agent.info shows it).

        Returns:
            Whether this changed the mode.
        """
        with self._lock:
            changed = enabled != self.enabled
            self.enabled, self.reason = enabled, reason
        return changed

    @property
    def mode(self) -> str:
        """``MODE_DIRECTORY`` or ``MODE_VOLUME``: what a new job running as root gets."""
        return MODE_DIRECTORY if self.enabled else MODE_VOLUME

    def choose(self, podman_url: str) -> None:
        """Hand out directories only if the Podman at ``podman_url`` sees ``root`` as the
        agent does (agent/adapters/podman/peer_view.py); log which it is, and why.

        Raises:
            OSError: ``root`` cannot be made.
        """
        self.make_root()
        view = podman_view(podman_url, self.root)
        self.use(view.same, view.reason)
        log.info("/out of a job running as root: a %s (%s)", self.mode, view.reason)

    def info(self) -> dict[str, str]:
        """agent.info's ``podman.out``: ``mode`` and ``reason``."""
        return {"mode": self.mode, "reason": self.reason}

    def make_root(self) -> None:
        """``root``, made if missing (raises OSError)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        """Where the job's /out directory is (whether or not it exists)."""
        return self.root / job_id

    def exists(self, job_id: str) -> bool:
        """Whether the job has a /out directory (it was given one)."""
        return os.path.isdir(self.path(job_id))

    def make(self, job_id: str) -> Path:
        """The job's /out directory, made if missing (an earlier attempt's is kept).

        Raises:
            OSError: it cannot be made (the disk is full, ...).
        """
        path = self.path(job_id)
        if not os.path.isdir(path):
            self.make_root()
            try:
                os.mkdir(path, OUT_MODE)
            except FileExistsError:
                pass
            else:
                # Not narrowed by the umask. Not fsynced either: a power cut
                # ends the container too, and a retry without the directory
                # gets a volume (agent/runtime/launch.py).
                os.chmod(path, OUT_MODE)
        return path

    def remove(self, job_id: str, *, helped: bool = True) -> bool:
        """Delete the job's /out directory, whatever the job left in it.

        A first failure is logged (the sweeps try again, about once a minute);
        nothing is raised.

        Args:
            job_id: the job.
            helped: what the agent alone cannot delete goes to ``unshare``
                (False: on the way out, where a scrub container could hold
                the stop; the next start's sweep does it).

        Returns:
            True when it is gone (or never was).
        """
        path = self.path(job_id)
        if not os.path.lexists(path):
            return True
        error = remove_tree(path)
        unshare = self.unshare() if helped else None
        if error is not None and unshare is not None:
            error = unshare(path)
        with self._lock:
            if error is None:
                if job_id in self._failed:
                    self._failed.discard(job_id)
                    log.info("removed %s at last", path)
                return True
            first = job_id not in self._failed
            self._failed.add(job_id)
        if first:
            say_cannot_remove(log, path, error)
        return False

    def job_ids(self) -> list[str]:
        """The IDs of the jobs that have a /out directory."""
        try:
            return os.listdir(self.root)
        except FileNotFoundError:
            return []

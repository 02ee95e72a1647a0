"""A job's files under the state directory: workspace snapshot and artifacts.

Layout: ``STATE_DIR/jobs/<ID>/workspace/`` (the snapshot a job's container sees
at ``/workspace``) and ``STATE_DIR/jobs/<ID>/artifacts.tar.gz`` (what the job
left in ``/out``, packed when it ended). The files belong to the agent's user
and nobody else (mode 0700/0600); clients read artifacts through the socket.

This module owns those paths: checking a workspace a client asks for,
snapshotting it (by file descriptor, agent/adapters/snapshot.py), packing
``/out`` (agent/adapters/archive.py), reading the archive back in chunks,
deleting a job's directory (agent/adapters/removal.py, retried with backoff),
and the total bytes of job files against ``max_files_bytes``
(agent/adapters/usage.py); and, through agent/adapters/out_dirs.py, the
``STATE_DIR/out/<ID>/`` directories jobs running as root see at ``/out``. Files
are fsynced, and their directories, before a method returns them: the row
that names them is committed after. It never talks to the Podman API or the
database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from agent.adapters import archive
from agent.adapters.out_dirs import OUT_ROOT, OutDirs
from agent.adapters.removal import remove_tree, say_cannot_remove
from agent.adapters.snapshot import O_DIR, Reader, Refused, copy_tree, fsync_dir, open_dir
from agent.adapters.usage import Usage
from agent.protocol.errors import ChooError, InvalidParams, StorageError

log = logging.getLogger(__name__)

ARCHIVE_NAME = "artifacts.tar.gz"
#: Directories of jobs the database does not know are removed once this old
#: (younger, their job may still be being submitted).
SWEEP_GRACE = 3600.0
MAX_READ = 4 << 20
#: A job directory that could not be removed is tried again after this many
#: seconds, doubling each time up to the cap.
REMOVE_RETRY = (60.0, 3600.0)


class JobFiles:
    """Paths and file operations for jobs' workspaces and artifacts."""

    def __init__(
        self,
        state_dir: Path,
        config: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        unshare: Callable[[Path], OSError | None] | None = None,
    ):
        """Args:
        state_dir: the agent's state directory (job files go in ``jobs/``).
        config: ``workspace_roots``, ``workspace_max_bytes``,
            ``artifacts_max_bytes`` and ``max_files_bytes``, read at each use
            so a reload applies.
        clock: monotonic seconds, for the removal backoff.
        unshare: deletes a tree the agent alone cannot (subuid-owned files:
            agent/adapters/podman/scrub.py); None: nothing more is tried.
        """
        self.state_dir = state_dir
        self.root = state_dir / "jobs"
        self.config = config
        self.clock = clock
        self.unshare = unshare
        self.usage = Usage(self.root, lambda: self.config.max_files_bytes)
        self.out = OutDirs((state_dir / OUT_ROOT).absolute(), lambda: self.unshare)
        # Guards _pending (removals run on connection and scheduler threads).
        self._lock = threading.Lock()
        #: Job directories whose removal failed: (failures, monotonic time due).
        self._pending: dict[str, tuple[int, float]] = {}

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def workspace_dir(self, job_id: str) -> Path | None:
        path = self.job_dir(job_id) / "workspace"
        return path if path.is_dir() else None

    def archive_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / ARCHIVE_NAME

    # -- workspaces ----------------------------------------------------------

    def check_workspace(self, source: str, uid: int | None) -> Path:
        """Resolve a workspace directory a client named, or refuse it.

        Refused: a path that is not an existing directory the agent can read;
        one outside ``workspace_roots``; one inside the agent's state
        directory; and, for a caller other than root or the agent's own user,
        a directory that caller does not own. What the caller may read inside
        it is checked by ``snapshot``, on each file as it is opened.

        Raises:
            InvalidParams: saying which rule the directory breaks.
        """
        path = Path(source)
        if not path.is_absolute():
            raise InvalidParams(f"workspace: must be an absolute path, got {source!r}")
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise InvalidParams(
                f"workspace: {source} does not exist or cannot be read: {exc}"
            ) from None
        if not real.is_dir():
            raise InvalidParams(f"workspace: {source} is not a directory")
        roots = [Path(r).resolve() for r in self.config.workspace_roots]
        if not any(real == root or root in real.parents for root in roots):
            raise InvalidParams(
                f"workspace: {real} is outside the allowed roots "
                f"({', '.join(map(str, roots)) or 'none configured'}); "
                "see workspace_roots in choo-agent.toml(5)"
            )
        state = self.state_dir.resolve()
        if real == state or state in real.parents or real in state.parents:
            raise InvalidParams(f"workspace: {real} holds the agent's own state; refused")
        if not os.access(real, os.R_OK | os.X_OK):
            raise InvalidParams(f"workspace: the agent cannot read {real} (permission denied)")
        if uid is not None and uid not in (0, os.getuid()) and real.stat().st_uid != uid:
            raise InvalidParams(
                f"workspace: {real} does not belong to you (uid {uid}); only its owner, "
                "root or the agent's user may snapshot it"
            )
        return real

    def snapshot(self, job_id: str, source: Path, reader: Reader | None = None) -> tuple[Path, int]:
        """Copy ``source`` to the job's workspace; returns (snapshot dir, bytes copied).

        The copy walks by file descriptor (agent/adapters/snapshot.py):
        symbolic links are copied as links, never followed; special files are
        left out; an entry ``reader`` may not read, or one swapped during the
        copy, refuses the whole snapshot. It is fsynced (files, then their
        directories, then the job directory) before this returns. Past
        ``workspace_max_bytes`` or ``max_files_bytes`` nothing is kept.

        Args:
            job_id: the new job.
            source: the directory, as ``check_workspace`` returned it.
            reader: the submitter, whose read permission every file needs
                (None: the agent's own, e.g. in tests).

        Raises:
            InvalidParams: too large, or an entry refused (naming it).
            StorageError: ``max_files_bytes`` reached, or the disk is full.
        """
        limit = self.config.workspace_max_bytes
        self.used()  # measured before anything is written, so nothing counts twice
        job_dir = self.job_dir(job_id)
        dest = job_dir / "workspace"
        partial = job_dir / "workspace.partial"
        copied = 0

        def count(size: int) -> None:
            nonlocal copied
            copied += size
            if limit and copied > limit:
                raise Refused(f"{source} is larger than workspace_max_bytes ({limit} bytes)")
            self.usage.grow(job_id, size, enforce=True)

        try:
            self._make_job_dir(job_id)
            src = open_dir(source, reader)
            try:
                os.mkdir(partial, 0o700)
                dst = os.open(partial, O_DIR)
                try:
                    copy_tree(src, dst, reader=reader, count=count, label=str(source))
                finally:
                    os.close(dst)
            finally:
                os.close(src)
            os.rename(partial, dest)
            fsync_dir(job_dir)
        except Refused as exc:
            self.remove(job_id)
            raise InvalidParams(f"workspace: {exc}") from None
        except OSError as exc:
            self.remove(job_id)
            if exc.errno in archive.NO_SPACE:
                raise StorageError(
                    f"workspace: no space left to copy {source} ({exc.strerror}); "
                    "free space (chooctl prune) and submit again"
                ) from None
            raise InvalidParams(f"workspace: cannot copy {source}: {exc}") from None
        except BaseException:
            self.remove(job_id)
            raise
        return dest, copied

    # -- /out directories (out_dirs.py) ---------------------------------------

    def out_dir(self, job_id: str) -> Path | None:
        """The job's /out directory, or None when it has none (it uses a volume)."""
        return self.out.path(job_id) if self.out.exists(job_id) else None

    def make_out_dir(self, job_id: str) -> Path:
        """The job's /out directory, made if missing (``OutDirs.make``; raises OSError)."""
        return self.out.make(job_id)

    def remove_out_dir(self, job_id: str) -> bool:
        """Delete the job's /out directory; True when it is gone (``OutDirs.remove``)."""
        return self.out.remove(job_id)

    def out_dir_jobs(self) -> list[str]:
        """The IDs of the jobs that have a /out directory."""
        return self.out.job_ids()

    def out_dirs_enabled(self) -> bool:
        """Whether a new job running as root gets a /out directory (``OutDirs.use``)."""
        return self.out.enabled

    def use_out_dirs(self, enabled: bool, reason: str) -> bool:
        """Start or stop handing out /out directories; True when that changed the mode."""
        return self.out.use(enabled, reason)

    # -- artifacts -----------------------------------------------------------

    def pack(self, job_id: str, stream: IO[bytes]) -> dict[str, Any]:
        """Pack a tar stream of ``/out`` (as Podman sends it) into the job's archive.

        Links are packed as links, devices and FIFOs left out. Nothing is
        written for an empty ``/out``; past ``artifacts_max_bytes`` (of file
        content) nothing is kept. The archive is fsynced, and its directory.

        Returns:
            The job's artifacts columns: ``artifacts_state`` (``packed``, ``none``,
            ``too_large`` or ``error``), ``_path``, ``_size``, ``_sha256``, ``_message``.

        Raises:
            StorageError: no space left for the archive (nothing was kept).
        """
        self.used()  # measured before anything is written, so nothing counts twice
        final = self._make_job_dir(job_id) / ARCHIVE_NAME
        return self._counted(
            job_id, archive.pack_stream(final, stream, self.config.artifacts_max_bytes)
        )

    def pack_dir(self, job_id: str, source: Path) -> dict[str, Any] | None:
        """Pack /out from its directory on this host, as ``pack`` does (walked by
        file descriptor: a link is packed as a link, never followed).

        Returns:
            The artifacts columns, or None when the agent cannot read all of
            ``source`` (files of another user): then use ``pack``.

        Raises:
            StorageError: no space left for the archive (nothing was kept).
        """
        self.used()
        final = self._make_job_dir(job_id) / ARCHIVE_NAME
        record = archive.pack_tree(final, source, self.config.artifacts_max_bytes)
        return None if record is None else self._counted(job_id, record)

    def _counted(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Count a packed archive's bytes (never refused: the job has run)."""
        if record["artifacts_state"] == "packed":
            self.usage.grow(job_id, record["artifacts_size"], enforce=False)
        return record

    def _make_job_dir(self, job_id: str) -> Path:
        """The job's directory, made (and made durable in ``jobs/``) if new.

        Raises:
            StorageError: no space left for it.
        """
        job_dir = self.job_dir(job_id)
        if not job_dir.is_dir():
            try:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                job_dir.mkdir(exist_ok=True, mode=0o700)
                fsync_dir(self.root)
            except OSError as exc:
                if exc.errno in archive.NO_SPACE:
                    raise StorageError(f"no space left for {job_dir}: {exc.strerror}") from None
                raise
        return job_dir

    # -- the disk cap --------------------------------------------------------

    def used(self) -> int:
        """Bytes of file content all jobs' workspaces and archives hold
        (agent/adapters/usage.py: measured once, then counted)."""
        return self.usage.total()

    def check_room(self) -> None:
        """Refuse new job files when ``max_files_bytes`` is reached.

        Raises:
            StorageError: saying what is used, the cap, and how to free space.
        """
        self.usage.grow("", 0, enforce=True)

    def read(self, job_id: str, path: str, offset: int, length: int) -> bytes:
        """Read part of a job's archive (at most ``MAX_READ`` bytes).

        Raises:
            ChooError: the archive is gone.
        """
        if Path(path) != self.archive_path(job_id):
            raise ChooError(f"artifacts of job {job_id} are not where they were recorded")
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(min(length, MAX_READ))
        except FileNotFoundError:
            raise ChooError(f"the artifacts archive of job {job_id} is missing ({path})") from None

    # -- removal -------------------------------------------------------------

    def remove(self, job_id: str) -> bool:
        """Delete a job's directory (and its /out directory, should one be left),
        whatever permissions the job left in them.

        Directories the agent owns get the permissions needed to empty them;
        what is left (files chowned to a subordinate uid) goes through
        ``unshare``. A directory that still cannot be removed is logged once
        and retried by ``retry_removals`` with backoff; nothing is raised.

        Returns:
            True when the directory is gone.
        """
        self.out.remove(job_id)
        path = self.job_dir(job_id)
        error = remove_tree(path) if os.path.lexists(path) else None
        if error is not None and self.unshare is not None:
            error = self.unshare(path)
        with self._lock:
            failures = self._pending.get(job_id, (0, 0.0))[0]
            if error is None:
                self._pending.pop(job_id, None)
                self.usage.forget(job_id)
                if failures:
                    log.info("removed %s at last (after %d failed tries)", path, failures)
                return True
            base, cap = REMOVE_RETRY
            self._pending[job_id] = (failures + 1, self.clock() + min(cap, base * 2**failures))
        if not failures:
            say_cannot_remove(log, path, error)
        return False

    def retry_removals(self) -> list[str]:
        """Try again to remove the job directories whose time has come.

        Returns:
            The IDs of those now removed.
        """
        now = self.clock()
        with self._lock:
            due = [job_id for job_id, (_n, at) in self._pending.items() if at <= now]
        return [job_id for job_id in due if self.remove(job_id)]

    def pending_removals(self) -> set[str]:
        """The IDs of the jobs whose directory is waiting for another try."""
        with self._lock:
            return set(self._pending)

    def sweep(self, known: set[str], now: float | None = None) -> list[str]:
        """Remove directories of jobs the database does not know (older than the grace),
        and retry removals that are due."""
        now = time.time() if now is None else now
        removed = self.retry_removals()
        if not self.root.is_dir():
            return removed
        pending = self.pending_removals()
        for entry in self.root.iterdir():
            if entry.name in known or entry.name in pending:
                continue
            with contextlib.suppress(OSError):
                if now - entry.lstat().st_mtime < SWEEP_GRACE:
                    continue
                log.info("removing %s (no such job)", entry)
                if self.remove(entry.name):
                    removed.append(entry.name)
        return removed

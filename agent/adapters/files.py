"""A job's files under the state directory: workspace snapshot and artifacts.

Layout: ``STATE_DIR/jobs/<ID>/workspace/`` (the snapshot a job's container sees
at ``/workspace``) and ``STATE_DIR/jobs/<ID>/artifacts.tar.gz`` (what the job
left in ``/out``, packed when it ended). The files belong to the agent's user
and nobody else (mode 0700/0600); clients read artifacts through the socket.

This module owns those paths: checking a workspace a client asks for,
copying it, packing a tar stream (Podman's copy of ``/out``) into the archive
with its size and sha256, reading the archive back in chunks, and deleting a
job's directory. It never talks to Podman or the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from agent.protocol.errors import ChooError, InvalidParams

log = logging.getLogger(__name__)

ARCHIVE_NAME = "artifacts.tar.gz"
#: Directories of jobs the database does not know are removed once this old
#: (younger, their job may still be being submitted).
SWEEP_GRACE = 3600.0
MAX_READ = 4 << 20


class JobFiles:
    """Paths and file operations for jobs' workspaces and artifacts."""

    def __init__(self, state_dir: Path, config: Any):
        """``config`` supplies ``workspace_roots``, ``workspace_max_bytes`` and
        ``artifacts_max_bytes``, read at each use so a reload applies."""
        self.state_dir = state_dir
        self.root = state_dir / "jobs"
        self.config = config

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
        a directory that caller does not own.

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

    def snapshot(self, job_id: str, source: Path) -> tuple[Path, int]:
        """Copy ``source`` to the job's workspace; returns (snapshot dir, bytes copied).

        Symbolic links are copied as links, never followed; sockets, FIFOs and
        devices are left out. The copy is refused past ``workspace_max_bytes``.

        Raises:
            InvalidParams: too large, or a file the agent cannot read.
        """
        limit = self.config.workspace_max_bytes
        total = 0
        for dirpath, _dirs, files in os.walk(source):
            for name in files:
                with contextlib.suppress(OSError):
                    info = os.lstat(os.path.join(dirpath, name))
                    if stat.S_ISREG(info.st_mode):
                        total += info.st_size
            if limit and total > limit:
                raise InvalidParams(
                    f"workspace: {source} is larger than workspace_max_bytes ({limit} bytes)"
                )
        dest = self.job_dir(job_id) / "workspace"
        partial = dest.with_name("workspace.partial")
        self.job_dir(job_id).mkdir(parents=True, exist_ok=True, mode=0o700)
        copied = [0]

        def copy(src: str, dst: str) -> str:
            mode = os.lstat(src).st_mode
            if not stat.S_ISREG(mode):
                return dst
            shutil.copy2(src, dst)
            copied[0] += os.path.getsize(dst)
            if limit and copied[0] > limit:
                raise InvalidParams(
                    f"workspace: {source} grew past workspace_max_bytes ({limit} bytes)"
                )
            return dst

        try:
            shutil.copytree(source, partial, symlinks=True, copy_function=copy)
            partial.rename(dest)
        except shutil.Error as exc:
            self.remove(job_id)
            first = exc.args[0][0] if exc.args and exc.args[0] else ("?", "?", str(exc))
            raise InvalidParams(f"workspace: cannot copy {first[0]}: {first[2]}") from None
        except OSError as exc:
            self.remove(job_id)
            raise InvalidParams(f"workspace: cannot copy {source}: {exc}") from None
        except BaseException:
            self.remove(job_id)
            raise
        return dest, copied[0]

    # -- artifacts -----------------------------------------------------------

    def pack(self, job_id: str, stream: IO[bytes]) -> dict[str, Any]:
        """Pack a tar stream of ``/out`` (as Podman sends it) into the job's archive.

        Member names lose the leading ``out/``. Nothing is written for an
        empty ``/out``; past ``artifacts_max_bytes`` (of file content) the
        partial archive is deleted and the excess recorded.

        Returns:
            The job's artifacts columns: ``artifacts_state`` (``packed``, ``none``
            or ``too_large``), ``_path``, ``_size``, ``_sha256``, ``_message``.
        """
        limit = self.config.artifacts_max_bytes
        final = self.archive_path(job_id)
        self.job_dir(job_id).mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = final.with_name(ARCHIVE_NAME + ".partial")
        content = 0
        members = 0
        root: str | None = None
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with (
                os.fdopen(fd, "wb") as raw,
                tarfile.open(fileobj=raw, mode="w:gz") as out,
                tarfile.open(fileobj=stream, mode="r|") as source,
            ):
                for member in source:
                    if root is None:
                        # The first member is /out itself: "" from Podman's own
                        # API, "out" from the Docker-compatible one.
                        root = member.name.strip("/")
                        continue
                    name = _relative(member.name, root)
                    if name is None:
                        continue
                    content += member.size if member.isfile() else 0
                    if limit and content > limit:
                        partial.unlink(missing_ok=True)
                        return _record(
                            "too_large",
                            message=f"/out holds more than artifacts_max_bytes ({limit} bytes); "
                            "nothing was kept",
                        )
                    member.name = name
                    if member.islnk():
                        member.linkname = _relative(member.linkname, root) or member.linkname
                    data = source.extractfile(member) if member.isfile() else None
                    out.addfile(member, data)
                    members += 1
            if members == 0:
                partial.unlink(missing_ok=True)
                return _record("none", message="no artifacts: /out was empty")
            os.replace(partial, final)
        except (tarfile.TarError, OSError) as exc:
            partial.unlink(missing_ok=True)
            return _record("error", message=f"could not pack /out: {exc}")
        return _record("packed", path=str(final), size=final.stat().st_size, sha256=_sha256(final))

    def pack_dir(self, job_id: str, source: Path) -> dict[str, Any] | None:
        """Pack /out from its directory on this host, as ``pack`` does.

        Returns:
            The artifacts columns, or None when the agent cannot read all of
            ``source`` (files of another user): then use ``pack``.
        """
        limit = self.config.artifacts_max_bytes
        try:
            names = sorted(os.listdir(source))
            content = 0
            for dirpath, dirs, files in os.walk(source, onerror=_raise):
                for name in dirs:
                    if not os.access(os.path.join(dirpath, name), os.R_OK | os.X_OK):
                        return None
                for name in files:
                    path = os.path.join(dirpath, name)
                    info = os.lstat(path)
                    if stat.S_ISREG(info.st_mode):
                        if not os.access(path, os.R_OK):
                            return None
                        content += info.st_size
        except OSError:
            return None
        if not names:
            return _record("none", message="no artifacts: /out was empty")
        if limit and content > limit:
            return _record(
                "too_large",
                message=f"/out holds more than artifacts_max_bytes ({limit} bytes); "
                "nothing was kept",
            )
        final = self.archive_path(job_id)
        self.job_dir(job_id).mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = final.with_name(ARCHIVE_NAME + ".partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as out:
                for name in names:
                    out.add(source / name, arcname=name, filter=_no_specials)
            os.replace(partial, final)
        except OSError:
            partial.unlink(missing_ok=True)
            return None
        return _record("packed", path=str(final), size=final.stat().st_size, sha256=_sha256(final))

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

    def remove(self, job_id: str) -> None:
        """Delete a job's directory; what cannot be deleted is logged, not raised."""
        path = self.job_dir(job_id)
        if not path.exists():
            return

        def failed(_function: Callable, name: str, exc: BaseException) -> None:
            log.warning("cannot remove %s: %s", name, exc)

        shutil.rmtree(path, onerror=lambda f, n, info: failed(f, n, info[1]))

    def sweep(self, known: set[str], now: float | None = None) -> list[str]:
        """Remove directories of jobs the database does not know (older than the grace)."""
        now = time.time() if now is None else now
        removed = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            if entry.name in known:
                continue
            with contextlib.suppress(OSError):
                if now - entry.lstat().st_mtime < SWEEP_GRACE:
                    continue
                log.info("removing %s (no such job)", entry)
                self.remove(entry.name)
                removed.append(entry.name)
        return removed


def _relative(name: str, root: str) -> str | None:
    """A member's name below the archived directory ``root``; None if it is not below."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if root:
        if parts[:1] != [root]:
            return None
        parts = parts[1:]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _raise(exc: OSError) -> None:
    raise exc


def _no_specials(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Keep files, directories and links; leave out devices and FIFOs."""
    return info if info.isfile() or info.isdir() or info.issym() or info.islnk() else None


def _record(state: str, **fields: Any) -> dict[str, Any]:
    out = {
        "artifacts_state": state,
        "artifacts_path": None,
        "artifacts_size": None,
        "artifacts_sha256": None,
        "artifacts_message": None,
    }
    out.update({f"artifacts_{k}": v for k, v in fields.items()})
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

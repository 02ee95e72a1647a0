"""Packing a job's /out into its archive, durably and without following a link.

Two sources: the volume's directory on this host (walked by file descriptor,
agent/adapters/snapshot.py's ``walk``), or the tar stream Podman sends of
the container's ``/out``. Either way a symbolic link the job left is packed
as a link (never its target's content, wherever it points: /etc/shadow, the
agent's database), devices and FIFOs are left out, and a hard link is kept
only when it points inside ``/out``. The archive is written beside its final
name, fsynced, renamed, and its directory fsynced: it is durable before the
row that records it is committed.

This module owns the archive's bytes and its record (state, size, sha256).
It never talks to Podman or the database, and knows no job but by its path.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from agent.adapters.snapshot import O_DIR, Refused, fsync_dir, walk
from agent.protocol.errors import StorageError

#: Errors that mean "no room": the end of the job is recorded once there is.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class _TooLarge(Exception):
    pass


def pack_stream(final: Path, stream: IO[bytes], limit: int) -> dict[str, Any]:
    """Pack a tar stream of ``/out`` (as Podman sends it) into ``final``.

    Member names lose the leading ``out/``. Nothing is written for an empty
    ``/out``; past ``limit`` bytes of file content (0: none) nothing is kept.

    Returns:
        The artifacts columns (``record``): ``packed``, ``none``, ``too_large``
        or ``error`` (the stream broke).

    Raises:
        StorageError: no space left to write the archive (nothing is kept).
    """
    root: list[str] = []

    def fill(out: tarfile.TarFile, grow: Callable[[int], None]) -> int:
        members = 0
        with tarfile.open(fileobj=stream, mode="r|") as source:
            for member in source:
                if not root:
                    # The first member is /out itself: "" from Podman's own
                    # API, "out" from the Docker-compatible one.
                    root.append(member.name.strip("/"))
                    continue
                name = _relative(member.name, root[0])
                if name is None:
                    continue
                if member.islnk():
                    target = _relative(member.linkname, root[0])
                    if target is None:
                        continue  # a hard link to something outside /out
                    member.linkname = target
                elif not (member.isfile() or member.isdir() or member.issym()):
                    continue  # devices and FIFOs
                member.name = name
                grow(member.size if member.isfile() else 0)
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
                members += 1
        return members

    try:
        return _write(final, limit, fill)
    except (tarfile.TarError, OSError) as exc:
        return record("error", message=f"could not pack /out: {exc}")


def pack_tree(final: Path, source: Path, limit: int) -> dict[str, Any] | None:
    """Pack ``/out`` from its directory on this host, as ``pack_stream`` does.

    Returns:
        The artifacts columns, or None when the agent cannot read all of
        ``source`` (files of another user): then pack Podman's stream.

    Raises:
        StorageError: no space left to write the archive (nothing is kept).
    """
    try:
        root_fd = os.open(source, O_DIR)
    except OSError:
        return None

    def fill(out: tarfile.TarFile, grow: Callable[[int], None]) -> int:
        members = 0
        for entry in walk(root_fd):
            if entry.kind in ("end", "special"):
                continue
            info = tarfile.TarInfo(entry.path)
            info.mode = entry.info.st_mode & 0o7777
            info.mtime = entry.info.st_mtime
            info.uid, info.gid = entry.info.st_uid, entry.info.st_gid
            data = None
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif entry.kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target or ""
            else:
                info.size = entry.info.st_size
                grow(info.size)
                data = os.fdopen(os.dup(entry.fd), "rb")
            try:
                out.addfile(info, data)
            finally:
                if data is not None:
                    data.close()
            members += 1
        return members

    try:
        return _write(final, limit, fill)
    except (Refused, tarfile.TarError, OSError):
        return None
    finally:
        os.close(root_fd)


def _write(
    final: Path, limit: int, fill: Callable[[tarfile.TarFile, Callable[[int], None]], int]
) -> dict[str, Any]:
    """Write an archive through ``fill`` beside ``final``, fsync it, rename it
    into place and fsync the directory; the record of what happened."""
    partial = final.with_name(final.name + ".partial")
    content = [0]

    def grow(size: int) -> None:
        content[0] += size
        if limit and content[0] > limit:
            raise _TooLarge

    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as out:
                members = fill(out, grow)
            raw.flush()
            os.fsync(raw.fileno())
        if members == 0:
            partial.unlink(missing_ok=True)
            return record("none", message="no artifacts: /out was empty")
        os.replace(partial, final)
        fsync_dir(final.parent)
    except _TooLarge:
        partial.unlink(missing_ok=True)
        return record(
            "too_large",
            message=f"/out holds more than artifacts_max_bytes ({limit} bytes); nothing was kept",
        )
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno in NO_SPACE:
            raise StorageError(f"no space left to pack /out into {final}: {exc.strerror}") from None
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return record("packed", path=str(final), size=final.stat().st_size, sha256=sha256(final))


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


def record(state: str, **fields: Any) -> dict[str, Any]:
    """The artifacts columns of a job: ``artifacts_state`` and ``artifacts_<field>``."""
    out = {
        "artifacts_state": state,
        "artifacts_path": None,
        "artifacts_size": None,
        "artifacts_sha256": None,
        "artifacts_message": None,
    }
    out.update({f"artifacts_{k}": v for k, v in fields.items()})
    return out


def sha256(path: Path) -> str:
    """The hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

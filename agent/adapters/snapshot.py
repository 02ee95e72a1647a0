"""Walking and copying a directory tree by file descriptor, so no rename race redirects it.

A workspace belongs to the submitter, who may rename its directories and
swap them for symbolic links while the agent copies it. Every step here works
on file descriptors: a path is opened one component at a time with
``O_NOFOLLOW``, each entry is opened relative to its directory's descriptor
(``dir_fd=``), and what was opened is checked with ``fstat`` (type, identity,
and whether the submitter may read it). A symbolic link is recorded as a link
and never followed; a special file is never opened. Whatever the tree holds
when the walk is done, only what the submitter could read was copied.

This module owns that walk (``open_dir``, ``walk``) and the copy of a tree
(``copy_tree``, with every file and directory fsynced). It never decides
limits (the caller's ``count`` does) and knows nothing of jobs.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Opening a directory: never through a symbolic link.
O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Opening a regular file: never through a link, never blocking (a file
#: swapped for a FIFO), never becoming a controlling terminal.
O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
#: The deepest tree walked (each level holds one descriptor open).
MAX_DEPTH = 128
CHUNK = 1 << 20
_ACL = "system.posix_acl_access"


class Refused(Exception):
    """The tree cannot be walked or copied; ``str()`` names the path and why."""


@dataclass(frozen=True)
class Reader:
    """Whose read permission a copy is checked against: a uid and its groups."""

    uid: int
    gids: frozenset[int]

    @classmethod
    def of(cls, uid: int, gid: int | None = None, groups: tuple[int, ...] = ()) -> Reader:
        """The reader for a peer's credentials; without a gid or groups (a
        schedule's owner), the user's own from the user and group databases."""
        gids = set(groups)
        if gid is not None:
            gids.add(gid)
        if gid is None or not groups:
            try:
                user = pwd.getpwuid(uid)
            except KeyError:
                user = None
            if user is not None:
                gids.update(os.getgrouplist(user.pw_name, user.pw_gid))
        return cls(uid=uid, gids=frozenset(gids))

    def may_read(self, info: os.stat_result, fd: int | None = None) -> bool:
        """Whether this reader may read what ``info`` describes (and list and
        enter it, for a directory), by its mode bits.

        Args:
            info: the ``fstat`` (or ``lstat``) of the file.
            fd: its descriptor, to look for a POSIX ACL: one that may deny
                this reader what the mode bits allow is refused to all but its
                owner.
        """
        if self.uid == 0:
            return True
        need = 0o5 if stat.S_ISDIR(info.st_mode) else 0o4
        mode = info.st_mode
        if info.st_uid == self.uid:
            return (mode >> 6) & need == need
        if fd is not None and _has_acl(fd):
            return False
        bits = (mode >> 3) if info.st_gid in self.gids else mode
        return bits & need == need


def _has_acl(fd: int) -> bool:
    try:
        os.getxattr(fd, _ACL)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise
    return True


@dataclass
class Entry:
    """One step of a walk: a directory entered or left, a file, a link, a special file."""

    #: The path below the walked directory, ``/``-separated.
    path: str
    #: ``dir``, ``end`` (all of a directory's entries were walked), ``file``,
    #: ``link`` or ``special``.
    kind: str
    #: ``fstat`` of the opened directory or file; ``lstat`` of a link or special file.
    info: os.stat_result
    #: The open descriptor of a directory or file (closed by the walk).
    fd: int | None = None
    #: A link's target, as stored.
    target: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def open_dir(path: Path, reader: Reader | None = None) -> int:
    """Open an absolute directory path without following any link on the way.

    Args:
        path: a resolved absolute path (no symbolic link in it).
        reader: when given, each directory on the way must be one it may enter.

    Returns:
        A descriptor of the directory (the caller closes it).

    Raises:
        Refused: a component is (now) a link or not a directory, cannot be
            opened, or the reader may not pass through it.
    """
    fd = os.open("/", O_DIR)
    try:
        for depth, part in enumerate(path.parts[1:], start=1):
            here = Path(*path.parts[: depth + 1])
            try:
                child = os.open(part, O_DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Refused(
                        f"{here} changed (it is no longer a directory); submit again"
                    ) from None
                raise Refused(f"cannot open {here}: {exc.strerror}") from None
            os.close(fd)
            fd = child
            info = os.fstat(fd)
            last = depth == len(path.parts) - 1
            if reader is not None and not last and not _may_enter(reader, info):
                raise Refused(f"uid {reader.uid} may not enter {here}")
        if reader is not None and not reader.may_read(os.fstat(fd), fd):
            raise Refused(_unreadable(str(path), os.fstat(fd), reader))
        return fd
    except BaseException:
        os.close(fd)
        raise


def _may_enter(reader: Reader, info: os.stat_result) -> bool:
    if reader.uid == 0:
        return True
    mode = info.st_mode
    if info.st_uid == reader.uid:
        return bool(mode & stat.S_IXUSR)
    if info.st_gid in reader.gids:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def walk(root_fd: int, *, depth: int = 0, prefix: str = "") -> Iterator[Entry]:
    """Every entry below the directory ``root_fd``, depth first, by name.

    A directory is yielded as ``dir`` before its entries and as ``end`` after
    them; the descriptors of directories and files are open while their entry
    is being handled and closed by the walk.

    Raises:
        Refused: an entry changed type or identity between being listed and
            opened (a rename race), or cannot be opened or listed.
    """
    if depth > MAX_DEPTH:
        raise Refused(f"{prefix.rstrip('/')} is nested deeper than {MAX_DEPTH} directories")
    try:
        with os.scandir(root_fd) as listing:
            names = sorted(entry.name for entry in listing)
    except OSError as exc:
        raise Refused(f"cannot list {prefix.rstrip('/') or '.'}: {exc.strerror}") from None
    for name in names:
        path = prefix + name
        try:
            info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise Refused(f"{path} was removed while it was copied; submit again") from None
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(name, dir_fd=root_fd)
            except OSError:
                raise Refused(f"{path} changed while it was copied; submit again") from None
            yield Entry(path, "link", info, target=target)
        elif stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            is_dir = stat.S_ISDIR(mode)
            fd = _open_same(name, root_fd, O_DIR if is_dir else O_FILE, path, info)
            try:
                opened = os.fstat(fd)
                if not is_dir:
                    yield Entry(path, "file", opened, fd=fd)
                    continue
                yield Entry(path, "dir", opened, fd=fd)
                yield from walk(fd, depth=depth + 1, prefix=path + "/")
                yield Entry(path, "end", opened, fd=fd)
            finally:
                os.close(fd)
        else:
            yield Entry(path, "special", info)


def _open_same(name: str, dir_fd: int, flags: int, path: str, listed: os.stat_result) -> int:
    """Open ``name`` and make sure it is what was listed (same type, same inode)."""
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.ENXIO):
            raise Refused(f"{path} changed while it was copied; submit again") from None
        raise Refused(f"cannot open {path}: {exc.strerror}") from None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino, stat.S_IFMT(opened.st_mode)) != (
        listed.st_dev,
        listed.st_ino,
        stat.S_IFMT(listed.st_mode),
    ):
        os.close(fd)
        raise Refused(f"{path} changed while it was copied; submit again")
    return fd


def _unreadable(path: str, info: os.stat_result, reader: Reader) -> str:
    return (
        f"{path} may not be read by uid {reader.uid} (mode {stat.S_IMODE(info.st_mode):04o}, "
        f"owner uid {info.st_uid}, group {info.st_gid}); a snapshot holds only what "
        "its submitter may read"
    )


def copy_tree(
    src_fd: int,
    dst_fd: int,
    *,
    reader: Reader | None,
    count: Callable[[int], None],
    label: str = ".",
) -> None:
    """Copy the tree below ``src_fd`` into the empty directory ``dst_fd``.

    Files keep their content, permission bits (without set-id bits) and
    times; links are copied as links; special files (devices, FIFOs, sockets)
    are left out. Each file is fsynced before its directory, each directory
    after its entries, ``dst_fd`` last (the caller fsyncs what names it).

    Args:
        src_fd: the source directory (from ``open_dir``).
        dst_fd: the destination directory.
        reader: every entry must be one it may read (None: no check).
        count: called with each block of bytes copied; raises to stop the copy.
        label: how messages name the source directory.

    Raises:
        Refused: an entry the reader may not read (naming it), or a race.
        OSError: writing the copy failed (e.g. ENOSPC).
    """
    stack = [dst_fd]
    try:
        for entry in walk(src_fd, prefix=label.rstrip("/") + "/"):
            checked = entry.kind not in ("link", "end")
            if reader is not None and checked and not reader.may_read(entry.info, entry.fd):
                raise Refused(_unreadable(entry.path, entry.info, reader))
            parent = stack[-1]
            if entry.kind == "dir":
                os.mkdir(entry.name, 0o700, dir_fd=parent)
                stack.append(os.open(entry.name, O_DIR, dir_fd=parent))
            elif entry.kind == "end":
                fd = stack.pop()
                try:
                    _settle(fd, entry.info)
                finally:
                    os.close(fd)
            elif entry.kind == "file":
                _copy_file(entry, parent, count)
            elif entry.kind == "link":
                os.symlink(entry.target, entry.name, dir_fd=parent)
        _settle(dst_fd, os.fstat(src_fd))
    finally:
        for fd in stack[1:]:
            os.close(fd)


def _copy_file(entry: Entry, parent: int, count: Callable[[int], None]) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    out = os.open(entry.name, flags, 0o600, dir_fd=parent)
    try:
        while True:
            sent = os.sendfile(out, entry.fd, None, CHUNK)
            if not sent:
                break
            count(sent)
        _settle(out, entry.info)
    finally:
        os.close(out)


def _settle(fd: int, info: os.stat_result) -> None:
    """Give a copied file or directory its source's mode and times, then fsync it."""
    os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """fsync a directory, so the names in it are durable."""
    fd = os.open(path, O_DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Deleting a tree a job may have made hard to delete.

A job runs as root in its user namespace, so what it leaves in its
workspace can be read-only directories (0555), unreadable ones (0000), or
files and directories chowned to a subordinate uid (``chown 1000 f`` in the
container). ``remove_tree`` walks by file descriptor, never following a link,
and gives each directory the agent owns the permissions needed to empty it
(the cheap first step: no Podman call). What only the user namespace's root
may delete is agent/adapters/podman/scrub.py's (a throwaway container). It
neither decides when to retry (agent/adapters/files.py does) nor raises.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from agent.adapters.snapshot import O_DIR


def say_cannot_remove(log: logging.Logger, path: Path, error: OSError | str) -> None:
    """Warn that ``path`` could not be removed yet, and how a person can remove it."""
    log.warning(
        "cannot remove %s: %s; will try again later (or remove it as the agent's "
        "user: podman unshare rm -rf %s)",
        path,
        error,
        path,
    )


def remove_tree(path: Path) -> OSError | None:
    """Delete ``path`` and everything below it, as far as the agent can.

    Returns:
        None when ``path`` is gone, else the first error met (the rest of the
        tree was still removed where possible).
    """
    try:
        parent = os.open(path.parent, O_DIR)
    except OSError as exc:
        return exc
    try:
        return _remove(parent, path.name, path)
    except RecursionError:
        return OSError(f"{path} is nested too deep to remove by descriptor")
    finally:
        os.close(parent)


def _remove(parent_fd: int, name: str, path: Path) -> OSError | None:
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return exc
        return None
    try:
        fd = _open_writable(parent_fd, name, info)
    except OSError as exc:
        return exc
    first: OSError | None = None
    try:
        with os.scandir(fd) as listing:
            names = [entry.name for entry in listing]
        for child in names:
            first = first or _remove(fd, child, path / child)
    except OSError as exc:
        first = first or exc
    finally:
        os.close(fd)
    if first is not None:
        return first
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except OSError as exc:
        return exc
    return None


def _open_writable(parent_fd: int, name: str, info: os.stat_result) -> int:
    """Open a directory to empty it, first giving it rwx for its owner when the
    agent owns it and it lacks them (a 0555 or 0000 directory)."""
    if info.st_uid == os.getuid() and info.st_mode & stat.S_IRWXU != stat.S_IRWXU:
        # O_PATH opens even a 0000 directory; chmod through /proc reaches the
        # very inode opened, never a link swapped in under the same name.
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=parent_fd)
        try:
            os.chmod(f"/proc/self/fd/{handle}", stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
        finally:
            os.close(handle)
    return os.open(name, O_DIR, dir_fd=parent_fd)

"""Run a command with a small tmpfs mounted over a directory, as an ordinary user.

    python smallfs.py DIR SIZE [--keep NAME] COMMAND [ARG...]

Unshares a user namespace (mapping only the caller's own uid and gid, so the
command keeps its identity and file ownership) and a mount namespace, mounts a
tmpfs of SIZE (e.g. 4m) on DIR there, and execs COMMAND. Nothing changes on
the host: the mount disappears with the last process of the namespace. Other
processes reach the tmpfs through /proc/PID/root/DIR. ``--keep NAME`` leaves
DIR/NAME the host's own directory (bound back over the tmpfs), for files that
processes outside the namespace write: conmon writes a job's output to
<state_dir>/logs, and sees the host's file system, not the tmpfs.

This is how the disk-full test gets a full file system without root: a tmpfs
needs CAP_SYS_ADMIN, which a process has in a user namespace it created.
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def main() -> None:
    target, size, *command = sys.argv[1:]
    keep = None
    if command[:1] == ["--keep"]:
        keep, command = command[1], command[2:]
        os.makedirs(os.path.join(target, keep), mode=0o700, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    for name, value in (
        ("setgroups", "deny"),
        ("uid_map", f"{uid} {uid} 1"),
        ("gid_map", f"{gid} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(value)
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    options = f"size={size},mode=0700".encode()
    # Hold the host's DIR/NAME open, so it stays reachable under the tmpfs.
    held = None if keep is None else os.open(os.path.join(target, keep), os.O_PATH)
    _check(libc.mount(b"tmpfs", target.encode(), b"tmpfs", 0, options), f"mount tmpfs on {target}")
    if held is not None:
        kept = os.path.join(target, keep)
        os.makedirs(kept, mode=0o700)
        source = f"/proc/self/fd/{held}".encode()
        _check(libc.mount(source, kept.encode(), None, MS_BIND, None), f"bind {keep} back")
        os.close(held)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()

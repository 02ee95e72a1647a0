"""Who is calling, and whether they may: the peer's credentials and the access policy.

The kernel reports the connecting process's uid, gid and groups (SO_PEERCRED,
SO_PEERGROUPS); the policy compares them with the configuration. Nothing here
reads or writes a request.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from agent.config import Config
from agent.protocol.errors import Unauthorized

#: getsockopt option for the peer's supplementary groups (Linux >= 4.13; not in
#: Python's socket module). Like SO_PEERCRED, taken at connect() time.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


@dataclass(frozen=True)
class Peer:
    """Who is calling: taken from the socket's SO_PEERCRED."""

    pid: int
    uid: int
    gid: int
    #: Supplementary group IDs (SO_PEERGROUPS), for the access check.
    groups: tuple[int, ...] = ()


def peer_of(conn: socket.socket) -> Peer:
    """The connecting process's credentials, as the kernel took them at connect().

    The pid is for the log and the job record only: a process can exit and its
    pid be reused, but uid and groups are the peer's own and cannot be forged.
    """
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(pid=pid, uid=uid, gid=gid, groups=_peer_groups(conn))


def _peer_groups(conn: socket.socket) -> tuple[int, ...]:
    """The peer's supplementary group IDs (SO_PEERGROUPS); empty where unsupported."""
    for size in (64, 65536):  # most processes have few groups; NGROUPS_MAX is 65536
        try:
            raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * size)
        except OSError as exc:
            if exc.errno == errno.ERANGE:
                continue
            return ()
        return struct.unpack(f"{len(raw) // 4}I", raw)
    return ()


def account(uid: int) -> pwd.struct_passwd | None:
    """The password-database entry of ``uid`` (None: it has none)."""
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def memberships(peer: Peer, names: Iterable[str]) -> frozenset[str]:
    """Which of the groups ``names`` the peer is a member of.

    A member has it as its primary or a supplementary group as the kernel
    reported them for the connecting process, or is listed by the group
    database (or has it as its account's primary group). A peer known by its
    uid alone (a schedule's owner, when its run starts) is judged by the
    databases.
    """
    user = account(peer.uid)
    gids = {peer.gid, *peer.groups} if isinstance(peer, Peer) else set()
    if user:
        gids.add(user.pw_gid)
        if not isinstance(peer, Peer):
            gids.update(os.getgrouplist(user.pw_name, user.pw_gid))
    found = set()
    for name in names:
        try:
            group = grp.getgrnam(name)
        except KeyError:
            continue
        if group.gr_gid in gids or (user and user.pw_name in group.gr_mem):
            found.add(name)
    return frozenset(found)


class AccessPolicy:
    """Who may talk to the agent: itself, root, listed users, members of listed groups.

    The groups are ``socket_group`` and ``allowed_groups``; a peer is a member
    when its primary or a supplementary group (as the kernel reports them for
    the connecting process) is one of them, or when the group database lists
    its user. ``allowed_users`` holds user names or numeric uids. Looked up on
    every connection, so changes to the group database apply at once.
    """

    def __init__(self, config: Config):
        self.config = config

    def check(self, peer: Peer) -> None:
        """Return if ``peer`` may connect.

        Raises:
            Unauthorized: naming the uid and how to grant access.
        """
        if peer.uid in (0, os.getuid()):
            return
        user = account(peer.uid)
        allowed_users = set(self.config.allowed_users)
        if str(peer.uid) in allowed_users or (user and user.pw_name in allowed_users):
            return
        names = [*self.config.allowed_groups]
        if self.config.socket_group:
            names.append(self.config.socket_group)
        if memberships(peer, names):
            return
        who = f"uid {peer.uid}" + (f" ({user.pw_name})" if user else "")
        groups = ", ".join(dict.fromkeys(names)) or "none configured"
        raise Unauthorized(
            f"{who} may not use this agent: only its own user, root, members of the "
            f"allowed groups ({groups}) and allowed_users may; ask for membership of "
            f"group {self.config.socket_group or 'choo'} or an entry in allowed_users"
        )

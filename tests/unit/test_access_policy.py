"""peers.AccessPolicy: who may connect, decided from the peer's credentials."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from agent.api import listener, peers
from agent.api.peers import Peer
from agent.config import Config
from agent.protocol.errors import Unauthorized

ME = os.getuid()


@pytest.fixture
def accounts(monkeypatch):
    users = {
        5001: pwd.struct_passwd(("alice", "x", 5001, 5001, "", "/home/alice", "/bin/sh")),
        5002: pwd.struct_passwd(("bob", "x", 5002, 5002, "", "/home/bob", "/bin/sh")),
        5003: pwd.struct_passwd(("carol", "x", 5003, 7000, "", "/home/carol", "/bin/sh")),
    }
    groups = {
        "choo": grp.struct_group(("choo", "x", 7000, ["bob"])),
        "ci": grp.struct_group(("ci", "x", 7001, [])),
    }

    def getpwuid(uid):
        if uid not in users:
            raise KeyError(uid)
        return users[uid]

    def getgrnam(name):
        if name not in groups:
            raise KeyError(name)
        return groups[name]

    monkeypatch.setattr(peers.pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(peers.grp, "getgrnam", getgrnam)


def policy(**settings) -> peers.AccessPolicy:
    return peers.AccessPolicy(Config(**{"socket_group": "choo", **settings}))


def peer(uid, gid=None, groups=()):
    return Peer(pid=42, uid=uid, gid=uid if gid is None else gid, groups=tuple(groups))


@pytest.mark.usefixtures("accounts")
@pytest.mark.parametrize(
    ("settings", "who"),
    [
        ({}, peer(0)),  # root
        ({}, peer(ME)),  # the agent's own user
        ({}, peer(5002)),  # bob: listed member of choo in the group database
        ({}, peer(5003)),  # carol: choo is her primary group in passwd
        ({}, peer(9999, gid=7000)),  # no account, but the process's gid is choo's
        ({}, peer(9999, groups=[1, 7000])),  # a supplementary group (SO_PEERGROUPS)
        ({"allowed_users": ["alice"]}, peer(5001)),
        ({"allowed_users": ["9999"]}, peer(9999)),  # by uid, for users with no name
        ({"allowed_groups": ["ci"]}, peer(9999, groups=[7001])),
    ],
)
def test_allowed(settings, who):
    policy(**settings).check(who)


@pytest.mark.usefixtures("accounts")
@pytest.mark.parametrize(
    ("settings", "who"),
    [
        ({}, peer(5001)),  # alice: in no allowed group
        ({}, peer(9999)),  # no account at all
        ({"allowed_users": ["bob"]}, peer(5001)),
        ({"allowed_groups": ["ci"]}, peer(5001, groups=[7002])),
        ({"socket_group": ""}, peer(5002)),  # choo is no longer an allowed group
        ({"allowed_groups": ["no-such-group"]}, peer(5001)),
    ],
)
def test_refused(settings, who):
    with pytest.raises(Unauthorized) as excinfo:
        policy(**settings).check(who)
    assert excinfo.value.code == -32006
    assert f"uid {who.uid}" in excinfo.value.message


@pytest.mark.usefixtures("accounts")
def test_refusal_names_the_user_and_the_way_in():
    with pytest.raises(Unauthorized) as excinfo:
        policy(allowed_groups=["ci"]).check(peer(5001))
    message = excinfo.value.message
    assert "uid 5001 (alice)" in message
    assert "ci, choo" in message and "allowed_users" in message


def test_the_fd_limit_is_raised_within_the_hard_limit(monkeypatch):
    calls = []
    monkeypatch.setattr(listener.resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(listener.resource, "setrlimit", lambda which, v: calls.append(v))
    listener.raise_fd_limit(256)
    assert calls == [(256 * listener.FDS_PER_CONNECTION + 256, 4096)]
    calls.clear()
    listener.raise_fd_limit(10_000)
    assert calls == [(4096, 4096)]
    calls.clear()
    monkeypatch.setattr(listener.resource, "getrlimit", lambda which: (65536, 65536))
    listener.raise_fd_limit(256)
    assert calls == []  # never lowered


@pytest.mark.usefixtures("accounts")
def test_a_schedule_owner_known_by_uid_alone_is_judged_by_the_databases(monkeypatch):
    """The scheduler submits a schedule's runs for its owner's uid (no socket peer):
    its groups come from the group database (getgrouplist) and passwd."""

    class Owner:  # like agent/runtime/scheduler.py's _Owner
        uid, pid = 5001, None

    monkeypatch.setattr(peers.os, "getgrouplist", lambda name, gid: [gid, 7001])
    assert peers.memberships(Owner(), ["ci", "choo"]) == {"ci"}
    assert peers.memberships(peer(5001), ["ci"]) == frozenset()  # a peer: the kernel's groups
    assert peers.memberships(peer(5001, groups=[7001]), ["ci"]) == {"ci"}

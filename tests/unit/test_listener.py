"""agent.api.listener: the socket's group, applied only where it concerns the agent."""

from __future__ import annotations

import errno
import logging

import pytest

from agent.api import listener


@pytest.fixture
def as_user(monkeypatch):
    """Pretend to be uid 1000 in groups ``groups``; record chown calls."""
    chowns = []

    def setup(groups, chown_error=None):
        monkeypatch.setattr(listener.os, "geteuid", lambda: 1000)
        monkeypatch.setattr(listener.os, "getegid", lambda: 1000)
        monkeypatch.setattr(listener.os, "getgroups", lambda: groups)

        def chown(path, uid, gid):
            chowns.append(gid)
            if chown_error:
                raise OSError(chown_error, "Operation not permitted")

        monkeypatch.setattr(listener.os, "chown", chown)
        return chowns

    return setup


def test_a_group_the_user_is_not_in_is_left_alone_silently(tmp_path, as_user, caplog):
    chowns = as_user(groups=[1000])
    caplog.set_level(logging.DEBUG)
    sock = listener.bind(tmp_path / "agent.sock", "root")
    sock.close()
    assert chowns == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_member_gets_the_group_or_a_warning(tmp_path, as_user, caplog):
    chowns = as_user(groups=[1000, 0])
    listener.bind(tmp_path / "a.sock", "root").close()
    assert chowns == [0]
    as_user(groups=[1000, 0], chown_error=errno.EPERM)
    listener.bind(tmp_path / "b.sock", "root").close()
    assert any("socket group root not applied" in r.getMessage() for r in caplog.records)


def test_a_missing_group_is_no_warning(tmp_path, as_user, caplog):
    chowns = as_user(groups=[1000])
    listener.bind(tmp_path / "agent.sock", "no-such-group-here").close()
    assert chowns == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]

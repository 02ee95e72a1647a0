"""Whether Podman sees the agent's directory at the same path (agent/adapters/podman/peer_view.py).

Over a real unix socket: a listener of this process's sees what it sees, a
directory by another inode at that path is told apart; every URL or socket
that cannot tell answers "no" (the jobs get volumes) without raising.
"""

from __future__ import annotations

import logging
import os
import socket

import pytest

from agent.adapters.out_dirs import OutDirs
from agent.adapters.podman import peer_view
from agent.adapters.podman.peer_view import podman_view, socket_path


@pytest.fixture
def listening(tmp_path):
    path = tmp_path / "podman.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        yield path


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("unix:///run/user/1000/podman/podman.sock", "/run/user/1000/podman/podman.sock"),
        ("http+unix://%2Frun%2Fuser%2F1000%2Fpodman.sock", "/run/user/1000/podman.sock"),
        ("tcp://127.0.0.1:8080", None),
        ("ssh://core@host/run/podman/podman.sock", None),
    ],
)
def test_only_a_local_unix_socket_names_a_path(url, path):
    assert socket_path(url) == path


def test_a_listener_of_ours_sees_our_directory(listening, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    view = podman_view(f"unix://{listening}", out)
    assert view.same, view.reason
    assert f"pid {os.getpid()}" in view.reason


def test_another_directory_at_that_path_is_not_the_same(listening, tmp_path, monkeypatch):
    """What a mount namespace of the agent's own looks like: the path, another inode."""
    out = tmp_path / "out"
    out.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        seen_by_podman = str(path).startswith("/proc/")
        return real_stat(other if seen_by_podman else path, *args, **kwargs)

    monkeypatch.setattr(peer_view.os, "stat", stat)
    view = podman_view(f"unix://{listening}", out)
    assert not view.same and "sees another directory" in view.reason


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("tcp://127.0.0.1:8080", "not on a local unix socket"),
        ("unix:///nonexistent/podman.sock", "cannot ask who listens"),
    ],
)
def test_what_cannot_be_told_is_not_the_same(tmp_path, url, says):
    view = podman_view(url, tmp_path)
    assert not view.same and says in view.reason


def test_a_directory_podman_cannot_find_is_not_the_same(listening, tmp_path, monkeypatch):
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory")
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(peer_view.os, "stat", stat)
    view = podman_view(f"unix://{listening}", tmp_path)
    assert not view.same and "No such file or directory" in view.reason


def test_out_dirs_choose_directories_only_where_podman_sees_them(listening, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = OutDirs(tmp_path / "state" / "out", lambda: None)
    assert out.info()["mode"] == "volume", "none before the check"
    out.choose(f"unix://{listening}")
    assert out.info() == {"mode": "directory", "reason": out.reason} and out.root.is_dir()
    assert "/out of a job running as root: a directory" in caplog.text
    out.choose("tcp://127.0.0.1:8080")
    assert out.info()["mode"] == "volume" and "not on a local unix socket" in out.reason

"""agent.adapters.podman_service: liveness is a real ping; a leftover service is recognised.

Real Unix sockets and real processes; no Podman (the integration tests in
tests/faults/test_agent_lifecycle.py run the real service).
"""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

from agent.adapters.podman_service import PID_FILE, PodmanService, answers


def _server(path: Path, reply: bytes | None) -> socket.socket:
    """A listener on ``path`` answering each request with ``reply`` (None: never answers)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        held = []
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(4096)
            if reply is None:
                held.append(conn)  # accepted, read, never answered
            else:
                conn.sendall(reply)
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_service_answering_its_ping_answers(tmp_path):
    path = tmp_path / "ok.sock"
    with _server(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"):
        assert answers(f"unix://{path}")


def test_a_socket_that_accepts_but_never_answers_does_not(tmp_path):
    path = tmp_path / "stuck.sock"
    with _server(path, None):
        assert not answers(f"unix://{path}", timeout=0.3)


def test_an_error_status_or_no_socket_does_not(tmp_path):
    path = tmp_path / "err.sock"
    with _server(path, b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"):
        assert not answers(f"unix://{path}")
    assert not answers(f"unix://{tmp_path}/none.sock")
    assert not answers("tcp://127.0.0.1:1")


def test_only_a_live_service_on_our_url_is_adopted(tmp_path):
    url = f"unix://{tmp_path}/podman.sock"
    service = PodmanService(url, tmp_path)
    assert not service.adopt()  # no pid file
    # A process whose command line is that of a service on our URL.
    fake = subprocess.Popen(
        ["sh", "-c", "read x", "podman", "system", "service", url], stdin=subprocess.PIPE
    )
    other = subprocess.Popen(
        ["sh", "-c", "read x", "podman", "system", "service", "unix:///x"], stdin=subprocess.PIPE
    )
    try:
        (tmp_path / PID_FILE).write_text(f"{other.pid}\n")
        assert not service.adopt()  # a service, but not on our URL
        (tmp_path / PID_FILE).write_text(f"{fake.pid}\n")
        assert service.adopt() and service.pid == fake.pid
        service.stop()  # not our child: SIGTERM, then waits for it to go
        assert fake.wait() != 0
        assert not (tmp_path / PID_FILE).exists()
        (tmp_path / PID_FILE).write_text(f"{fake.pid}\n")
        assert not service.adopt()  # the number of a process that is gone
    finally:
        for proc in (fake, other):
            proc.kill()
            proc.wait()

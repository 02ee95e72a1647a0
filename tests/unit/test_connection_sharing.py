"""Clients between calls hold no database connection: they share the warm ones.

A real Server on a real Unix socket over a real SQLite store (no Podman: no
call here starts a job). A client's thread gives its connection back before
it waits for the next request, so a second client's call is served by the
very connection the first one's used (schema read, pages cached), not by one
of its own opened cold, while the first stays connected.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading

import pytest

from agent.adapters.joblogs import JobLogs
from agent.api.schedules import Schedules
from agent.api.server import Server
from agent.api.service import Service
from agent.config import Config
from agent.protocol import spec as specs
from agent.runtime.changes import ChangeFeed
from agent.runtime.scheduler import Scheduler
from agent.storage.store import Store
from tests.harness import wait_until

LIST = b'{"jsonrpc":"2.0","id":1,"method":"job.list","params":{"all":true,"limit":10}}\n'


@pytest.fixture
def serving(tmp_path):
    """(store, socket path) of a Server answering on a thread of its own."""
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    config = Config(socket=tmp_path / "agent.sock", state_dir=tmp_path)
    service = Service(
        store, ChangeFeed(), JobLogs(tmp_path / "logs"), config, wake=lambda: None, status=dict
    )
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(config.socket))
    listening.listen()
    server = Server(
        listening, service, Schedules(store, Scheduler(store, service, config), service), config
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield store, str(config.socket)
    finally:
        server.stop()
        thread.join()
        store.close()


def listed(client: socket.socket) -> list[str]:
    """The IDs a job.list on ``client`` answers with."""
    client.sendall(LIST)
    answer = client.makefile("rb").readline()
    return [job["id"] for job in json.loads(answer)["result"]["jobs"]]


def test_a_second_client_is_served_by_the_connection_the_first_gave_back(serving):
    store, path = serving
    job = store.add_job(specs.normalize({"image": "alpine"}), trigger="cli", queue_limit=10)
    store.release_thread()  # this thread's, so the pool starts empty of others
    store.db.close_idle()
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(socket.socket(socket.AF_UNIX))
        first.connect(path)
        assert listed(first) == [job["id"]]
        # Answered, the first client's thread waits for its next request...
        wait_until(lambda: len(store.db._idle) == 1, what="the first connection given back")
        (warm,) = store.db._idle
        second = stack.enter_context(socket.socket(socket.AF_UNIX))
        second.connect(path)
        assert listed(second) == [job["id"]]
        # ...so the second's call took that connection, and gave it back too.
        wait_until(lambda: len(store.db._idle) == 1, what="the second connection given back")
        assert store.db._idle == [warm]
        assert listed(first) == [job["id"]]  # the first client is still served

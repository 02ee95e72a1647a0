"""agent.client.Client: typed methods send the protocol's params; follow and download.

No agent: ``stream`` (the one JSON-RPC round trip) is replaced by a script.
"""

from __future__ import annotations

import base64
import hashlib
import io

import pytest

from agent import client as client_module
from agent.client import Client, entry_bytes
from agent.protocol import methods
from agent.protocol.errors import AgentUnavailable, ChooError


class Scripted(Client):
    """A client whose calls are answered by ``answers``, one function per call."""

    def __init__(self, *answers):
        super().__init__("/nonexistent.sock")
        self.answers = list(answers)
        self.sent: list[tuple[str, dict]] = []

    def stream(self, method, params, on_notification):
        self.sent.append((method, params))
        return self.answers.pop(0)(on_notification)


def test_typed_methods_send_only_params_off_their_defaults():
    choo = Scripted(lambda _: {"id": "J"}, lambda _: {"jobs": []}, lambda _: "pong")
    choo.submit({"image": "alpine"}, trigger=methods.CLI_TRIGGER)
    choo.list(all=False, limit=methods.DEFAULT_LIST_LIMIT)
    assert choo.ping() == "pong"
    assert choo.sent == [
        (methods.SUBMIT, {"spec": {"image": "alpine"}, "trigger": "cli"}),
        (methods.LIST, {"all": False}),
        (methods.PING, {}),
    ]


def test_follow_resumes_after_the_last_entry_across_a_lost_agent(monkeypatch):
    monkeypatch.setattr(client_module.time, "sleep", lambda seconds: None)

    def first(notify):
        notify(methods.LOG_LINE, {"stream": "stdout", "text": "one\n", "cursor": "1:40"})
        raise AgentUnavailable("the agent closed the connection")

    def second(notify):
        notify(methods.LOG_LINE, {"stream": "stdout", "data": "/3R3bw==", "cursor": "1:80"})
        return {"entries": 1, "job": {"id": "J", "state": "succeeded"}}

    choo = Scripted(first, second)
    chunks, lost = [], []
    result = choo.follow(
        "J", lambda entry: chunks.append(entry_bytes(entry)), on_lost=lambda: lost.append(1)
    )
    assert result["job"]["state"] == "succeeded"
    assert chunks == [b"one\n", b"\xfftwo"] and lost == [1]
    assert [params.get("after") for _, params in choo.sent] == [None, "1:40"]
    assert all(params["follow"] is True for _, params in choo.sent)


def test_download_checks_size_and_digest():
    data = b"x" * 10
    record = {"id": "J", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    chunk = {"data": base64.b64encode(data).decode(), "eof": True}
    sink = io.BytesIO()
    assert Scripted(lambda _: chunk).download(record, sink) == len(data)
    assert sink.getvalue() == data
    with pytest.raises(ChooError, match="changed or was cut short"):
        Scripted(lambda _: chunk).download({**record, "sha256": "0" * 64}, io.BytesIO())

"""What a JSON-RPC 2.0 answer must look like, and a corpus of hostile lines.

Shared by the unit tests of ``rpc.handle`` and the tests over the real socket.
"""

from __future__ import annotations

import json
from typing import Any

PING = b'{"jsonrpc":"2.0","id":"probe","method":"agent.ping"}'


def check_response(message: Any) -> None:
    """Assert ``message`` is one JSON-RPC 2.0 Response object (section 5)."""
    assert isinstance(message, dict), message
    assert message.get("jsonrpc") == "2.0", message
    assert "id" in message, message
    assert isinstance(message["id"], str | int | float | type(None)), message
    assert not isinstance(message["id"], bool), message
    assert ("result" in message) != ("error" in message), message
    assert set(message) <= {"jsonrpc", "id", "result", "error"}, message
    if "error" in message:
        error = message["error"]
        assert isinstance(error, dict), message
        assert isinstance(error.get("code"), int) and not isinstance(error["code"], bool), message
        assert isinstance(error.get("message"), str), message
        assert set(error) <= {"code", "message", "data"}, message


def check_answer(text: str | bytes) -> list[dict]:
    """Assert ``text`` is a valid answer (one response, or a non-empty batch of
    them) and return its responses."""
    _no_constants(text)
    value = json.loads(text)
    if isinstance(value, list):
        assert value, "an empty array is never a valid answer"
        for item in value:
            check_response(item)
        return value
    check_response(value)
    return [value]


def _no_constants(text: str | bytes) -> None:
    """Python's json accepts NaN/Infinity; JSON does not."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer is not JSON")

    json.loads(text, parse_constant=refuse)


def codes(text: str | bytes) -> list[int | None]:
    return [r.get("error", {}).get("code") for r in check_answer(text)]


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


#: (line, what the answer must be): a list of expected error codes (None for a
#: result) in order, or "none" for no answer at all. A batch answer is the
#: list of its members' codes.
NASTY: list[tuple[bytes, list[int | None] | str]] = [
    (b"this is not json", [-32700]),
    (b"{", [-32700]),
    (b'{"jsonrpc":"2.0","method":"agent.ping","id":1', [-32700]),
    (b"\xff\xfe\xfd", [-32700]),  # not UTF-8
    (b'{"jsonrpc":"2.0","method":"agent.ping","id":"\xc3\x28"}', [-32700]),
    (b"NaN", [-32700]),
    (b'{"jsonrpc":"2.0","method":"agent.ping","id":Infinity}', [-32700]),
    (b'{"jsonrpc":"2.0","method":"agent.ping","id":1e400}', [-32700]),
    (b'{"jsonrpc":"2.0","method":"agent.ping","id":' + b"9" * 5000 + b"}", [-32700]),
    (deep(100_000), [-32700]),
    (b'{"jsonrpc":"2.0","method":"agent.ping","id":1,"params":' + deep(900) + b"}", [-32602]),
    (b"[]", [-32600]),
    (b"{}", [-32600]),
    (b"1", [-32600]),
    (b'"agent.ping"', [-32600]),
    (b"null", [-32600]),
    (b"true", [-32600]),
    (b"[1]", [-32600]),
    (b"[1,2,3]", [-32600, -32600, -32600]),
    (b"[[]]", [-32600]),
    (b"[[" + PING + b"]]", [-32600]),
    (b'{"id":1,"method":"agent.ping"}', [-32600]),  # no "jsonrpc"
    (b'{"jsonrpc":"1.0","id":1,"method":"agent.ping"}', [-32600]),
    (b'{"jsonrpc":2.0,"id":1,"method":"agent.ping"}', [-32600]),
    (b'{"jsonrpc":"2.0","id":1,"method":1}', [-32600]),
    (b'{"jsonrpc":"2.0","id":1}', [-32600]),
    (b'{"jsonrpc":"2.0","id":true,"method":"agent.ping"}', [-32600]),
    (b'{"jsonrpc":"2.0","id":{},"method":"agent.ping"}', [-32600]),
    (b'{"jsonrpc":"2.0","id":[1],"method":"agent.ping"}', [-32600]),
    (b'{"jsonrpc":"2.0","id":1,"method":"agent.ping","params":"x"}', [-32600]),
    (b'{"jsonrpc":"2.0","id":1,"method":"agent.ping","params":7}', [-32600]),
    (b'{"jsonrpc":"2.0","id":1,"method":"no.such"}', [-32601]),
    (b'{"jsonrpc":"2.0","id":1,"method":""}', [-32601]),
    (b'{"jsonrpc":"2.0","id":1,"method":"agent.ping","params":[1]}', [-32602]),
    (b'{"jsonrpc":"2.0","id":1,"method":"agent.ping","params":{"x":1}}', [-32602]),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.get","params":{"id":7}}', [-32602]),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.get","params":{"id":"' + b"Z" * 30 + b'"}}', [-32602]),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.get","params":{"id":"\\ud800"}}', [-32602]),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.list","params":{"limit":1e300}}', [-32602]),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"job.list","params":{"limit":' + b"9" * 400 + b"}}",
        [-32602],
    ),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.wait","params":{"id":"0","timeout":-1}}', [-32001]),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.logs","params":{"id":"0","tail":-1}}', [-32001]),
    (b'{"jsonrpc":"2.0","id":1,"method":"job.submit","params":{"spec":[]}}', [-32602]),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"job.submit","params":{"spec":{"image":"a","timeout":'
        + b"9" * 400
        + b"}}}",
        [-32602],
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"job.submit","params":{"spec":{"image":"a",'
        b'"resources":{"cpus":' + b"9" * 400 + b"}}}}",
        [-32602],
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"job.submit","params":{"spec":{"image":"a",'
        b'"resources":{"memory":"' + b"9" * 400 + b'g"}}}}',
        [-32602],
    ),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"job.submit","params":{"spec":{"image":"a",'
        b'"env":' + deep(500) + b"}}}",
        [-32602],
    ),
    # notifications: no answer, even to an unknown method or bad params
    (b'{"jsonrpc":"2.0","method":"agent.ping"}', "none"),
    (b'{"jsonrpc":"2.0","method":"no.such"}', "none"),
    (b'{"jsonrpc":"2.0","method":"agent.ping","params":[1,2]}', "none"),
    (b'[{"jsonrpc":"2.0","method":"agent.ping"},{"jsonrpc":"2.0","method":"x"}]', "none"),
    # batches: one answer per request, none per notification, in order
    (b"[" + PING + b"," + PING + b"]", [None, None]),
    (b"[" + PING + b",1]", [None, -32600]),
    (b'[1,{"jsonrpc":"2.0","method":"agent.ping"},' + PING + b"]", [-32600, None]),
    (b'[{"jsonrpc":"2.0","id":5,"method":"nope"},{"jsonrpc":"2.0","method":"nope"}]', [-32601]),
    (b"[" + b",".join([PING] * 200) + b"]", [None] * 200),
    # still fine: odd but valid
    (b'  {"jsonrpc":"2.0","id":null,"method":"agent.ping"}  \r', [None]),
    (b'{"jsonrpc":"2.0","id":-1.5,"method":"agent.ping","params":[]}', [None]),
    (b'{"jsonrpc":"2.0","id":"\\u0000\\ud800","method":"agent.ping","params":{}}', [None]),
    (b'{"jsonrpc":"2.0","id":' + b"1" * 300 + b',"method":"agent.ping"}', [None]),
]

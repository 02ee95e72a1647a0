"""agent.api.rpc.handle: every line gets what JSON-RPC 2.0 asks for, whatever it holds.

A real Service over a real SQLite store; no Podman (no call here starts a job).
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from jsonrpcserver import dispatch_to_serializable

from agent.adapters.joblogs import JobLogs
from agent.api import rpc
from agent.api.peers import Peer
from agent.api.schedules import Schedules
from agent.api.service import Service
from agent.config import Config
from agent.runtime.changes import ChangeFeed
from agent.runtime.scheduler import Scheduler
from agent.storage.store import Store
from tests.rpc_checks import NASTY, PING, check_answer, codes
from tests.rpc_fuzz import lines, requests


@contextlib.contextmanager
def serving(root):
    """A Call over a Service and Schedules on a fresh store under ``root``."""
    store = Store(root / "choo.db", ChangeFeed())
    store.open()
    config = Config(socket=root / "agent.sock", state_dir=root)
    service = Service(
        store, ChangeFeed(), JobLogs(root / "logs"), config, wake=lambda: None, status=dict
    )
    schedules = Schedules(store, Scheduler(store, service, config), service)
    try:
        yield rpc.Call(
            service=service,
            schedules=schedules,
            peer=Peer(pid=1, uid=1000, gid=1000),
            notify=lambda method, params: None,
            closed=lambda: False,
        )
    finally:
        store.close()


@pytest.fixture
def call(tmp_path):
    with serving(tmp_path) as made:
        yield made


@pytest.fixture
def service(call):
    return call.service


@pytest.fixture
def twin(tmp_path):
    """A second agent's Call, on a store of its own: the oracle's."""
    root = tmp_path / "twin"
    root.mkdir()
    with serving(root) as made:
        yield made


def answer(line: bytes, call) -> str:
    # The server refuses bytes that are not UTF-8 before rpc sees them.
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return json.dumps({"jsonrpc": "2.0", "error": {"code": -32700, "message": "x"}, "id": None})
    return rpc.handle(text, call)


@pytest.mark.parametrize(("line", "expected"), NASTY, ids=[repr(x[0][:40]) for x in NASTY])
def test_nasty_line_gets_the_answer_the_spec_asks_for(line, expected, call, service):
    reply = answer(line, call)
    if expected == "none":
        assert reply == ""
    else:
        assert codes(reply) == expected
    assert service.store.list(limit=10) == []  # nothing refused was stored


def test_ids_are_echoed_exactly(call):
    for request_id in ["x", 0, -7, 2**70, 1.5, None, "\u00e9\U0001f600"]:
        line = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "agent.ping"})
        assert json.loads(rpc.handle(line, call)) == {
            "jsonrpc": "2.0",
            "result": "pong",
            "id": request_id,
        }


def test_batch_answers_in_order_and_skips_notifications(call):
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "agent.ping"},
        {"jsonrpc": "2.0", "method": "agent.ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        7,
        {"jsonrpc": "2.0", "id": 3, "method": "agent.ping"},
    ]
    replies = check_answer(rpc.handle(json.dumps(batch), call))
    assert [(r["id"], r.get("result"), r.get("error", {}).get("code")) for r in replies] == [
        (1, "pong", None),
        (2, None, -32601),
        (None, None, -32600),
        (3, "pong", None),
    ]


@pytest.mark.parametrize("line", [b"[1]", b"[" + PING + b"]", b"[[]]"])
def test_a_batch_is_answered_with_an_array_even_of_one(line, call):
    assert isinstance(json.loads(rpc.handle(line.decode(), call)), list)


def test_a_failing_method_leaks_nothing(call, service, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("/secret/internal/path token=abc")

    monkeypatch.setattr(service, "info", broken)
    reply = rpc.handle('{"jsonrpc":"2.0","id":9,"method":"agent.info"}', call)
    assert codes(reply) == [-32603]
    assert "secret" not in reply and "token" not in reply


def test_an_unserialisable_result_is_an_internal_error(call, service, monkeypatch):
    monkeypatch.setattr(service, "info", lambda: {"x": float("nan")})
    reply = rpc.handle('{"jsonrpc":"2.0","id":9,"method":"agent.info"}', call)
    assert json.loads(reply)["id"] == 9
    assert codes(reply) == [-32603]


def test_submit_records_the_caller(call, service):
    line = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "job.submit", "params": {"spec": {"image": "a"}}}
    )
    job = json.loads(rpc.handle(line, call))["result"]
    assert (job["submitter_uid"], job["submitter_pid"]) == (1000, 1)


# -- property: whatever arrives, the answer is valid JSON-RPC or nothing --------


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(line=lines("localhost/choo-test"))
def test_any_line_gets_a_valid_answer_or_none(line, call):
    reply = rpc.handle(line, call)
    if reply:
        check_answer(reply)
        assert "\n" not in reply


# -- differential: jsonrpcserver's whole pipeline is the oracle ------------------


def oracle(request, call):
    """What jsonrpcserver's public dispatch (its JSON-schema validator, its
    batch plumbing) answers to one parsed request object."""
    return dispatch_to_serializable(
        "", methods=rpc.METHODS, context=call, deserializer=lambda _text: request
    )


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(request=requests("localhost/choo-test"))
def test_a_request_gets_what_jsonrpcservers_pipeline_answers(request, call, twin):
    # Each on an agent of its own, fed the same requests: a call that changes
    # state (a schedule added, a job removed) does so once on each.
    ours, theirs = rpc._one(request, call), oracle(request, twin)
    if ours is None or theirs is None:
        assert ours is theirs  # a notification, answered by neither
    elif "error" in ours or "error" in theirs:
        # Codes, messages and data alike (NaN ids too: compared as text).
        assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    else:
        # Both succeeded; a submit's second job has its own ID and times.
        assert ours.keys() == theirs.keys() and ours["id"] == theirs["id"]


@pytest.mark.parametrize(
    "request_",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "agent.ping"},
        {"jsonrpc": "2.0", "id": 1, "method": "job.list", "params": {"all": True, "limit": 5}},
        {"jsonrpc": "2.0", "id": 1, "method": "job.list", "params": [None, None]},
        {"jsonrpc": "2.0", "id": "x", "method": "agent.ping", "params": [1]},
        {"jsonrpc": "2.0", "id": 2, "method": "job.get", "params": {"nope": 1}},
        # Params that fit skip jsonrpcserver's check; these do not, and get its words.
        {"jsonrpc": "2.0", "id": 2, "method": "job.get", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "job.get"},
        {"jsonrpc": "2.0", "id": 2, "method": "job.get", "params": {"id": "0NO", "call": 1}},
        {"jsonrpc": "2.0", "id": 2, "method": "agent.ping", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "job.get", "params": {"id": "0NOSUCHJOB"}},
        {"jsonrpc": "2.0", "id": 3, "method": "no.such"},
        {"jsonrpc": "2.0", "method": "agent.ping"},
        {"jsonrpc": "2.0", "id": 4},
        {"jsonrpc": "1.0", "id": 5, "method": "agent.ping"},
    ],
    ids=repr,
)
def test_each_kind_of_answer_is_jsonrpcservers(request_, call, twin):
    assert rpc._one(request_, call) == oracle(request_, twin)


def test_ping_batch_is_fast_enough(call):
    # 2000 requests on one line: answered, in order, without quadratic costs.
    line = b"[" + b",".join([PING] * 2000) + b"]"
    assert codes(rpc.handle(line.decode(), call)) == [None] * 2000


def test_params_by_position_and_by_name_mean_the_same(call, service):
    """Named params skip the second binding: both forms reach the use case alike,
    defaults filled, and a mismatch is still -32602."""
    submitted = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "job.submit", "params": {"spec": {"image": "a"}}}
    )
    job_id = json.loads(rpc.handle(submitted, call))["result"]["id"]
    by_name = {"jsonrpc": "2.0", "id": 2, "method": "job.list", "params": {"limit": 1}}
    names = list(rpc.signature(rpc.protocol.BY_NAME["job.list"]).parameters)
    # [state, name, label, since, limit]: each before limit at its default, None.
    by_position = {**by_name, "params": [None] * (names.index("limit") - 1) + [1]}
    for request in (by_name, by_position):
        page = json.loads(rpc.handle(json.dumps(request), call))["result"]
        assert [row["id"] for row in page["jobs"]] == [job_id]
    unknown = {**by_name, "params": {"limit": 1, "colour": "red"}}
    assert codes(rpc.handle(json.dumps(unknown), call)) == [-32602]

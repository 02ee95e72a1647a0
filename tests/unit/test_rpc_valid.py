"""agent.api.rpc.valid: the hand-written request check agrees with jsonrpcserver's
JSON schema on every shape of request, valid or not."""

from __future__ import annotations

import pytest
from jsonrpcserver.main import default_validator

from agent.api.rpc import valid

CASES = [
    {"jsonrpc": "2.0", "method": "agent.ping"},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": 1},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": 1.5},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": "a"},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": None},
    {"jsonrpc": "2.0", "method": "job.get", "params": {"id": "x"}},
    {"jsonrpc": "2.0", "method": "job.get", "params": ["x"]},
    {"jsonrpc": "2.0", "method": "job.get", "params": []},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": True},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": [1]},
    {"jsonrpc": "2.0", "method": "agent.ping", "id": {}},
    {"jsonrpc": "2.0", "method": "job.get", "params": "x"},
    {"jsonrpc": "2.0", "method": "job.get", "params": None},
    {"jsonrpc": "2.0", "method": "job.get", "params": 3},
    {"jsonrpc": "2.0", "method": 3},
    {"jsonrpc": "2.0", "method": None},
    {"jsonrpc": "2.0"},
    {"method": "agent.ping"},
    {"jsonrpc": "1.0", "method": "agent.ping"},
    {"jsonrpc": 2.0, "method": "agent.ping"},
    {"jsonrpc": "2.0", "method": "agent.ping", "extra": 1},
    {},
]


@pytest.mark.parametrize("request_", CASES, ids=repr)
def test_valid_agrees_with_the_schema(request_):
    try:
        default_validator(request_)
    except Exception:
        with pytest.raises(ValueError):
            valid(request_)
    else:
        valid(request_)

"""agent.protocol.errors: stable codes, and error responses turned back into exceptions."""

from __future__ import annotations

import pytest

from agent.protocol import errors
from agent.protocol.errors import (
    AgentUnavailable,
    AmbiguousPrefix,
    ChooError,
    InvalidParams,
    InvalidTransition,
    NoSuchJob,
    PodmanUnavailable,
    ProtocolError,
    QueueFull,
    StorageError,
    Unauthorized,
    from_response,
)

# The codes are part of the wire protocol: this table must only ever grow.
WIRE_CODES = {
    InvalidParams: -32602,
    NoSuchJob: -32001,
    AmbiguousPrefix: -32002,
    QueueFull: -32003,
    InvalidTransition: -32004,
    PodmanUnavailable: -32005,
    Unauthorized: -32006,
    StorageError: -32007,
}


@pytest.mark.parametrize(
    ("cls", "code"), WIRE_CODES.items(), ids=lambda v: getattr(v, "__name__", v)
)
def test_codes_are_stable(cls, code):
    assert cls.code == code
    assert cls("x").code == code


def test_client_side_codes_do_not_collide_with_server_codes():
    client = {AgentUnavailable.code, ProtocolError.code}
    assert len(client) == 2
    assert not client & set(WIRE_CODES.values())
    assert len(set(WIRE_CODES.values())) == len(WIRE_CODES)


@pytest.mark.parametrize("cls", WIRE_CODES, ids=lambda c: c.__name__)
def test_from_response_rebuilds_the_same_class(cls):
    original = cls("job 01ABC is running; it cannot become queued", {"state": "running"})
    rebuilt = from_response(
        {"code": original.code, "message": original.message, "data": original.data}
    )
    assert type(rebuilt) is cls
    assert rebuilt.code == original.code
    assert rebuilt.message == original.message
    assert rebuilt.data == {"state": "running"}
    assert str(rebuilt) == original.message


@pytest.mark.parametrize(
    "code",
    [
        errors.PARSE_ERROR,
        errors.INVALID_REQUEST,
        errors.METHOD_NOT_FOUND,
        errors.INTERNAL_ERROR,
        -32099,
        -1,
        0,
        12345,
    ],
)
def test_unknown_codes_become_plain_choo_error_keeping_the_code(code):
    exc = from_response({"code": code, "message": "boom"})
    assert type(exc) is ChooError
    assert exc.code == code
    assert exc.message == "boom"


def test_invalid_params_appends_string_data_to_the_message():
    # jsonrpcserver's InvalidParams puts the detail in data, not in the message.
    exc = from_response({"code": -32602, "message": "Invalid params", "data": "limit: too big"})
    assert type(exc) is InvalidParams
    assert exc.message == "Invalid params: limit: too big"


@pytest.mark.parametrize("data", [None, "", {"field": "limit"}, ["x"]])
def test_invalid_params_keeps_message_when_data_is_not_a_string(data):
    exc = from_response({"code": -32602, "message": "Invalid params", "data": data})
    assert exc.message == "Invalid params"
    assert exc.data == data


def test_string_data_is_not_appended_for_other_codes():
    exc = from_response({"code": -32001, "message": "no job 01X", "data": "extra"})
    assert exc.message == "no job 01X"
    assert exc.data == "extra"


def test_missing_members_get_defaults():
    exc = from_response({})
    assert type(exc) is ChooError
    assert exc.code == errors.INTERNAL_ERROR
    assert exc.message == "unknown error"
    assert exc.data is None


def test_non_string_message_is_stringified():
    assert from_response({"code": -32001, "message": 42}).message == "42"


def test_instance_code_does_not_leak_into_the_class():
    from_response({"code": -32099, "message": "x"})
    assert ChooError.code == errors.INTERNAL_ERROR


def test_every_error_is_a_choo_error():
    for cls in [*WIRE_CODES, AgentUnavailable, ProtocolError, errors.ImageError]:
        assert issubclass(cls, ChooError)
        with pytest.raises(ChooError):
            raise cls("x")

"""JSON-RPC methods: params in, a service call, ``Success``/``Error`` out.

Thin on purpose. jsonrpcserver checks arguments against each function's
signature (-32602 on a mismatch); types are checked by the service. Every
``ChooError`` becomes an error response with its stable code; anything
unexpected is logged here and answered with a generic -32603, so internals
never leak to a client (jsonrpcserver would put ``str(exc)`` in the reply).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonrpcserver import Error, Success, dispatch

from agent import protocol
from agent.errors import INTERNAL_ERROR, ChooError
from agent.service import Peer, Service

log = logging.getLogger(__name__)


@dataclass
class Call:
    """Per-connection context handed to every method as its first argument."""

    service: Service
    peer: Peer
    notify: Callable[[str, dict[str, Any]], None]
    closed: Callable[[], bool]


def _method(fn):
    @functools.wraps(fn)
    def wrapper(call: Call, *args, **kwargs):
        try:
            return Success(fn(call, *args, **kwargs))
        except ChooError as exc:
            return Error(exc.code, exc.message, exc.data)
        except Exception:
            log.exception("internal error in %s", fn.__name__)
            return Error(INTERNAL_ERROR, "Internal error", "see the agent's log for details")

    return wrapper


@_method
def ping(call: Call) -> str:
    return "pong"


@_method
def info(call: Call) -> dict:
    return call.service.info()


@_method
def submit(call: Call, spec: Any, trigger: str = "rpc") -> dict:
    return call.service.submit(spec, trigger=trigger, peer=call.peer)


@_method
def get(call: Call, id: Any) -> dict:
    return call.service.get(id)


@_method
def list_jobs(
    call: Call,
    state: Any = None,
    name: Any = None,
    label: Any = None,
    since: Any = None,
    limit: Any = 100,
    cursor: Any = None,
    all: Any = True,
) -> dict:
    return call.service.list(
        state=state, name=name, label=label, since=since, limit=limit, cursor=cursor, all=all
    )


@_method
def cancel(call: Call, id: Any) -> dict:
    return call.service.cancel(id)


@_method
def wait(call: Call, id: Any, timeout: Any = None) -> dict:
    return call.service.wait(id, timeout)


@_method
def logs(call: Call, id: Any, tail: Any = None, since: Any = None, follow: Any = False) -> dict:
    return call.service.logs(
        id,
        tail=tail,
        since=since,
        follow=follow,
        emit=lambda entry: call.notify(protocol.LOG_LINE, entry),
        closed=call.closed,
    )


@_method
def subscribe(
    call: Call, job: Any = None, name: Any = None, timeout: Any = None, count: Any = None
) -> dict:
    return call.service.subscribe(
        job=job,
        name=name,
        timeout=timeout,
        count=count,
        emit=lambda event: call.notify(protocol.EVENT, event),
        closed=call.closed,
    )


METHODS: dict[str, Callable] = {
    protocol.PING: ping,
    protocol.INFO: info,
    protocol.SUBMIT: submit,
    protocol.GET: get,
    protocol.LIST: list_jobs,
    protocol.CANCEL: cancel,
    protocol.WAIT: wait,
    protocol.LOGS: logs,
    protocol.SUBSCRIBE: subscribe,
}
assert set(METHODS) == set(protocol.METHODS), "rpc.py and protocol.py disagree"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _strict_loads(text: str) -> Any:
    """``json.loads`` without Python's NaN/Infinity extensions (not JSON)."""
    return json.loads(text, parse_constant=_reject_constant)


def handle(line: str, call: Call) -> str:
    """Answer one request line; returns "" for a notification."""
    return dispatch(line, methods=METHODS, context=call, deserializer=_strict_loads)

"""JSON-RPC methods: params in, a service call, ``Success``/``Error`` out.

Thin on purpose. jsonrpcserver checks arguments against each function's
signature (-32602 on a mismatch); types are checked by the service. Every
``ChooError`` becomes an error response with its stable code; anything
unexpected is logged here and answered with a generic -32603, so internals
never leak to a client (jsonrpcserver would put ``str(exc)`` in the reply).

Parsing and batches are ours, jsonrpcserver dispatches single requests:
jsonrpcserver 5.0.9 answers a batch with any invalid member (``[req, 1]``)
with one -32600 instead of one response per member, and echoes an id like
``1e400`` as ``Infinity``, which is not JSON. ``handle`` follows JSON-RPC 2.0
(sections 4-6) for every line, whatever it holds.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonrpcserver import Error, Success, dispatch_to_serializable

from agent.api.service import Peer, Service
from agent.protocol import methods as protocol
from agent.protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, ChooError

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
    return call.service.wait(id, timeout, closed=call.closed)


@_method
def logs(
    call: Call,
    id: Any,
    tail: Any = None,
    since: Any = None,
    follow: Any = False,
    after: Any = None,
) -> dict:
    return call.service.logs(
        id,
        tail=tail,
        since=since,
        after=after,
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


@_method
def remove(call: Call, id: Any) -> dict:
    return call.service.remove(id)


@_method
def prune(call: Call, older_than: Any = None, state: Any = None) -> dict:
    return call.service.prune(older_than=older_than, state=state)


@_method
def artifacts(call: Call, id: Any, offset: Any = None, length: Any = None) -> dict:
    return call.service.artifacts(id, offset=offset, length=length)


@_method
def schedule_add(
    call: Call,
    name: Any,
    cron: Any,
    spec: Any,
    concurrency: Any = "allow",
    catch_up: Any = True,
    history_limit: Any = 10,
    timezone: Any = None,
) -> dict:
    return call.service.scheduler.add(
        name,
        cron,
        spec,
        concurrency=concurrency,
        catch_up=catch_up,
        history_limit=history_limit,
        timezone=timezone,
        peer=call.peer,
    )


@_method
def schedule_list(call: Call, name: Any = None) -> list | dict:
    scheduler = call.service.scheduler
    return scheduler.list() if name is None else scheduler.get(name)


@_method
def schedule_remove(call: Call, name: Any) -> dict:
    return call.service.scheduler.remove(name)


@_method
def schedule_trigger(call: Call, name: Any, trigger: str = "rpc") -> dict:
    return call.service.scheduler.trigger(name, trigger=trigger)


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
    protocol.REMOVE: remove,
    protocol.PRUNE: prune,
    protocol.ARTIFACTS: artifacts,
    protocol.SCHEDULE_ADD: schedule_add,
    protocol.SCHEDULE_LIST: schedule_list,
    protocol.SCHEDULE_REMOVE: schedule_remove,
    protocol.SCHEDULE_TRIGGER: schedule_trigger,
}
assert set(METHODS) == set(protocol.METHODS), "rpc.py and protocol.py disagree"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _strict_loads(text: str) -> Any:
    """``json.loads`` without Python's NaN/Infinity extensions (not JSON).

    A number too large for a double is refused too: it would decode as
    ``inf`` and could only be answered as ``Infinity``, which is not JSON.
    """
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _error(code: int, message: str, data: Any = None, req_id: Any = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "error": {"code": code, "message": message, "data": data},
        "id": req_id,
    }


def handle(line: str, call: Call) -> str:
    """Answer one request line: a request, a notification or a batch.

    Returns:
        The response text (one JSON text, no newline), or "" when nothing is
        to be sent: a notification, or a batch of notifications only.
    """
    try:
        request = _strict_loads(line)
    except (ValueError, RecursionError) as exc:
        # RecursionError: nesting deeper than the interpreter's limit.
        return _dumps(_error(PARSE_ERROR, "Parse error", str(exc)[:200]))
    if isinstance(request, list):
        if not request:
            return _dumps(_error(INVALID_REQUEST, "Invalid request", "an empty batch"))
        replies = [reply for reply in (_one(item, call) for item in request) if reply]
        return "[" + ", ".join(map(_dumps, replies)) + "]" if replies else ""
    reply = _one(request, call)
    return _dumps(reply) if reply else ""


def _one(request: Any, call: Call) -> dict[str, Any] | None:
    """The response to one request (None for a notification)."""
    if not isinstance(request, dict):
        # A batch member that is not an object, or a nested batch: not a Request.
        return _error(INVALID_REQUEST, "Invalid request", "expected a request object")
    return dispatch_to_serializable(
        "", methods=METHODS, context=call, deserializer=lambda _text: request
    )


def _dumps(reply: dict[str, Any]) -> str:
    try:
        return json.dumps(reply, allow_nan=False)
    except (TypeError, ValueError):
        log.exception("cannot serialise the answer to request %r", reply.get("id"))
        return json.dumps(_error(INTERNAL_ERROR, "Internal error", None, reply.get("id")))

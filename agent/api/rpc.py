"""JSON-RPC binding: params in, a use case called, ``Success``/``Error`` out.

Thin on purpose, and the only module that imports jsonrpcserver. The method
table is built from the protocol (agent.protocol.methods): each method's
signature is made from its params dataclass, so jsonrpcserver checks names,
arity and required params against the one definition (-32602 on a mismatch)
and the use case receives the bound params object; values are checked by the
use case. Every ``ChooError`` becomes an error response with its stable code;
anything unexpected is logged here and answered with a generic -32603, so
internals never leak to a client (jsonrpcserver would put ``str(exc)`` in the
reply).

Parsing, the request's shape and batches are ours, jsonrpcserver dispatches
single requests: jsonrpcserver 5.0.9 answers a batch with any invalid member
(``[req, 1]``) with one -32600 instead of one response per member, and echoes
an id like ``1e400`` as ``Infinity``, which is not JSON. ``handle`` follows
JSON-RPC 2.0 (sections 4-6) for every line, whatever it holds.

A valid request goes straight to jsonrpcserver's dispatcher (``dispatch_request``:
the method looked up, the params checked against its signature, the call, the
result checked) and its response shaping (``to_response``,
``to_serializable_one``), skipping the pipeline around them that
``dispatch_to_serializable`` adds for a request we have parsed and checked
already (a deserializer, a validator and batch plumbing, each step wrapped in
OSlash's Either, and a ``typing.cast`` built per call): about 36 -> 18 us of an
``agent.ping``. Params that plainly fit the method's signature (by name, every
one known and every required one given, or none at all) skip its check too
(``inspect.Signature.bind``, another 5 us of a ping and 19 of a ``job.list``):
jsonrpcserver's call is made at once, as its check would have let it be. Request
lines are parsed by one decoder made once (passing ``json.loads`` the strict
hooks makes a decoder per call). tests/unit/test_rpc.py holds every answer to
that whole pipeline.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jsonrpcserver import Error, Success
from jsonrpcserver.dispatcher import call as call_method
from jsonrpcserver.dispatcher import create_request, dispatch_request, to_response
from jsonrpcserver.response import to_serializable_one
from jsonrpcserver.sentinels import NOID

from agent.api.caches import list_caches, remove_caches
from agent.api.images import prune_images
from agent.api.peers import Peer
from agent.api.schedules import Schedules
from agent.api.service import Service
from agent.api.suspending import resume as resume_schedule
from agent.api.suspending import suspend as suspend_schedule
from agent.api.top import top
from agent.protocol import methods as protocol
from agent.protocol.errors import INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, ChooError

log = logging.getLogger(__name__)


@dataclass
class Call:
    """Per-connection context handed to every method as its first argument."""

    service: Service
    schedules: Schedules
    peer: Peer
    notify: Callable[[str, dict[str, Any]], None]
    closed: Callable[[], bool]


def _metrics(call: Call, params: Any) -> str:
    # prometheus_client is imported on the first call, not at start: the agent answers sooner.
    from agent.api import metrics  # noqa: PLC0415

    return metrics.render(call.service.store, call.service.status)


def _export(call: Call, params: Any) -> Any:
    # The exporters are imported on the first call, not at start (as _metrics).
    from agent.api.export import export  # noqa: PLC0415

    return export(call.service, params, peer=call.peer)


#: What each method does with its bound params: the use case it calls, with
#: the connection's peer (whose rights owners.py checks) and notifications.
USE_CASES: dict[str, Callable[[Call, Any], Any]] = {
    protocol.PING: lambda call, params: "pong",
    protocol.INFO: lambda call, params: call.service.info(),
    protocol.METRICS: _metrics,
    protocol.SUBMIT: lambda call, params: call.service.submit(params, peer=call.peer),
    protocol.GET: lambda call, params: call.service.get(params, peer=call.peer),
    protocol.LIST: lambda call, params: call.service.list(params, peer=call.peer),
    protocol.CANCEL: lambda call, params: call.service.cancel(params, peer=call.peer),
    protocol.WAIT: lambda call, params: call.service.wait(
        params, closed=call.closed, peer=call.peer
    ),
    protocol.LOGS: lambda call, params: call.service.logs(
        params,
        emit=lambda entry: call.notify(protocol.LOG_LINE, entry),
        closed=call.closed,
        peer=call.peer,
    ),
    protocol.SUBSCRIBE: lambda call, params: call.service.subscribe(
        params,
        emit=lambda event: call.notify(protocol.EVENT, event),
        closed=call.closed,
        peer=call.peer,
    ),
    protocol.REMOVE: lambda call, params: call.service.remove(params, peer=call.peer),
    protocol.PRUNE: lambda call, params: call.service.prune(params, peer=call.peer),
    protocol.ARTIFACTS: lambda call, params: call.service.artifacts(params, peer=call.peer),
    protocol.SCHEDULE_ADD: lambda call, params: call.schedules.add(params, peer=call.peer),
    protocol.SCHEDULE_LIST: lambda call, params: call.schedules.list(params, peer=call.peer),
    protocol.SCHEDULE_REMOVE: lambda call, params: call.schedules.remove(params, peer=call.peer),
    protocol.SCHEDULE_TRIGGER: lambda call, params: call.schedules.trigger(params, peer=call.peer),
    protocol.EXPORT: _export,
    protocol.TOP: lambda call, params: top(call.service, peer=call.peer),
    protocol.IMAGE_PRUNE: lambda call, params: prune_images(call.service, peer=call.peer),
    protocol.CACHE_LIST: lambda call, params: list_caches(call.service),
    protocol.CACHE_REMOVE: lambda call, params: remove_caches(call.service, params),
    protocol.RELEASE: lambda call, params: call.service.release(params, peer=call.peer),
    protocol.RERUN: lambda call, params: call.service.rerun(params, peer=call.peer),
    protocol.RERUN_FAILED: lambda call, params: call.service.rerun_failed(params, peer=call.peer),
    protocol.PAUSE: lambda call, params: call.service.pause(params, peer=call.peer),
    protocol.RESUME: lambda call, params: call.service.resume(params, peer=call.peer),
    protocol.LIMIT: lambda call, params: call.service.limit(params, peer=call.peer),
    protocol.QUEUE_STATE: lambda call, params: call.service.queue_state(),
    protocol.SCHEDULE_SUSPEND: lambda call, params: suspend_schedule(
        call.schedules, params, peer=call.peer
    ),
    protocol.SCHEDULE_RESUME: lambda call, params: resume_schedule(
        call.schedules, params, peer=call.peer
    ),
}
assert set(USE_CASES) == set(protocol.METHODS), "rpc.py and the protocol disagree"


def signature(method: protocol.Method) -> inspect.Signature:
    """``(call, <params in order, with their defaults>)``: what jsonrpcserver checks
    a request's params against (positional or by name)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("call", kind)]
    for field in dataclasses.fields(method.params):
        default = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        params.append(inspect.Parameter(field.name, kind, default=default))
    return inspect.Signature(params)


def bind(method: protocol.Method, use_case: Callable[[Call, Any], Any]) -> Callable[..., Any]:
    """The jsonrpcserver method for ``method``: binds the params, calls ``use_case``."""
    shape = signature(method)

    def dispatched(call: Call, *args: Any, **kwargs: Any) -> Any:
        # jsonrpcserver has bound the request to ``shape`` already; params by
        # name need no second binding (the dataclass holds the same defaults).
        if args:
            arguments = shape.bind(call, *args, **kwargs).arguments
            del arguments["call"]
        else:
            arguments = kwargs
        try:
            return Success(use_case(call, method.params(**arguments)))
        except ChooError as exc:
            return Error(exc.code, exc.message, exc.data)
        except Exception:
            log.exception("internal error in %s", method.name)
            return Error(INTERNAL_ERROR, "Internal error", "see the agent's log for details")

    dispatched.__signature__ = shape  # read by jsonrpcserver's inspect.signature()
    dispatched.__name__ = method.name
    return dispatched


METHODS: dict[str, Callable[..., Any]] = {
    method.name: bind(method, USE_CASES[method.name]) for method in protocol.DEFINITIONS
}


@dataclass(frozen=True)
class _Names:
    """A method's params by name: all of them, and those without a default."""

    known: frozenset[str]
    required: frozenset[str]


def _names(method: protocol.Method) -> _Names:
    """The param names of ``method``'s signature (what jsonrpcserver checks against)."""
    params = list(signature(method).parameters.values())[1:]  # after ``call``
    return _Names(
        known=frozenset(p.name for p in params),
        required=frozenset(p.name for p in params if p.default is inspect.Parameter.empty),
    )


#: Each method's param names, for ``_fits``.
_NAMES: dict[str, _Names] = {method.name: _names(method) for method in protocol.DEFINITIONS}


def _fits(names: _Names, params: Any) -> bool:
    """True when ``params`` certainly bind to the method's signature: by name, each
    a param of it and every required one there, or none at all. (Anything else,
    positional params included, is left to jsonrpcserver's check and its words.)"""
    if isinstance(params, dict):
        return params.keys() <= names.known and names.required <= params.keys()
    return params == [] and not names.required


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


#: ``json.loads`` without Python's NaN/Infinity extensions (not JSON). A number
#: too large for a double is refused too: it would decode as ``inf`` and could
#: only be answered as ``Infinity``, which is not JSON.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _strict_loads(text: str) -> Any:
    """``text`` decoded by ``_DECODER``, which refuses what is not JSON."""
    return _DECODER.decode(text)


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
    try:
        valid(request)
    except ValueError:
        # jsonrpcserver's words for a request its validator refuses.
        return _error(INVALID_REQUEST, "Invalid request", "The request failed schema validation")
    ticket = create_request(request)
    names = _NAMES.get(ticket.method)
    if names is not None and _fits(names, ticket.params):
        result = call_method(ticket, call, METHODS[ticket.method])
    else:
        _, result = dispatch_request(METHODS, call, ticket)
    if ticket.id is NOID:
        return None  # a notification: called, not answered
    return to_serializable_one(to_response(ticket, result))


#: The members a JSON-RPC 2.0 request may have.
_MEMBERS = frozenset({"jsonrpc", "method", "id", "params"})


def valid(request: dict[str, Any]) -> None:
    """jsonrpcserver's request schema (one request object), checked by hand:
    its jsonschema check costs more than answering an ``agent.ping``
    (tests/unit/test_rpc_valid.py holds the two to the same verdicts).

    Raises:
        ValueError: ``request`` is not a JSON-RPC 2.0 request.
    """
    ident = request.get("id")
    if not (
        request.keys() <= _MEMBERS
        and request.get("jsonrpc") == "2.0"
        and isinstance(request.get("method"), str)
        and (
            ident is None or (isinstance(ident, str | int | float) and not isinstance(ident, bool))
        )
        and isinstance(request.get("params", []), list | dict)
    ):
        raise ValueError("not a JSON-RPC 2.0 request")


#: NaN and Infinity are not JSON: refused (one encoder for every answer).
_ENCODER = json.JSONEncoder(allow_nan=False)


def _dumps(reply: dict[str, Any]) -> str:
    try:
        return _ENCODER.encode(reply)
    except (TypeError, ValueError):
        log.exception("cannot serialise the answer to request %r", reply.get("id"))
        return json.dumps(_error(INTERNAL_ERROR, "Internal error", None, reply.get("id")))

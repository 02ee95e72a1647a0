"""The wire protocol, defined once for the server (agent/api/rpc.py) and the client.

One JSON-RPC 2.0 text per line, each way. Each method is one ``Method``: its
name, its params (declared in agent/protocol/params.py, made a frozen
dataclass here at first use; field order is the order of positional params, a
field's default is the param's default), the type of its result
(agent/protocol/types.py) and, for a streaming call, the notification it sends
on the same connection before its response. Error codes live in errors.py.
Pure data: nothing here validates values (the agent's use cases do) or knows a
transport. Importing it stays cheap (no dataclasses, no TypedDicts): every
chooctl command does.
"""

from __future__ import annotations

from typing import Any

PING = "agent.ping"
INFO = "agent.info"
METRICS = "agent.metrics"
SUBMIT = "job.submit"
GET = "job.get"
LIST = "job.list"
CANCEL = "job.cancel"
WAIT = "job.wait"
LOGS = "job.logs"
SUBSCRIBE = "events.subscribe"
REMOVE = "job.remove"
PRUNE = "job.prune"
ARTIFACTS = "job.artifacts"
SCHEDULE_ADD = "schedule.add"
SCHEDULE_LIST = "schedule.list"
SCHEDULE_REMOVE = "schedule.remove"
SCHEDULE_TRIGGER = "schedule.trigger"
EXPORT = "job.export"
TOP = "job.top"
IMAGE_PRUNE = "image.prune"
CACHE_LIST = "cache.list"
CACHE_REMOVE = "cache.remove"
RELEASE = "job.release"
RERUN = "job.rerun"
RERUN_FAILED = "job.rerun_failed"
PAUSE = "queue.pause"
RESUME = "queue.resume"
LIMIT = "queue.limit"
QUEUE_STATE = "queue.state"
SCHEDULE_SUSPEND = "schedule.suspend"
SCHEDULE_RESUME = "schedule.resume"

#: Notification carrying a piece of a job's output (types.LogEntry, with the job's ``id``).
LOG_LINE = "job.log"
#: Notification carrying one job event (types.Event).
EVENT = "event"

#: The ``trigger`` chooctl names, and the one of any other client (the default).
CLI_TRIGGER = "cli"
DEFAULT_TRIGGER = "rpc"
#: The triggers a client may name (the agent's scheduler also uses "schedule").
TRIGGERS = (CLI_TRIGGER, DEFAULT_TRIGGER)
#: ``job.list``: the page size by default.
DEFAULT_LIST_LIMIT = 100

# -- the methods -------------------------------------------------------------------


class Method:
    """One RPC method: what it is called, takes, returns and streams.

    A plain class, not a NamedTuple or a dataclass: making one of those costs
    every chooctl command's start more than this whole module.
    """

    __slots__ = ("name", "params", "result", "notification", "streams_with")

    def __init__(
        self,
        name: str,
        params: type,
        result: Any,
        notification: str | None = None,
        streams_with: str | None = None,
    ):
        self.name = name
        #: Its params: the frozen dataclass a request is bound to (agent.protocol.params).
        self.params = params
        #: The result's type (a TypedDict of types.py, or a plain type).
        self.result = result
        #: The notification a streaming call sends before its response (None: none).
        self.notification = notification
        #: When it streams only with a true param of this name (``follow``).
        self.streams_with = streams_with

    def __repr__(self) -> str:
        return f"Method({self.name!r})"

    def param_names(self) -> list[str]:
        """The params in positional order."""
        return list(_fields(self.params))

    def required(self) -> list[str]:
        """The params without a default."""
        return [name for name, default in _fields(self.params).items() if default is _REQUIRED]


def _definitions() -> tuple[Method, ...]:
    # Here: the TypedDicts and the dataclasses cost chooctl's start to build.
    from agent.protocol import params as p
    from agent.protocol import pausing, types

    return (
        Method(PING, _made(p.NoParams), str),
        Method(INFO, _made(p.NoParams), types.Info),
        #: The metrics in the Prometheus text format (0.0.4).
        Method(METRICS, _made(p.NoParams), str),
        Method(SUBMIT, _made(p.SubmitParams), types.Job),
        Method(GET, _made(p.JobRef), types.JobDetail),
        Method(LIST, _made(p.ListParams), types.JobPage),
        Method(CANCEL, _made(p.JobRef), types.Job),
        Method(WAIT, _made(p.WaitParams), types.Job),
        Method(
            LOGS,
            _made(p.LogsParams),
            types.Logs | types.Followed,
            notification=LOG_LINE,
            streams_with="follow",
        ),
        Method(SUBSCRIBE, _made(p.SubscribeParams), types.Subscribed, notification=EVENT),
        Method(REMOVE, _made(p.JobRef), types.Job),
        Method(PRUNE, _made(p.PruneParams), types.Pruned),
        Method(ARTIFACTS, _made(p.ArtifactsParams), types.Artifacts),
        Method(SCHEDULE_ADD, _made(p.ScheduleAddParams), types.ScheduleState),
        Method(
            SCHEDULE_LIST,
            _made(p.ScheduleListParams),
            list[types.ScheduleState] | types.ScheduleState,
        ),
        Method(SCHEDULE_REMOVE, _made(p.ScheduleRef), types.Schedule),
        Method(SCHEDULE_TRIGGER, _made(p.ScheduleTriggerParams), types.Triggered),
        Method(EXPORT, _made(p.ExportParams), types.Exported),
        Method(TOP, _made(p.NoParams), list[types.TopEntry]),
        Method(IMAGE_PRUNE, _made(p.NoParams), types.ImagesPruned),
        Method(CACHE_LIST, _made(p.NoParams), list[types.Cache]),
        Method(CACHE_REMOVE, _made(p.CacheRemoveParams), types.CachesRemoved),
        Method(RELEASE, _made(p.JobRef), types.Job),
        Method(RERUN, _made(p.RerunParams), types.Job),
        Method(RERUN_FAILED, _made(p.RerunFailedParams), types.Reruns),
        Method(PAUSE, pausing.QueueRef, pausing.QueueChange),
        Method(RESUME, pausing.QueueRef, pausing.QueueChange),
        Method(LIMIT, pausing.LimitParams, pausing.NameLimit),
        Method(QUEUE_STATE, _made(p.NoParams), pausing.QueueState),
        Method(SCHEDULE_SUSPEND, _made(p.ScheduleRef), pausing.ScheduleChange),
        Method(SCHEDULE_RESUME, _made(p.ScheduleRef), pausing.ScheduleChange),
    )


#: DEFINITIONS (every Method), BY_NAME and METHODS (their names) are built at their
#: first use (``__getattr__``), and so is each params dataclass (``SubmitParams``...):
#: a client's call needs a name and a params declaration only.
_TABLES = ("DEFINITIONS", "BY_NAME", "METHODS")
DEFINITIONS: tuple[Method, ...]
BY_NAME: dict[str, Method]
METHODS: tuple[str, ...]
#: A field's default in ``_fields`` when it has none (a required param).
_REQUIRED = object()


def __getattr__(name: str) -> Any:
    if name in _TABLES:
        definitions = _definitions()
        by_name = {method.name: method for method in definitions}
        globals().update(DEFINITIONS=definitions, BY_NAME=by_name, METHODS=tuple(by_name))
        return globals()[name]
    from agent.protocol import params

    declared = vars(params).get(name)
    if isinstance(declared, type) and declared.__module__ == params.__name__:
        return _made(declared)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _made(declared: type) -> type:
    """The frozen dataclass of a params declaration, made at its first use (then kept
    here under the declaration's name: ``methods.SubmitParams``)."""
    name = declared.__name__
    if name not in globals():
        import dataclasses

        namespace = {
            key: value
            for key, value in vars(declared).items()
            if key not in ("__dict__", "__weakref__")
        }
        namespace["__module__"] = __name__
        namespace["__annotations__"] = dict(namespace.get("__annotations__", {}))
        # Two threads may make one at once: the first kept is the one every caller gets.
        globals().setdefault(name, dataclasses.dataclass(frozen=True)(type(name, (), namespace)))
    return globals()[name]


def _fields(declared: type) -> dict[str, Any]:
    """The fields of params (a declaration or a dataclass) in positional order, each
    with its default (``_REQUIRED``: none)."""
    namespace = vars(declared)
    return {name: namespace.get(name, _REQUIRED) for name in namespace.get("__annotations__", {})}


NOTIFICATIONS = (LOG_LINE, EVENT)


def wire_params(declared: type, values: dict[str, Any]) -> dict[str, Any]:
    """The JSON params of a request: ``values`` less those at their defaults, in
    positional order.

    A default left out is the same default on the agent's side: both read it from
    ``declared`` (a declaration of agent.protocol.params, or a params dataclass).

    Raises:
        TypeError: ``values`` names a field ``declared`` lacks, or lacks a required
            one (as making the params dataclass of them would).
    """
    fields = _fields(declared)
    for name in values.keys() - fields.keys():
        raise TypeError(f"{declared.__name__} has no field {name!r}")
    for name, default in fields.items():
        if default is _REQUIRED and name not in values:
            raise TypeError(f"{declared.__name__} needs the field {name!r}")
    return {
        name: values[name]
        for name, default in fields.items()
        if name in values and (default is _REQUIRED or values[name] != default)
    }

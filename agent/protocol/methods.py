"""The wire protocol, defined once for the server (agent/api/rpc.py) and the client.

One JSON-RPC 2.0 text per line, each way. Each method is one ``Method``: its
name, a frozen dataclass of its params (field order is the order of
positional params; a field's default is the param's default), the type of its
result (agent/protocol/types.py) and, for a streaming call, the notification
it sends on the same connection before its response. Error codes live in
errors.py. Pure data: nothing here validates values (the agent's use cases do)
or knows a transport.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from agent.protocol.schedules import DEFAULT_HISTORY, DEFAULT_POLICY

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

# -- params ----------------------------------------------------------------------
# Typed as the protocol means them; a value off the wire may be anything, and
# the use case that receives it checks it (InvalidParams naming the field).


@dataclass(frozen=True)
class NoParams:
    """A method without params."""


@dataclass(frozen=True)
class SubmitParams:
    spec: dict[str, Any]
    trigger: str = DEFAULT_TRIGGER
    #: Queued, but never admitted until ``job.release``.
    hold: bool = False
    #: Admitted no earlier than this time (seconds since the epoch)...
    not_before: float | None = None
    #: ...or than this long after the submit (seconds, or a duration like "10m").
    delay: float | str | None = None


@dataclass(frozen=True)
class RerunParams:
    id: str
    #: Variables to set (or change) in the rerun's environment.
    env: dict[str, str] | None = None


@dataclass(frozen=True)
class RerunFailedParams:
    #: Only jobs submitted this long ago or since (seconds or a duration).
    since: float | str | None = None
    name: str | None = None
    env: dict[str, str] | None = None


@dataclass(frozen=True)
class JobRef:
    """A job named by its ID or a unique prefix of it."""

    id: str


@dataclass(frozen=True)
class ListParams:
    state: str | list[str] | None = None
    name: str | None = None
    #: ``KEY=VALUE`` strings.
    label: str | list[str] | None = None
    #: A duration: only jobs submitted this recently.
    since: float | str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    #: The ``cursor`` of the previous page.
    cursor: str | None = None
    #: Without a ``state``, finished jobs too.
    all: bool = True


@dataclass(frozen=True)
class WaitParams:
    id: str
    timeout: float | str | None = None


@dataclass(frozen=True)
class LogsParams:
    id: str
    tail: int | None = None
    since: float | str | None = None
    follow: bool = False
    #: The cursor of an entry already seen (``<attempt>:<offset>``): resume after it.
    after: str | None = None


@dataclass(frozen=True)
class SubscribeParams:
    job: str | None = None
    name: str | None = None
    timeout: float | str | None = None
    count: int | None = None


@dataclass(frozen=True)
class PruneParams:
    older_than: float | str | None = None
    state: str | list[str] | None = None


@dataclass(frozen=True)
class CacheRemoveParams:
    #: The cache's name (a key of a spec's ``caches``).
    name: str
    #: Only the cache of this group: a job name, "*" (shared) or "-" (jobs with no name).
    group: str | None = None


@dataclass(frozen=True)
class ArtifactsParams:
    id: str
    offset: int | None = None
    length: int | None = None


@dataclass(frozen=True)
class ScheduleAddParams:
    name: str
    cron: str
    spec: dict[str, Any]
    concurrency: str = DEFAULT_POLICY
    catch_up: bool = True
    history_limit: int = DEFAULT_HISTORY
    timezone: str | None = None


@dataclass(frozen=True)
class ScheduleListParams:
    #: One schedule by name; None: every schedule.
    name: str | None = None


@dataclass(frozen=True)
class ScheduleRef:
    name: str


@dataclass(frozen=True)
class ScheduleTriggerParams:
    name: str
    trigger: str = DEFAULT_TRIGGER


@dataclass(frozen=True)
class ExportParams:
    """What to export (exactly one of ``id``, ``schedule``, ``spec``) and to which engine."""

    to: str
    id: str | None = None
    schedule: str | None = None
    spec: dict[str, Any] | None = None
    #: Kubernetes only: "job" (default) or "pod".
    kind: str | None = None
    #: Export what has no equivalent anyway, with a warning for each.
    lossy: bool = False


# -- the methods -------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One RPC method: what it is called, takes, returns and streams."""

    name: str
    params: type
    #: The result's type (a TypedDict of types.py, or a plain type).
    result: Any
    #: The notification a streaming call sends before its response (None: none).
    notification: str | None = None
    #: When it streams only with a true param of this name (``follow``).
    streams_with: str | None = None

    def param_names(self) -> list[str]:
        """The params in positional order."""
        return [field.name for field in dataclasses.fields(self.params)]

    def required(self) -> list[str]:
        """The params without a default."""
        return [
            field.name
            for field in dataclasses.fields(self.params)
            if field.default is dataclasses.MISSING
        ]


def _definitions() -> tuple[Method, ...]:
    # Here: the TypedDicts cost chooctl's start to build.
    from agent.protocol import pausing, types

    return (
        Method(PING, NoParams, str),
        Method(INFO, NoParams, types.Info),
        #: The metrics in the Prometheus text format (0.0.4).
        Method(METRICS, NoParams, str),
        Method(SUBMIT, SubmitParams, types.Job),
        Method(GET, JobRef, types.JobDetail),
        Method(LIST, ListParams, types.JobPage),
        Method(CANCEL, JobRef, types.Job),
        Method(WAIT, WaitParams, types.Job),
        Method(
            LOGS,
            LogsParams,
            types.Logs | types.Followed,
            notification=LOG_LINE,
            streams_with="follow",
        ),
        Method(SUBSCRIBE, SubscribeParams, types.Subscribed, notification=EVENT),
        Method(REMOVE, JobRef, types.Job),
        Method(PRUNE, PruneParams, types.Pruned),
        Method(ARTIFACTS, ArtifactsParams, types.Artifacts),
        Method(SCHEDULE_ADD, ScheduleAddParams, types.ScheduleState),
        Method(SCHEDULE_LIST, ScheduleListParams, list[types.ScheduleState] | types.ScheduleState),
        Method(SCHEDULE_REMOVE, ScheduleRef, types.Schedule),
        Method(SCHEDULE_TRIGGER, ScheduleTriggerParams, types.Triggered),
        Method(EXPORT, ExportParams, types.Exported),
        Method(TOP, NoParams, list[types.TopEntry]),
        Method(IMAGE_PRUNE, NoParams, types.ImagesPruned),
        Method(CACHE_LIST, NoParams, list[types.Cache]),
        Method(CACHE_REMOVE, CacheRemoveParams, types.CachesRemoved),
        Method(RELEASE, JobRef, types.Job),
        Method(RERUN, RerunParams, types.Job),
        Method(RERUN_FAILED, RerunFailedParams, types.Reruns),
        Method(PAUSE, pausing.QueueRef, pausing.QueueChange),
        Method(RESUME, pausing.QueueRef, pausing.QueueChange),
        Method(LIMIT, pausing.LimitParams, pausing.NameLimit),
        Method(QUEUE_STATE, NoParams, pausing.QueueState),
        Method(SCHEDULE_SUSPEND, ScheduleRef, pausing.ScheduleChange),
        Method(SCHEDULE_RESUME, ScheduleRef, pausing.ScheduleChange),
    )


#: DEFINITIONS (every Method), BY_NAME and METHODS (their names) are built at their
#: first use (``__getattr__``): a client's call needs a name and a params class only.
_TABLES = ("DEFINITIONS", "BY_NAME", "METHODS")
DEFINITIONS: tuple[Method, ...]
BY_NAME: dict[str, Method]
METHODS: tuple[str, ...]


def __getattr__(name: str) -> Any:
    if name not in _TABLES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    definitions = _definitions()
    by_name = {method.name: method for method in definitions}
    globals().update(DEFINITIONS=definitions, BY_NAME=by_name, METHODS=tuple(by_name))
    return globals()[name]


NOTIFICATIONS = (LOG_LINE, EVENT)


def wire_params(params: Any) -> dict[str, Any]:
    """The JSON params of a request: the fields that differ from their defaults.

    A default left out is the same default on the agent's side: both read it here.
    """
    return {
        field.name: getattr(params, field.name)
        for field in dataclasses.fields(params)
        if field.default is dataclasses.MISSING or getattr(params, field.name) != field.default
    }

"""What each RPC method takes: its params, declared once (pure data).

Each class declares one method's params: its annotated fields in positional
order, a field's default as the class attribute of its name (no default:
required). Declarations only, never instantiated: agent.protocol.methods makes
each a frozen dataclass at its first use (``methods.SubmitParams``, what the
agent binds a request to), and a client sends a plain dict of the fields that
differ from their defaults (``methods.wire_params``), so a client's call
builds no dataclass (building them and importing dataclasses would cost
chooctl's start more than the rest of it). Typed as the protocol means them;
a value off the wire may be anything, and the use case that receives it
checks it (InvalidParams naming the field).
"""

from __future__ import annotations

from typing import Any

from agent.protocol.methods import DEFAULT_LIST_LIMIT, DEFAULT_TRIGGER
from agent.protocol.schedules import DEFAULT_HISTORY, DEFAULT_POLICY


class NoParams:
    """A method without params."""


class SubmitParams:
    spec: dict[str, Any]
    trigger: str = DEFAULT_TRIGGER
    #: Queued, but never admitted until ``job.release``.
    hold: bool = False
    #: Admitted no earlier than this time (seconds since the epoch)...
    not_before: float | None = None
    #: ...or than this long after the submit (seconds, or a duration like "10m").
    delay: float | str | None = None


class RerunParams:
    id: str
    #: Variables to set (or change) in the rerun's environment.
    env: dict[str, str] | None = None


class RerunFailedParams:
    #: Only jobs submitted this long ago or since (seconds or a duration).
    since: float | str | None = None
    name: str | None = None
    env: dict[str, str] | None = None


class JobRef:
    """A job named by its ID or a unique prefix of it."""

    id: str


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


class WaitParams:
    id: str
    timeout: float | str | None = None


class LogsParams:
    id: str
    tail: int | None = None
    since: float | str | None = None
    follow: bool = False
    #: The cursor of an entry already seen (``<attempt>:<offset>``): resume after it.
    after: str | None = None


class SubscribeParams:
    job: str | None = None
    name: str | None = None
    timeout: float | str | None = None
    count: int | None = None


class PruneParams:
    older_than: float | str | None = None
    state: str | list[str] | None = None


class CacheRemoveParams:
    #: The cache's name (a key of a spec's ``caches``).
    name: str
    #: Only the cache of this group: a job name, "*" (shared) or "-" (jobs with no name).
    group: str | None = None


class ArtifactsParams:
    id: str
    offset: int | None = None
    length: int | None = None


class ScheduleAddParams:
    name: str
    cron: str
    spec: dict[str, Any]
    concurrency: str = DEFAULT_POLICY
    catch_up: bool = True
    history_limit: int = DEFAULT_HISTORY
    timezone: str | None = None


class ScheduleListParams:
    #: One schedule by name; None: every schedule.
    name: str | None = None


class ScheduleRef:
    name: str


class ScheduleTriggerParams:
    name: str
    trigger: str = DEFAULT_TRIGGER


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

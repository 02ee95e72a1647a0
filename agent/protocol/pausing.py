"""The wire shapes of pausing (pure data): ``queue.pause``, ``queue.resume``,
``queue.limit``, ``queue.state``, and ``schedule.suspend``/``schedule.resume``.

A paused queue (all of it, or the jobs of one name) admits nothing new while
running jobs go on; a runtime limit caps how many jobs of a name run at once,
over the configuration's ``name_limits`` (which stay the defaults); a
suspended schedule's fires are skipped (and recorded as skips), never caught
up. What they mean at admission is agent/rules/admission.py's; the use cases
are agent/api/pausing.py's and agent/api/suspending.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from agent.protocol.types import ScheduleState

#: The most a runtime limit may be (a cap above any real machine's capacity).
MAX_LIMIT = 100_000


@dataclass(frozen=True)
class QueueRef:
    """The whole queue (``name`` None) or the jobs of one name."""

    name: str | None = None


@dataclass(frozen=True)
class LimitParams:
    """``queue.limit``: show (neither ``limit`` nor ``default``), set, or clear
    (``default``: back to the configuration's) the limit of jobs named ``name``."""

    name: str
    #: How many jobs of the name may be starting or running at once (0: none start).
    limit: int | None = None
    #: Clear the runtime limit: the configuration's ``name_limits`` applies again.
    default: bool = False


class Pause(TypedDict):
    """One pause in force: of the whole queue (``name`` None) or of one name."""

    name: str | None
    #: When it was paused (seconds since the epoch) and by which uid (None: the agent).
    since: float
    by: int | None


class QueueState(TypedDict):
    """What is paused and limited now (``queue.state``; ``agent.info``'s ``queue``)."""

    #: The whole queue is paused.
    paused: bool
    #: Every pause in force, the whole queue's first.
    pauses: list[Pause]
    #: The per-name limits in force: the configuration's, with the runtime ones over them.
    name_limits: dict[str, int]
    #: The limits set at run time (``queue.limit``), kept across restarts.
    runtime_limits: dict[str, int]


class QueueChange(TypedDict):
    """``queue.pause``/``queue.resume``: whether anything changed (False: it
    already was so), and the queue's state after."""

    changed: bool
    queue: QueueState


class NameLimit(TypedDict):
    """``queue.limit``: the limit of one name."""

    name: str
    #: The limit in force (None: no limit but ``max_concurrent``).
    limit: int | None
    #: Where it comes from: "runtime", "config" or None (no limit).
    source: str | None
    #: The configuration's ``name_limits`` entry (None: none).
    default: int | None
    #: The call set or cleared a runtime limit that differed.
    changed: bool


class ScheduleChange(TypedDict):
    """``schedule.suspend``/``schedule.resume``: whether anything changed (False:
    it already was so), and the schedule after."""

    changed: bool
    schedule: ScheduleState

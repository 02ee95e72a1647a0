"""Job states, end reasons and the transitions allowed between them (pure).

This table is the only definition of the job life cycle; the store refuses any
transition not listed here.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a job ended ``failed`` (or, for ``lost``, went back to the queue).

    ``shutdown`` and ``dependency`` are the reasons of a ``cancelled`` job: the
    agent stopped it on its way out (``stop_containers_on_exit``), or a job it
    waited for ended so that it never may start.
    """

    EXIT = "exit"
    TIMEOUT = "timeout"
    LOST = "lost"
    OOM = "oom"
    IMAGE = "image"
    CREATE = "create"
    #: The output passed max_log_bytes with log_limit_action = "fail".
    LOG_LIMIT = "log_limit"
    #: Stopped by the agent's own shutdown (cancelled, never retried).
    SHUTDOWN = "shutdown"
    #: A job it waited for (``after``) ended in a way that can no longer meet
    #: the condition (cancelled, never started).
    DEPENDENCY = "dependency"
    #: Printed nothing for its ``idle_timeout``: stopped like a timeout.
    STALLED = "stalled"


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})
ACTIVE = frozenset({State.STARTING, State.RUNNING})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.STARTING, State.CANCELLED}),
    # starting -> queued: the create failed in a way worth retrying later.
    State.STARTING: frozenset({State.RUNNING, State.QUEUED, State.FAILED, State.CANCELLED}),
    # running -> queued: a retry after a failed attempt.
    State.RUNNING: frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED, State.QUEUED}),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


def can_transition(current: State | str, target: State | str) -> bool:
    """Tell whether a job in ``current`` may move to ``target``."""
    return State(target) in TRANSITIONS[State(current)]


def is_terminal(state: State | str) -> bool:
    return State(state) in TERMINAL

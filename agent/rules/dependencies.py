"""Whether a job's dependencies (``after``) let it start, wait, or never start (pure).

A dependency names a job and what it must end as: ``ok`` (succeeded), ``failed``
(failed) or ``any`` (ended at all, cancelled included). While the job it names
has not ended, the waiter waits; once it has, the condition is met or can never
be. ``resolve`` decides for every queued waiter at once and carries a waiter
that can never start over to its own waiters (a cascade through any number of
levels in one call). It reads no database and moves no job: the controller
does both (agent/runtime/waiting.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.protocol.states import TERMINAL, State

MET = "met"
WAIT = "wait"
NEVER = "never"

#: The end each condition is met by (``any``: every end).
_MEETS: dict[str, frozenset[str]] = {
    "ok": frozenset({State.SUCCEEDED.value}),
    "failed": frozenset({State.FAILED.value}),
    "any": frozenset(s.value for s in TERMINAL),
}


def verdict(condition: str, state: str | None) -> str:
    """What a dependency's state means for its waiter.

    Args:
        condition: ``ok``, ``failed`` or ``any``.
        state: the state of the job depended on; None when it no longer exists
            (removed): it can meet nothing any more.

    Returns:
        ``MET``, ``WAIT`` (it has not ended) or ``NEVER`` (it ended otherwise).
    """
    if state is None:
        return NEVER
    if state not in _MEETS["any"]:
        return WAIT
    return MET if state in _MEETS[condition] else NEVER


@dataclass
class Resolution:
    """What ``resolve`` decided.

    Attributes:
        waiting: waiters with a dependency that has not ended (not to admit yet).
        broken: waiter -> the cause: the dependency that can no longer meet its
            condition (``dependency``, ``condition``, and the ``state`` it ended
            in, or ``cancelled`` for a waiter the cascade reached, None when removed).
    """

    waiting: set[str] = field(default_factory=set)
    broken: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve(waiters: dict[str, list[dict[str, str]]], states: dict[str, str | None]) -> Resolution:
    """Decide every queued waiter, carrying each that can never start to its own waiters.

    Args:
        waiters: queued job ID -> its ``after`` entries (``id``, ``condition``).
        states: the state of every job named in those entries (missing or None:
            removed). A waiter's own entry, if any, is its current state.

    Returns:
        The waiters still waiting and those that must be cancelled, with the cause.
    """
    known = dict(states)
    out = Resolution()
    pending = dict(waiters)
    changed = True
    while changed:  # each round may break waiters of a waiter broken in the last
        changed = False
        for job_id, deps in list(pending.items()):
            cause = _first_broken(deps, known)
            if cause is not None:
                out.broken[job_id] = cause
                known[job_id] = State.CANCELLED.value
                del pending[job_id]
                changed = True
    for job_id, deps in pending.items():
        if any(verdict(d["condition"], known.get(d["id"])) == WAIT for d in deps):
            out.waiting.add(job_id)
    return out


def _first_broken(deps: list[dict[str, str]], known: dict[str, str | None]) -> dict | None:
    for dep in deps:
        state = known.get(dep["id"])
        if verdict(dep["condition"], state) == NEVER:
            return {"dependency": dep["id"], "condition": dep["condition"], "state": state}
    return None

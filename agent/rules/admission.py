"""Which queued jobs may start now (pure).

Kept apart from the controller so the capacity rules can be tested without
Podman: a global ``max_concurrent``, optional per-name limits, one job at a
time per cache (a job waits while another uses one of its ``caches``),
priority first, then submission order (ULIDs sort by time), retry backoff
(``not_before``), jobs held back by the caller (waiting for dependencies:
agent/rules/dependencies.py), jobs submitted held (``held``: until released),
and what an admin set at run time (``QueueControl``: the whole queue or one
name paused, per-name limits that override the configured ``name_limits``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agent.protocol.caches import caches_of
from agent.protocol.states import ACTIVE, State


@dataclass(frozen=True)
class QueueControl:
    """What admins set at run time (``chooctl pause``/``limit``), kept across restarts.

    ``paused``: the whole queue admits nothing; ``paused_names``: jobs of these
    names are not admitted; ``limits``: per-name caps (0 and up) that replace
    the configured ``name_limits`` of the same names. Running jobs are never
    touched by any of them.
    """

    paused: bool = False
    paused_names: frozenset[str] = frozenset()
    limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def name_limits(self, defaults: Mapping[str, int]) -> dict[str, int]:
        """The per-name caps in force: ``defaults`` (the config's), the runtime ones over them."""
        return {**defaults, **self.limits}

    def summary(self) -> str | None:
        """``queue paused``, ``names paused: build, deploy`` or both, for a status
        line (None: nothing is paused)."""
        parts = ["queue paused"] if self.paused else []
        if self.paused_names:
            parts.append("names paused: " + ", ".join(sorted(self.paused_names)))
        return "; ".join(parts) or None


NO_CONTROL = QueueControl()


def admit(
    jobs: list[dict[str, Any]],
    *,
    max_concurrent: int,
    name_limits: Mapping[str, int],
    now: float,
    held: set[str] | frozenset[str] = frozenset(),
    control: QueueControl = NO_CONTROL,
) -> list[dict[str, Any]]:
    """Pick the queued jobs to start, in the order to start them.

    Args:
        jobs: every non-terminal job (any order).
        max_concurrent: the most jobs that may be starting or running at once.
        name_limits: per-``name`` caps on starting or running jobs (the config's).
        now: the current time, for retry backoff.
        held: IDs of queued jobs that may not start yet, whatever the capacity.
        control: the pauses and runtime limits (a limit there replaces one of
            ``name_limits``).

    Returns:
        The queued jobs to start now; never more than the free capacity, and
        none while the whole queue is paused.
    """
    if control.paused:
        return []
    name_limits = control.name_limits(name_limits)
    active = [j for j in jobs if j["state"] in ACTIVE]
    free = max_concurrent - len(active)
    per_name = Counter(j["name"] for j in active if j["name"])
    # One writer per cache: a job waits while another holds one of its caches.
    in_use = {cache for j in active for cache in caches_of(j.get("spec") or {})}
    queued = sorted(
        (
            j
            for j in jobs
            if j["state"] == State.QUEUED
            and not j["cancel_requested"]
            and not j.get("held")
            and j["id"] not in held
            and j["name"] not in control.paused_names
        ),
        key=lambda j: (-j["priority"], j["id"]),
    )
    chosen = []
    for job in queued:
        if free <= 0:
            break
        if job["not_before"] is not None and job["not_before"] > now:
            continue
        name = job["name"]
        if name and name in name_limits and per_name[name] >= name_limits[name]:
            continue
        caches = caches_of(job.get("spec") or {})
        if caches & in_use:
            continue
        in_use |= caches
        chosen.append(job)
        free -= 1
        if name:
            per_name[name] += 1
    return chosen


def backoff(attempt: int, base: float, cap: float, fraction: float = 1.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    Args:
        attempt: the number of the attempt that failed.
        base: the first backoff; each later one doubles.
        cap: the longest backoff.
        fraction: how much of it to wait, from 0 to 1: full jitter (a random
            fraction, so that jobs failing together do not retry together), or
            1 for the exact doubling.

    Returns:
        ``fraction * min(cap, base * 2^(attempt-1))``.
    """
    return fraction * min(cap, base * (2 ** max(0, attempt - 1)))

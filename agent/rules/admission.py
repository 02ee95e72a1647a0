"""Which queued jobs may start now (pure).

Kept apart from the controller so the capacity rules can be tested without
Podman: a global ``max_concurrent``, optional per-name limits, one job at a
time per cache (a job waits while another uses one of its ``caches``),
priority first, then submission order (ULIDs sort by time), retry backoff
(``not_before``), and jobs held back by the caller (waiting for dependencies:
agent/rules/dependencies.py) and jobs submitted held (``held``: until released).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.protocol.caches import caches_of
from agent.protocol.states import ACTIVE, State


def admit(
    jobs: list[dict[str, Any]],
    *,
    max_concurrent: int,
    name_limits: dict[str, int],
    now: float,
    held: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Pick the queued jobs to start, in the order to start them.

    Args:
        jobs: every non-terminal job (any order).
        max_concurrent: the most jobs that may be starting or running at once.
        name_limits: per-``name`` caps on starting or running jobs.
        now: the current time, for retry backoff.
        held: IDs of queued jobs that may not start yet, whatever the capacity.

    Returns:
        The queued jobs to start now; never more than the free capacity.
    """
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

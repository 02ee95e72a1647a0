"""Queued jobs waiting for others (``after``): which may not start yet, and
the cascade that cancels those that never may.

Each reconcile pass hands its queued jobs to ``settle``: it reads the states
of the jobs they wait for, lets ``agent.rules.dependencies`` decide, and
cancels (reason ``dependency``, the event naming the cause) every waiter
whose condition can no longer be met, its own waiters in the same pass. The
decision is made from the database alone each time, so it is the same after
a restart. Never starts a job (admission does) and never talks to Podman.
"""

from __future__ import annotations

from agent.protocol.states import Reason, State
from agent.rules import dependencies
from agent.runtime.steps import move
from agent.storage.store import Store


def settle(store: Store, queued: list[dict]) -> set[str]:
    """Cancel the queued jobs whose dependencies can never be met; return the waiting.

    Args:
        store: the job store.
        queued: the queued jobs of this pass (others are ignored).

    Returns:
        The IDs of queued jobs not to admit: those with a dependency that has
        not ended, and those just cancelled (``queued`` still shows them queued).
    """
    waiters = {
        job["id"]: job["spec"]["after"]
        for job in queued
        if job["state"] == State.QUEUED and job["spec"].get("after")
    }
    if not waiters:
        return set()
    named = {dep["id"] for deps in waiters.values() for dep in deps}
    resolution = dependencies.resolve(waiters, store.states_of(named))
    for job_id, cause in resolution.broken.items():
        move(
            store,
            {"id": job_id},
            State.CANCELLED,
            expect=[State.QUEUED],
            reason=Reason.DEPENDENCY,
            detail={"reason": Reason.DEPENDENCY, **cause},
        )
    return resolution.waiting | resolution.broken.keys()

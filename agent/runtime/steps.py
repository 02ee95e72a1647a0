"""Small idempotent steps shared by the loop, the launch and the finish.

Each is safe to repeat and to race: a transition someone else already made
(a cancel, a second pass) is skipped, not raised. Never decides a job's
outcome (``agent.rules.outcome`` does) and never waits.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.protocol.errors import InvalidTransition
from agent.protocol.states import State
from agent.runtime.ports import PodmanPort
from agent.storage.store import Store

log = logging.getLogger(__name__)


def move(store: Store, job: dict, target: State, **kwargs: Any) -> dict | None:
    """Transition a job, treating a lost race (someone else moved it) as a no-op.

    Args:
        store: the job store.
        job: the job as last read.
        target: the state to move it to.
        **kwargs: passed to ``Store.transition`` (``expect``, ``detail``, fields).

    Returns:
        The job after the transition, or None when it was skipped.
    """
    try:
        return store.transition(job["id"], target, **kwargs)
    except InvalidTransition as exc:
        log.debug("skipped %s -> %s: %s", job["id"], target, exc.message)
        return None


def adopt(store: Store, job: dict, container_id: str, now: float) -> dict | None:
    """Record that a job found ``starting`` runs: its container had started
    when the agent went down, before ``running`` was recorded.

    Returns:
        The job, now ``running``, or None when someone else moved it first.
    """
    return move(
        store,
        job,
        State.RUNNING,
        expect=[State.STARTING],
        started_at=job["started_at"] or now,
        attempt_fields={"container_id": container_id},
    )


def remove_secrets(podman: PodmanPort, job: dict) -> None:
    """Remove any Podman secret of a job that asked for secrets.

    ``Podman.run`` removes them once the container has started; this catches
    those left when the agent died between the two.
    """
    if job["spec"].get("secrets"):
        podman.remove_secrets(job["id"])

"""Small idempotent steps shared by the loop, the launch and the finish.

Each is safe to repeat and to race: a transition someone else already made
(a cancel, a second pass) is skipped, not raised. Never decides a job's
outcome (``agent.rules.outcome`` does) and never waits.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from agent.config import Config
from agent.protocol.errors import InvalidTransition
from agent.protocol.states import Reason, State
from agent.rules import admission
from agent.runtime.ports import ArtifactFiles, PodmanPort
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


def retry_later(
    store: Store,
    job: dict,
    *,
    config: Config,
    now: float,
    expect: list[State],
    reason: Reason | None,
    note: str | None = None,
    **fields: Any,
) -> dict | None:
    """Put a job whose attempt failed back in the queue, due after its backoff.

    Args:
        store: the job store.
        job: the job as last read (its ``attempt`` sets the backoff).
        config: ``retry_backoff_base`` and ``retry_backoff_cap``.
        now: the current time.
        expect: the states the job may be in.
        reason: why the attempt failed.
        note: why it is retried (the rule's word, in the event).
        **fields: more columns of the job (``attempt_fields`` too).

    Returns:
        The job, now ``queued``, or None when someone else moved it first.
    """
    delay = retry_delay(job, config)
    log.info(
        "job %s attempt %d failed (%s); retrying in %.0fs", job["id"], job["attempt"], reason, delay
    )
    detail = {"reason": reason, "retry_in": delay, "exit_code": fields.get("exit_code")}
    if note is not None:
        detail["retry"] = note
    return move(
        store,
        job,
        State.QUEUED,
        expect=expect,
        detail=detail,
        retries_left=job["retries_left"] - 1,
        not_before=now + delay,
        stop_reason=None,
        stop_sent_at=None,
        **fields,
    )


def retry_delay(job: dict, config: Config) -> float:
    """Seconds before the job's next attempt: its backoff, with full jitter
    under ``retry_jitter`` (the exact doubling without)."""
    fraction = random.random() if config.retry_jitter else 1.0
    return admission.backoff(
        job["attempt"], config.retry_backoff_base, config.retry_backoff_cap, fraction
    )


def remove_secrets(podman: PodmanPort, job: dict) -> None:
    """Remove any Podman secret of a job that asked for secrets.

    They stay while the job's container does (``podman exec`` reads them
    again); an attempt's end removes them, and the loop's sweeps catch any
    whose removal failed or never came (agent/runtime/sweeps.py).
    """
    if job["spec"].get("secrets"):
        podman.remove_secrets(job["id"])


def remove_out(podman: PodmanPort, files: ArtifactFiles | None, job_id: str) -> None:
    """Remove a job's /out: its host directory, a local removal, when it has one
    (agent/adapters/out_dirs.py), else its Podman volume (a job running as
    another user, or one begun by an agent before host directories).

    Raises:
        PodmanUnavailable: Podman did not answer the volume's removal.
    """
    if files is not None and files.out_dir(job_id) is not None:
        files.remove_out_dir(job_id)  # a failure is logged; the sweeps try again
    else:
        podman.remove_out_volume(job_id)


def clean_up(
    podman: PodmanPort,
    config: Config,
    files: ArtifactFiles | None,
    job: dict,
    container_id: str,
    *,
    retried: bool,
) -> None:
    """Remove what an attempt's recorded end leaves behind.

    A retry's container always goes (the next attempt takes its name); its
    /out stays (a job's attempts share it). A final end keeps its container
    under ``keep_containers``, and its /out with it.

    Raises:
        PodmanUnavailable: Podman did not answer (the sweeps remove the rest).
    """
    if retried or not config.keep_containers:
        podman.remove(container_id)
    if not retried and not config.keep_containers:
        remove_out(podman, files, job["id"])
    remove_secrets(podman, job)

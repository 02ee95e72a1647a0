"""A job's dependencies (``after``) at submit and in its record.

At submit every job named must exist (so dependencies can never form a
cycle), be visible to the caller, and not have ended in a way that already
fails the condition; prefixes become full IDs. ``describe`` lists each
dependency with its state and what that means for the waiter (``job.get``).
Never moves a job: waiting and the cascade are the controller's
(agent/runtime/waiting.py).
"""

from __future__ import annotations

from typing import Any

from agent.api.owners import OWNER, Owners
from agent.api.peers import Peer
from agent.protocol.errors import AmbiguousPrefix, InvalidParams, NoSuchJob
from agent.rules import dependencies
from agent.storage.store import Store


def resolve_after(
    store: Store, owners: Owners, after: list[dict[str, str]], peer: Peer | None
) -> list[dict[str, str]]:
    """The spec's ``after`` with full IDs, each checked.

    Args:
        store: the job store.
        owners: the owner rule (a caller may wait only for jobs it may see).
        after: the normalised entries (``id`` may be a prefix).
        peer: the submitting caller.

    Returns:
        The entries with full job IDs.

    Raises:
        InvalidParams: a job named does not exist (or is ambiguous), or has
            already ended so that the condition can never be met;
        Unauthorized: ``list_others`` is off and the job is another's.
    """
    out = []
    for dep in after:
        try:
            full = store.resolve(dep["id"])
        except (NoSuchJob, AmbiguousPrefix) as exc:
            raise InvalidParams(f"after: {exc.message}") from exc
        if any(e["id"] == full for e in out):
            raise InvalidParams(f"after: job {full} is named twice; name each job once")
        job = store.get(full)
        if not owners.may_see(peer, job[OWNER]):
            owners.require(peer, f"job {full}", job[OWNER], "wait for it (list_others = false)")
        if dependencies.verdict(dep["condition"], job["state"]) == dependencies.NEVER:
            raise InvalidParams(
                f"after: job {full} already ended {job['state']}, so "
                f"{dep['condition']!r} can never be met; choose another condition or job"
            )
        out.append({"id": full, "condition": dep["condition"]})
    return out


def describe(store: Store, job: dict[str, Any]) -> list[dict[str, Any]]:
    """Each dependency of ``job`` with its ``state`` (None: removed) and
    ``verdict`` (``met``, ``wait``, ``never``)."""
    after = job["spec"].get("after") or []
    states = store.states_of(dep["id"] for dep in after)
    return [
        {
            **dep,
            "state": states.get(dep["id"]),
            "verdict": dependencies.verdict(dep["condition"], states.get(dep["id"])),
        }
        for dep in after
    ]

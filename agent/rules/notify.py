"""Which notifications a job's end makes, and when a failed delivery is tried again (pure).

``plan`` is called by the store inside the transaction that records a job's
end, so it must stay cheap and never do I/O: it reads the job's record and
the rules (the config's and the job's own ``notify``) and nothing else.
"""

from __future__ import annotations

from typing import Any

from agent.protocol.states import State


def events_of(job: dict[str, Any]) -> set[str]:
    """The rule events a finished job's record matches (``any`` always)."""
    events = {"any", job["state"]}
    spec = job.get("spec") or {}
    if job["state"] == State.FAILED and spec.get("retries", 0) > 0 and job["retries_left"] == 0:
        events.add("retries_exhausted")
    return events


def plan(job: dict[str, Any], config_rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The deliveries a job's end makes: ``(target, event)``, one per target.

    Args:
        job: the job's record, already in its final state.
        config_rules: the config's ``notify`` (a rule with ``name`` applies to
            jobs of that name only); the job's own ``notify`` comes after them.

    Returns:
        Each target that some matching rule names, once, with the first event
        that matched it (a target named by two rules gets one delivery).
    """
    happened = events_of(job)
    own = (job.get("spec") or {}).get("notify") or []
    chosen: dict[str, str] = {}
    for rule in [*config_rules, *own]:
        if rule.get("name") is not None and rule["name"] != job.get("name"):
            continue
        matched = [event for event in rule["on"] if event in happened]
        if matched and rule["target"] not in chosen:
            chosen[rule["target"]] = matched[0]
    return list(chosen.items())


def idempotency_key(job_id: str, target: str) -> str:
    """The key every try of one delivery carries: a job ends once, so per job and target."""
    return f"{job_id}.{target}"


def retry_delay(tries: int, base: float, cap: float) -> float:
    """Seconds before the next try, after ``tries`` failed ones: doubling from ``base``
    up to ``cap``."""
    return min(cap, base * 2 ** max(0, tries - 1))

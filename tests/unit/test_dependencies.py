"""The dependency rule (``after``): each verdict, and the cascade through levels."""

from __future__ import annotations

import pytest

from agent.rules.dependencies import MET, NEVER, WAIT, resolve, verdict


@pytest.mark.parametrize(
    ("condition", "state", "expected"),
    [
        ("ok", "queued", WAIT),
        ("ok", "starting", WAIT),
        ("ok", "running", WAIT),
        ("ok", "succeeded", MET),
        ("ok", "failed", NEVER),
        ("ok", "cancelled", NEVER),
        ("failed", "running", WAIT),
        ("failed", "failed", MET),
        ("failed", "succeeded", NEVER),
        ("failed", "cancelled", NEVER),
        ("any", "queued", WAIT),
        ("any", "succeeded", MET),
        ("any", "failed", MET),
        ("any", "cancelled", MET),
        ("ok", None, NEVER),
        ("any", None, NEVER),
    ],
)
def test_verdict(condition, state, expected):
    assert verdict(condition, state) == expected


def dep(job_id, condition="ok"):
    return {"id": job_id, "condition": condition}


def test_a_waiter_on_a_running_job_waits():
    out = resolve({"B": [dep("A")]}, {"A": "running"})
    assert out.waiting == {"B"} and out.broken == {}


def test_met_dependencies_neither_wait_nor_break():
    out = resolve({"B": [dep("A"), dep("X", "failed")]}, {"A": "succeeded", "X": "failed"})
    assert out.waiting == set() and out.broken == {}


def test_one_of_several_still_running_keeps_it_waiting():
    out = resolve({"B": [dep("A"), dep("X", "any")]}, {"A": "succeeded", "X": "running"})
    assert out.waiting == {"B"}


def test_a_broken_dependency_wins_over_one_still_running():
    out = resolve({"B": [dep("X", "any"), dep("A")]}, {"A": "failed", "X": "running"})
    assert out.waiting == set()
    assert out.broken == {"B": {"dependency": "A", "condition": "ok", "state": "failed"}}


def test_the_cascade_reaches_every_level_in_one_call_in_any_order():
    # D waits on C waits on B waits on A (failed); listed leaf first.
    waiters = {"D": [dep("C")], "C": [dep("B")], "B": [dep("A")]}
    states = {"A": "failed", "B": "queued", "C": "queued"}
    out = resolve(waiters, states)
    assert set(out.broken) == {"B", "C", "D"} and out.waiting == set()
    assert out.broken["C"] == {"dependency": "B", "condition": "ok", "state": "cancelled"}


def test_a_waiter_for_any_end_of_a_cascaded_job_is_not_cancelled():
    waiters = {"B": [dep("A")], "C": [dep("B", "any")]}
    out = resolve(waiters, {"A": "failed", "B": "queued"})
    assert set(out.broken) == {"B"}
    assert out.waiting == set()  # B's end (cancelled) meets "any": C may start


def test_a_removed_dependency_can_never_be_met():
    out = resolve({"B": [dep("GONE", "any")]}, {})
    assert out.broken == {"B": {"dependency": "GONE", "condition": "any", "state": None}}

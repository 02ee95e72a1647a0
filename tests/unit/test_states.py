"""agent.protocol.states: the job life cycle table."""

from __future__ import annotations

import itertools

import pytest

from agent.protocol.states import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Reason,
    State,
    can_transition,
    is_terminal,
)

Q, ST, R = State.QUEUED, State.STARTING, State.RUNNING
OK, FAIL, CANC = State.SUCCEEDED, State.FAILED, State.CANCELLED

# The life cycle as SPEC.md describes it, written out independently of the code:
# queued -> starting -> running -> succeeded | failed | cancelled, plus the
# retry edges back to queued and the early exits (cancel while queued, create
# failure while starting).
ALLOWED = {
    (Q, ST),
    (Q, CANC),
    (ST, R),
    (ST, Q),
    (ST, FAIL),
    (ST, CANC),
    (R, OK),
    (R, FAIL),
    (R, CANC),
    (R, Q),
}


def test_state_values_are_the_wire_names():
    assert [s.value for s in State] == [
        "queued",
        "starting",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]


def test_reasons_cover_the_documented_ones():
    assert {r.value for r in Reason} >= {"exit", "timeout", "lost", "oom", "image", "create"}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(State, State)))
def test_transition_matrix(current, target):
    assert can_transition(current, target) is ((current, target) in ALLOWED)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_can_transition_accepts_plain_strings(current, target):
    assert can_transition(current.value, target.value)


def test_no_state_may_stay_where_it_is():
    assert not any(can_transition(s, s) for s in State)


def test_terminal_states():
    assert {OK, FAIL, CANC} == TERMINAL
    assert all(TRANSITIONS[s] == frozenset() for s in TERMINAL)
    assert [s for s in State if is_terminal(s)] == [OK, FAIL, CANC]
    assert is_terminal("failed") and not is_terminal("running")


def test_active_states_are_neither_queued_nor_terminal():
    assert {ST, R} == ACTIVE
    assert not ACTIVE & TERMINAL
    assert Q not in ACTIVE


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(State)


def test_every_nonterminal_state_can_reach_an_end():
    def reachable(start: State) -> set[State]:
        seen, todo = set(), [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reachable(Q) == set(State)
    for state in set(State) - TERMINAL:
        assert reachable(state) >= TERMINAL


@pytest.mark.parametrize("bad", ["QUEUED", "done", ""])
def test_unknown_state_names_are_rejected(bad):
    with pytest.raises(ValueError):
        can_transition(bad, "running")
    with pytest.raises(ValueError):
        can_transition("queued", bad)
    with pytest.raises(ValueError):
        is_terminal(bad)

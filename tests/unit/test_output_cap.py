"""The output cap's rule (agent/rules/output_cap.py): whole records, per attempt."""

from __future__ import annotations

import pytest

from agent.rules.output_cap import Budget


def feed(budget, sizes, start=0):
    """Ask about records of these output sizes laid end to end (10 header bytes each)."""
    kept, offset = [], start
    for size in sizes:
        end = offset + 10 + size
        kept.append(budget.admit(offset, end, size))
        offset = end
    return kept


@pytest.mark.parametrize(
    "cap, sizes, kept",
    [
        (0, [8192] * 5, [True] * 5),  # no cap
        (10, [4, 6, 1], [True, True, False]),  # exactly the cap is kept
        (10, [4, 7, 1], [True, False, False]),  # the record that passes it is dropped ...
        (10, [4, 7, 0, 1], [True, False, False, False]),  # ... and everything after
        (10, [11], [False]),  # even the first
        (10, [0, 0, 10], [True, True, True]),
    ],
)
def test_the_first_record_past_the_cap_and_all_after_it_are_dropped(cap, sizes, kept):
    assert feed(Budget(cap), sizes) == kept


def test_the_cut_is_where_the_first_dropped_record_begins():
    budget = Budget(10)
    feed(budget, [4, 4, 4, 4])
    assert (budget.cut, budget.kept, budget.end) == (28, 8, 28)


def test_asking_again_about_a_counted_record_keeps_it_and_counts_nothing():
    budget = Budget(10)
    assert budget.admit(0, 15, 5)
    assert budget.admit(0, 15, 5)  # a copy retried after journald refused it
    assert budget.kept == 5
    assert budget.admit(15, 20, 5) and not budget.admit(20, 21, 1)
    assert budget.admit(15, 20, 5)  # before the cut: still kept
    assert not budget.admit(20, 21, 1) and budget.kept == 10

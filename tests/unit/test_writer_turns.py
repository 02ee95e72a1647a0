"""WriterTurns: arrival order, re-entry, and patience that runs only while no turn
goes through. Real threads; each test synchronises on the lock's own state."""

from __future__ import annotations

import threading
import time

import pytest

from agent.storage.writer_turns import WriterTurns
from tests.harness import wait_until


def _queued(turns: WriterTurns, count: int) -> None:
    """Wait until ``count`` threads are queued (the lock's own record of them)."""
    wait_until(lambda: len(turns._queue) >= count, 10, f"{count} threads queued", interval=0.001)


def test_turns_go_in_arrival_order():
    turns = WriterTurns(patience=10)
    assert turns.acquire()
    order: list[int] = []

    def writer(n: int) -> None:
        assert turns.acquire()
        order.append(n)
        turns.release()

    threads = []
    for n in range(8):
        thread = threading.Thread(target=writer, args=(n,))
        thread.start()
        threads.append(thread)
        _queued(turns, n + 1)  # each queued before the next arrives
    turns.release()
    for thread in threads:
        thread.join(10)
    assert order == list(range(8))


def test_a_holder_takes_its_turn_again_without_waiting():
    turns = WriterTurns(patience=0.01)
    assert turns.acquire()
    assert turns.acquire()
    turns.release()
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(turns.acquire()))
    thread.start()
    thread.join(5)
    assert other == [False]  # still held once
    turns.release()
    thread = threading.Thread(target=lambda: other.append(turns.acquire()))
    thread.start()
    thread.join(5)
    assert other == [False, True]


def test_release_by_a_thread_that_does_not_hold_it_is_refused():
    turns = WriterTurns(patience=1)
    with pytest.raises(RuntimeError, match="does not hold"):
        turns.release()


def test_a_waiter_far_back_waits_longer_than_its_patience_while_turns_go_through():
    """Ten writers each holding a turn for a third of the patience: the last waits
    three patiences in all, and gets its turn."""
    patience = 0.15
    turns = WriterTurns(patience=patience)
    results: list[bool] = []

    def writer() -> None:
        got = turns.acquire()
        results.append(got)
        if got:
            time.sleep(patience / 3)  # the work a turn does
            turns.release()

    threads = [threading.Thread(target=writer) for _ in range(10)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [True] * 10
    assert time.monotonic() - start > 2 * patience  # longer than any one waiter's patience


def test_waiters_behind_stuck_turns_give_up_within_their_patience():
    """Turns that fail (SQLite locked from outside) are no progress: nobody waits
    for all of them in turn."""
    patience = 0.2
    turns = WriterTurns(patience=patience)
    results: list[tuple[bool, float]] = []

    def writer() -> None:
        began = time.monotonic()
        got = turns.acquire()
        if got:
            time.sleep(patience)  # SQLite's own busy wait, then failure
            turns.release(went_through=False)
        results.append((got, time.monotonic() - began))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    gave_up = [waited for got, waited in results if not got]
    # Waiting in turn, all eight would get the lock (each after the one before
    # failed); only the first holder, and one that got it just as patience ran
    # out, do.
    assert len(gave_up) >= 6, results


def test_a_waiter_that_gives_up_at_the_head_of_the_queue_passes_the_turn_on():
    turns = WriterTurns(patience=0.05)
    assert turns.acquire()
    first: list[bool] = []
    thread = threading.Thread(target=lambda: first.append(turns.acquire()))
    thread.start()
    thread.join(5)
    assert first == [False]
    assert turns._queue == []
    turns.release()
    assert turns.acquire()  # free, nobody queued
    turns.release()

"""agent.runtime.changes: the feed of committed events that threads wait on."""

from __future__ import annotations

import threading
import time

import pytest

from agent.runtime.changes import ChangeFeed


def _later(delay: float, fn) -> threading.Timer:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
    return timer


@pytest.fixture
def feed() -> ChangeFeed:
    return ChangeFeed()


def test_publish_numbers_events_from_one(feed):
    assert feed.seq == 0
    feed.publish({"n": 1})
    feed.publish({"n": 2})
    assert feed.seq == 2


def test_since_returns_the_events_after_a_sequence_number(feed):
    for n in range(1, 6):
        feed.publish({"n": n})
    assert feed.since(0) == (5, [{"n": n} for n in range(1, 6)])
    assert feed.since(3) == (5, [{"n": 4}, {"n": 5}])
    assert feed.since(5) == (5, [])


def test_window_keeps_only_the_most_recent_events():
    feed = ChangeFeed(window=3)
    for n in range(1, 6):
        feed.publish({"n": n})
    assert feed.since(0) == (5, [{"n": 3}, {"n": 4}, {"n": 5}])


def test_wait_for_returns_at_once_when_predicate_holds(feed):
    start = time.monotonic()
    assert feed.wait_for(lambda: True, timeout=5) is True
    assert time.monotonic() - start < 0.1


def test_wait_for_times_out_with_false(feed):
    start = time.monotonic()
    assert feed.wait_for(lambda: False, timeout=0.2) is False
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 0.8


def test_wait_for_with_zero_timeout_checks_once(feed):
    assert feed.wait_for(lambda: False, timeout=0) is False


def test_wait_for_wakes_on_publish_from_another_thread(feed):
    seen = []
    _later(0.05, lambda: (seen.append(1), feed.publish({"kind": "state"})))
    start = time.monotonic()
    assert feed.wait_for(lambda: bool(seen), timeout=5) is True
    # Well under the one-second fallback wake-up: the publish woke it.
    assert time.monotonic() - start < 0.5


def test_wait_for_without_timeout_wakes_on_publish(feed):
    done = []
    _later(0.05, lambda: (done.append(1), feed.publish({})))
    assert feed.wait_for(lambda: bool(done), timeout=None) is True


def test_wait_for_rechecks_predicate_without_events(feed):
    # A predicate that depends on something other than events (a closed
    # socket) must still be noticed, by the periodic wake-up.
    flag = threading.Event()
    _later(0.05, flag.set)
    start = time.monotonic()
    assert feed.wait_for(flag.is_set, timeout=5) is True
    assert time.monotonic() - start < 2.0


def test_wait_for_keeps_waiting_through_irrelevant_events(feed):
    target = []

    def publisher():
        for _ in range(5):
            feed.publish({"kind": "noise"})
            time.sleep(0.01)
        target.append(1)
        feed.publish({"kind": "wanted"})

    _later(0.01, publisher)
    assert feed.wait_for(lambda: bool(target), timeout=5) is True
    assert feed.seq == 6


def test_wait_after_returns_at_once_when_already_behind(feed):
    feed.publish({})
    feed.publish({})
    start = time.monotonic()
    assert feed.wait_after(0, timeout=5) == 2
    assert time.monotonic() - start < 0.1


def test_wait_after_blocks_until_a_newer_event(feed):
    feed.publish({})
    _later(0.05, lambda: feed.publish({}))
    start = time.monotonic()
    assert feed.wait_after(1, timeout=5) == 2
    assert time.monotonic() - start < 0.5


def test_wait_after_times_out_returning_the_current_seq(feed):
    feed.publish({})
    start = time.monotonic()
    assert feed.wait_after(1, timeout=0.1) == 1
    assert time.monotonic() - start >= 0.1


def test_one_publish_wakes_every_waiter(feed):
    results = []
    lock = threading.Lock()

    def waiter():
        seq = feed.wait_after(0, timeout=5)
        with lock:
            results.append(seq)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    start = time.monotonic()
    feed.publish({})
    for t in threads:
        t.join(2)
    assert time.monotonic() - start < 1.0
    assert results == [1] * 5


def test_concurrent_publishers_lose_nothing(feed):
    def publish_many(who):
        for n in range(200):
            feed.publish({"who": who, "n": n})

    threads = [threading.Thread(target=publish_many, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seq, events = feed.since(0)
    assert seq == 800
    assert len(events) == 800
    for who in range(4):
        assert [e["n"] for e in events if e["who"] == who] == list(range(200))

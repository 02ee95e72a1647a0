"""agent.runtime.changes: the feed of committed events that threads wait on."""

from __future__ import annotations

import threading
import time

import pytest

from agent.protocol import spec as specs
from agent.protocol.methods import WaitParams
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed


class WatchedCondition(threading.Condition):
    """The feed's condition, watched: how each wait ended, and how many have begun.

    ``wakes`` holds each ``wait``'s result: True when a notify woke it, False
    when its timeout did. Tests order their threads on ``wait_for_waits``
    (a waiter is blocked in the feed) instead of sleeping.
    """

    def __init__(self):
        super().__init__()
        self.wakes: list[bool] = []
        self._begun = 0
        self._begun_cond = threading.Condition()

    def wait(self, timeout=None):
        with self._begun_cond:
            self._begun += 1
            self._begun_cond.notify_all()
        woken = super().wait(timeout)
        self.wakes.append(woken)
        return woken

    def wait_for_waits(self, count: int) -> None:
        """Block until ``count`` waits have begun (their lock then released or soon to be)."""
        with self._begun_cond:
            assert self._begun_cond.wait_for(lambda: self._begun >= count, 10), (
                f"only {self._begun} of {count} waits began"
            )


def _once_waiting(watched: WatchedCondition, action, waits: int = 1) -> threading.Thread:
    """Run ``action`` on another thread once ``waits`` waits have begun on the feed.

    ``publish`` takes the feed's lock, which a waiter holds until it is inside
    ``wait``: so a publish from ``action`` always lands on a blocked waiter.
    """

    def run():
        watched.wait_for_waits(waits)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def watched() -> WatchedCondition:
    return WatchedCondition()


@pytest.fixture
def feed(watched) -> ChangeFeed:
    feed = ChangeFeed()
    feed._cond = watched  # the feed's only synchronisation, observed
    return feed


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


def test_wait_for_returns_at_once_when_predicate_holds(feed, watched):
    assert feed.wait_for(lambda: True, timeout=5) is True
    assert watched.wakes == []  # never waited


def test_wait_for_times_out_with_false(feed, watched):
    start = time.monotonic()
    assert feed.wait_for(lambda: False, timeout=0.2) is False
    assert time.monotonic() - start >= 0.2  # not before its time
    assert watched.wakes and not any(watched.wakes)


def test_wait_for_with_zero_timeout_checks_once(feed, watched):
    assert feed.wait_for(lambda: False, timeout=0) is False
    assert watched.wakes == []


def test_wait_for_wakes_on_publish_from_another_thread(feed, watched):
    seen = []
    _once_waiting(watched, lambda: (seen.append(1), feed.publish({"kind": "state"})))
    assert feed.wait_for(lambda: bool(seen), timeout=5) is True
    # The publish woke it, not the once-a-second fallback (which may have
    # come first on a slow machine, and found nothing).
    assert watched.wakes[-1] is True


def test_wait_for_without_timeout_wakes_on_publish(feed, watched):
    done = []
    _once_waiting(watched, lambda: (done.append(1), feed.publish({})))
    assert feed.wait_for(lambda: bool(done), timeout=None) is True
    assert watched.wakes[-1] is True


def test_wait_for_rechecks_predicate_without_events(feed, watched):
    # A predicate that depends on something other than events (a closed
    # socket) must still be noticed, by the periodic wake-up.
    flag = threading.Event()
    _once_waiting(watched, flag.set)
    assert feed.wait_for(flag.is_set, timeout=5) is True
    assert watched.wakes[-1] is False  # the fallback wake-up saw it, no event did


def test_wait_for_keeps_waiting_through_irrelevant_events(feed, watched):
    target = []

    def publisher():
        for waits in range(1, 6):
            watched.wait_for_waits(waits)
            feed.publish({"kind": "noise"})
        watched.wait_for_waits(6)
        target.append(1)
        feed.publish({"kind": "wanted"})

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    assert feed.wait_for(lambda: bool(target), timeout=5) is True
    thread.join(5)
    assert feed.seq == 6
    assert watched.wakes[-1] is True  # the wanted event woke it; noise before it did not end it


def test_wait_after_returns_at_once_when_already_behind(feed, watched):
    feed.publish({})
    feed.publish({})
    assert feed.wait_after(0, timeout=5) == 2
    assert watched.wakes == []


def test_wait_after_blocks_until_a_newer_event(feed, watched):
    feed.publish({})
    _once_waiting(watched, lambda: feed.publish({}))
    assert feed.wait_after(1, timeout=5) == 2
    assert watched.wakes == [True]


def test_wait_after_times_out_returning_the_current_seq(feed, watched):
    feed.publish({})
    start = time.monotonic()
    assert feed.wait_after(1, timeout=0.1) == 1
    assert time.monotonic() - start >= 0.1
    assert watched.wakes and not any(watched.wakes)


def test_one_publish_wakes_every_waiter(feed, watched):
    results = []
    lock = threading.Lock()

    def waiter():
        seq = feed.wait_after(0, timeout=5)
        with lock:
            results.append(seq)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for t in threads:
        t.start()
    watched.wait_for_waits(5)
    feed.publish({})
    for t in threads:
        t.join(5)
    assert results == [1] * 5
    assert watched.wakes == [True] * 5  # all by the one notify, none by a timeout


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


def test_a_store_commit_wakes_a_service_waiting_on_the_same_feed(feed_store, feed_service):
    spec = specs.normalize({"image": "alpine", "command": ["true"]})
    job_id = feed_store.add_job(spec, trigger="rpc", queue_limit=10)["id"]
    watched = WatchedCondition()
    feed_store.feed._cond = watched
    _once_waiting(watched, lambda: feed_store.transition(job_id, State.CANCELLED))
    assert feed_service.wait(WaitParams(job_id, timeout=30))["state"] == "cancelled"
    assert watched.wakes[-1] is True  # the store's publish woke the service's wait


def test_relay_passes_on_the_wanted_events_from_now_until_the_count():
    feed = ChangeFeed()
    feed.publish({"job_id": "old"})  # before the relay began: not passed on
    got = []

    def publish_later():
        for job_id in ("a", "b", "a", "a"):
            feed.publish({"job_id": job_id})

    watched = WatchedCondition()
    feed._cond = watched
    _once_waiting(watched, publish_later)
    sent, missed = feed.relay(
        lambda event: event["job_id"] == "a",
        got.append,
        deadline=time.monotonic() + 30,
        count=2,
    )
    assert (sent, missed) == (2, False)
    assert got == [{"job_id": "a"}, {"job_id": "a"}]


def test_publish_many_keeps_the_order_and_wakes_the_waiters_once():
    feed = ChangeFeed()
    notified = []
    original = feed._cond.notify_all
    feed._cond.notify_all = lambda: (notified.append(feed.seq), original())
    feed.publish_many([{"n": i} for i in range(3)])
    feed.publish_many([])
    seq, events = feed.since(0)
    assert (seq, [e["n"] for e in events]) == (3, [0, 1, 2])
    assert len(notified) == 1

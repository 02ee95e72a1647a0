"""agent.runtime.changes: the feed of committed events that threads wait on."""

from __future__ import annotations

import threading
import time

import pytest

from agent.protocol import spec as specs
from agent.protocol.methods import WaitParams
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from tests.harness import wait_until


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


def _await_job_waiters(feed: ChangeFeed, job_id: str, count: int) -> None:
    """Block until ``count`` threads wait in ``wait_job`` for ``job_id`` (the feed's own
    record of them, read under its lock)."""

    def waiting() -> bool:
        with feed._cond:
            return feed._jobs.get(job_id, (None, 0))[1] >= count

    wait_until(waiting, 10, f"{count} waiters for {job_id}", interval=0.001)


def _once_job_waiting(feed: ChangeFeed, job_id: str, action) -> threading.Thread:
    """Run ``action`` on another thread once a ``wait_job`` for ``job_id`` is blocked.

    The waiter registers under the feed's lock and waits in the same hold, so a
    publish from ``action`` (which takes that lock) always lands on a blocked waiter.
    """

    def run():
        _await_job_waiters(feed, job_id, 1)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_job_returns_the_newest_seq_at_once_when_the_job_already_moved(feed):
    feed.publish({"job_id": "a"})
    feed.publish({"job_id": "b"})
    assert feed.wait_job("a", after=0, timeout=5) == 2
    assert feed.wait_job("a", after=1, timeout=0) is None  # only b since 1
    assert feed._jobs == {}


def test_wait_job_times_out_with_none(feed):
    start = time.monotonic()
    assert feed.wait_job("a", after=0, timeout=0.2) is None
    assert time.monotonic() - start >= 0.2  # not before its time
    assert feed._jobs == {}


def test_wait_job_is_woken_by_its_own_job_only(feed):
    notified: list[str] = []

    def noise_then_the_job():
        condition, _ = feed._jobs["a"]
        original = condition.notify_all
        condition.notify_all = lambda: (notified.append("a"), original())
        for _ in range(5):
            feed.publish({"job_id": "b"})
        feed.publish({"kind": "schedule"})  # an event of no job
        assert notified == []  # five events of another job woke nobody waiting for a
        feed.publish({"job_id": "a"})

    thread = _once_job_waiting(feed, "a", noise_then_the_job)
    assert feed.wait_job("a", after=0, timeout=30) == 7
    thread.join(5)
    assert notified == ["a"]
    assert feed._jobs == {}


def test_wait_job_counts_a_window_that_lost_events_as_moved():
    feed = ChangeFeed(window=3)
    for _ in range(5):
        feed.publish({"job_id": "b"})
    assert feed.wait_job("a", after=0, timeout=5) == 5  # events 1-2 gone: read the job again
    assert feed.wait_job("a", after=2, timeout=0) is None  # 3-5 are all there, none of a


def test_waiters_for_one_job_are_all_woken_and_leave_nothing_behind(feed):
    results: list[int | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(feed.wait_job("a", after=0, timeout=30)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()

    _await_job_waiters(feed, "a", 3)
    feed.publish({"job_id": "a"})
    for thread in threads:
        thread.join(10)
    assert results == [1, 1, 1]
    assert feed._jobs == {}


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
    _once_job_waiting(
        feed_store.feed, job_id, lambda: feed_store.transition(job_id, State.CANCELLED)
    )
    assert feed_service.wait(WaitParams(job_id, timeout=30))["state"] == "cancelled"


def test_a_service_wait_reads_the_job_only_after_its_own_events(feed_store, feed_service):
    spec = specs.normalize({"image": "alpine", "command": ["true"]})
    job_id, *others = (
        feed_store.add_job(spec, trigger="rpc", queue_limit=10)["id"] for _ in "abcdef"
    )
    reads: list[str] = []
    original = feed_store.get
    feed_store.get = lambda jid, *a, **k: (reads.append(jid), original(jid, *a, **k))[1]

    waiting: list[int] = []

    def others_then_this():
        waiting.append(len(reads))
        for other in others:
            feed_store.transition(other, State.CANCELLED)
        feed_store.transition(job_id, State.CANCELLED)

    _once_job_waiting(feed_store.feed, job_id, others_then_this)
    assert feed_service.wait(WaitParams(job_id, timeout=30))["state"] == "cancelled"
    # While it waited, five other jobs' events read nothing; its own, the job once.
    assert reads[waiting[0] :] == [job_id], reads


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

"""job.list pages kept until the next write (agent/storage/page_cache.py), on a real
SQLite file: a page read twice runs its query once, and any committed write
(a transition, a usage sample, a removal) makes the next read fresh."""

from __future__ import annotations

import threading
import time

import pytest

from agent.protocol.errors import StorageError
from agent.storage.page_cache import PageCache
from tests.unit.test_store_queries import OK, ST, R, add, db_path, feed, finish, store  # noqa: F401


@pytest.fixture
def reads(store):  # noqa: F811
    """How many pages the store has read from SQLite (its ``tuples`` calls)."""
    count = {"n": 0}
    original = store.tuples

    def counted(*args, **kwargs):
        count["n"] += 1
        return original(*args, **kwargs)

    store.tuples = counted
    return count


def test_the_same_page_twice_is_read_once(store, reads):  # noqa: F811
    for _ in range(3):
        add(store)
    first = store.summaries(limit=10)
    assert store.summaries(limit=10) is first
    assert reads["n"] == 1
    store.summaries(limit=2)  # another page: its own read
    store.summaries(limit=10, states=["queued"])
    assert reads["n"] == 3


def test_every_committed_write_makes_the_next_read_fresh(store, reads):  # noqa: F811
    job = add(store)
    assert [j["state"] for j in store.summaries(limit=10)] == ["queued"]
    store.transition(job, ST, new_attempt="rpc")
    assert [j["state"] for j in store.summaries(limit=10)] == ["starting"]
    store.transition(job, R)
    store.update_attempt(job, 1, cpu_seconds=1.5)  # a usage sample: no event, still a write
    assert store.summaries(limit=10)[0]["usage"]["cpu_seconds"] == 1.5
    store.transition(job, OK)
    store.remove_jobs([job])
    assert store.summaries(limit=10) == []
    assert reads["n"] == 4


def test_a_write_that_failed_changes_nothing_and_the_page_stays(store, reads):  # noqa: F811
    add(store)
    page = store.summaries(limit=10)
    with pytest.raises(StorageError), store.writing():
        raise StorageError("the use case's own refusal")
    # The turn ended (a generation passed), so the page is read again: never stale.
    assert store.summaries(limit=10) == page


def test_a_page_with_an_age_is_never_kept(store, reads):  # noqa: F811
    finish(store, add(store))
    since = time.time() - 3600
    store.summaries(limit=10, since=since)
    store.summaries(limit=10, since=since)
    assert reads["n"] == 2


def test_a_page_read_before_a_commit_is_not_served_after_it():
    cache = PageCache()
    # The generation is taken before the read; a write commits meanwhile (1 -> 2).
    stale = cache.get("page", 1, lambda: ["old"])
    assert stale == ["old"]
    assert cache.get("page", 2, lambda: ["new"]) == ["new"]
    assert cache.get("page", 2, lambda: pytest.fail("read again")) == ["new"]


def test_the_oldest_pages_go_past_the_bound():
    cache = PageCache(max_pages=2)
    cache.get("a", 0, lambda: ["a"])
    cache.get("b", 0, lambda: ["b"])
    cache.get("a", 0, lambda: pytest.fail("a is kept"))
    cache.get("c", 0, lambda: ["c"])  # a was read last but kept first: it goes
    assert cache.get("b", 0, lambda: ["b again"]) == ["b"]
    assert cache.get("a", 0, lambda: ["a again"]) == ["a again"]


def test_a_long_page_is_not_kept():
    cache = PageCache(max_rows=2)
    assert cache.get("long", 0, lambda: [1, 2, 3]) == [1, 2, 3]
    assert cache.get("long", 0, lambda: ["read again"]) == ["read again"]
    assert cache.get("short", 0, lambda: [1, 2]) == [1, 2]
    assert cache.get("short", 0, lambda: pytest.fail("kept")) == [1, 2]


def test_a_page_asked_for_between_a_commit_and_the_writer_leaving_sees_the_commit(store):  # noqa: F811
    """Another client asks for the page right after the commit, before the writer's
    block has ended: it must get the new state, not the page kept before."""
    job = add(store)
    assert [j["state"] for j in store.summaries(limit=10)] == ["queued"]
    seen: list[str] = []
    real = store.db.in_transaction

    def after_the_commit() -> bool:  # writing() asks this once the commit is done
        inside = real()
        if not inside and not seen:
            reader = threading.Thread(
                target=lambda: seen.extend(j["state"] for j in store.summaries(limit=10))
            )
            reader.start()
            reader.join(10)
        return inside

    store.db.in_transaction = after_the_commit
    try:
        store.transition(job, ST, new_attempt="rpc")
    finally:
        store.db.in_transaction = real
    assert seen == ["starting"]

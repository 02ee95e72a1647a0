"""The database's connections: each thread its own, given back for the next thread.

Real SQLite file, real threads. A connection a thread gives back
(``release_thread``) serves the next thread that reads or writes, as it is
(pragmas set, schema read); past ``IDLE_KEPT`` waiting, one given back is
closed; one inside a transaction is never handed on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agent.storage import database
from agent.storage.store import Store

SPEC = {"image": "img", "command": ["x"], "pull": "missing", "retries": 1, "stop_timeout": 5}


def in_thread(work: Callable[[], Any]) -> Any:
    """``work``'s result, run on a thread of its own (which then ends)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join()
    return out[0]


def test_a_connection_given_back_serves_the_next_thread_as_it_is(feed_store: Store):
    job = feed_store.add_job(SPEC, trigger="rpc", queue_limit=10)["id"]

    def read_and_give_back() -> sqlite3.Connection:
        assert feed_store.get(job)["state"] == "queued"
        connection = feed_store.db.connection()
        feed_store.release_thread()
        assert feed_store.db.is_closed()  # for this thread
        return connection

    first = in_thread(read_and_give_back)
    second = in_thread(read_and_give_back)
    assert second is first


def test_unchecked_references_gives_back_a_connection_that_checks_them(feed_store: Store):
    def bulk_delete() -> None:
        with feed_store.unchecked_references():
            pass
        feed_store.release_thread()

    in_thread(bulk_delete)
    checks = in_thread(lambda: feed_store.db.execute_sql("PRAGMA foreign_keys").fetchone()[0])
    assert checks == 1


def test_past_idle_kept_a_connection_given_back_is_closed(feed_store: Store, monkeypatch):
    monkeypatch.setattr(database, "IDLE_KEPT", 2)
    holders = 4
    opened: list[sqlite3.Connection] = []
    all_open = threading.Barrier(holders)

    def hold() -> None:
        feed_store.db.execute_sql("SELECT 1")
        opened.append(feed_store.db.connection())
        all_open.wait()  # four at once: none reuses another's
        feed_store.release_thread()

    threads = [threading.Thread(target=hold) for _ in range(holders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(c) for c in opened}) == holders
    usable = []
    for connection in opened:
        try:
            connection.execute("SELECT 1")
            usable.append(connection)
        except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
            pass
    assert len(usable) == 2


def test_a_connection_inside_a_transaction_is_kept_by_its_thread(feed_store: Store):
    def write_and_release() -> tuple[bool, bool]:
        with feed_store.writing():
            feed_store.add_job(SPEC, trigger="rpc", queue_limit=10)
            feed_store.release_thread()  # a no-op inside the transaction
            kept = not feed_store.db.is_closed()
        feed_store.release_thread()
        return kept, feed_store.db.is_closed()

    assert in_thread(write_and_release) == (True, True)
    assert len(feed_store.list()) == 1  # committed, not rolled back by a hand-over


def test_a_connection_in_a_transaction_peewee_does_not_know_of_is_closed(feed_store: Store):
    def begin_and_release() -> sqlite3.Connection:
        feed_store.db.execute_sql("BEGIN")
        connection = feed_store.db.connection()
        feed_store.release_thread()
        return connection

    connection = in_thread(begin_and_release)
    with pytest.raises(sqlite3.ProgrammingError):
        connection.execute("SELECT 1")
    assert in_thread(lambda: feed_store.db.connection()) is not connection


def test_closing_the_database_closes_the_connections_given_back(tmp_path, change_feed):
    store = Store(tmp_path / "choo.db", change_feed)
    store.open()
    given_back = in_thread(lambda: (store.db.connection(), store.release_thread())[0])
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        given_back.execute("SELECT 1")

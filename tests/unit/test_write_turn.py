"""A database locked by another process, and many of the agent's writers queued for it.

Real SQLite file, real threads. Each writer that gets the agent's own write
lock waits out SQLite's busy timeout; the others must not queue behind all of
them (minutes, for the loop's write too): a turn that failed on the lock is
no progress, so each waits ``BUSY_TIMEOUT`` at most. Here both waits are
shortened to a fifth of a second. The turns themselves: test_writer_turns.py.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from agent.protocol.errors import StorageError
from agent.runtime.changes import ChangeFeed
from agent.storage import database
from agent.storage.store import Store

WRITERS = 12


def test_writers_queued_behind_a_locked_database_give_up_on_their_turn(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "BUSY_TIMEOUT", 0.2)  # SQLite's own wait and the turn's
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    holder = sqlite3.connect(tmp_path / "choo.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    errors: list[str] = []
    start = threading.Barrier(WRITERS)

    def write() -> None:
        start.wait()
        try:
            with store.writing():
                pass
        except StorageError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(errors) == WRITERS
    assert all("locked by another process" in message for message in errors), errors
    # Twelve writers in turn would each wait out the lock; most gave up on the turn instead.
    behind = [m for m in errors if "writers have not moved for 0.2 s" in m]
    assert len(behind) >= WRITERS // 2, errors
    with store.writing():  # the lock gone, a write goes through
        pass
    store.close()


def test_a_writer_inside_a_write_takes_its_turn_again_at_once(tmp_path, monkeypatch):
    """Re-entrant: a write nested in another (peewee's atomic blocks) never waits."""
    monkeypatch.setattr(database, "BUSY_TIMEOUT", 0.2)
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    with store.writing(), store.writing():
        pass
    with pytest.raises(StorageError), store.writing():
        raise StorageError("inside")
    with store.writing():  # the turn was given back
        pass
    store.close()

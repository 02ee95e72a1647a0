"""A damaged database file is refused with what to do; the agent's identity outlives the file.

Real SQLite files: one that is no database at all, one whose pages were
overwritten, and one deleted (or moved aside) under a state directory.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from agent.runtime.changes import ChangeFeed
from agent.storage import identity
from agent.storage.database import DatabaseDamaged
from agent.storage.store import Store

SPEC = {"image": "busybox", "command": ["true"]}


def _open(path: Path) -> Store:
    store = Store(path, ChangeFeed())
    store.open()
    return store


def _made(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "state" / "choo.db"
    store = _open(path)
    for _ in range(300):
        store.add_job(SPEC, trigger="rpc", queue_limit=1000)
    agent_id = store.agent_id
    store.close()
    # Everything in the main file, so overwriting its pages damages what is there.
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path, agent_id


def test_a_file_that_is_no_database_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "choo.db"
    path.write_bytes(b"not a database at all " * 500)
    with pytest.raises(DatabaseDamaged) as refused:
        _open(path)
    message = refused.value.message
    assert str(path) in message and "file is not a database" in message
    assert "restore a backup" in message and "move it aside" in message
    assert path.read_bytes() == b"not a database at all " * 500  # left as it was


def test_overwritten_pages_are_found_by_the_check(tmp_path):
    path, _ = _made(tmp_path)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for offset in range(2 * page, len(data), page):
        data[offset + 64 : offset + 512] = os.urandom(448)
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseDamaged, match="is damaged: .*(tree page|malformed|corrupt)"):
        _open(path)


def test_a_lost_database_is_recreated_with_the_same_identity(tmp_path):
    path, agent_id = _made(tmp_path)
    assert identity.read(path.parent / identity.FILE_NAME) == agent_id
    for leftover in path.parent.glob("choo.db*"):
        leftover.unlink()
    store = _open(path)
    try:
        assert store.agent_id == agent_id
        assert store.job_ids() == set()
    finally:
        store.close()


def test_an_existing_database_writes_its_identity_beside_it(tmp_path):
    path, agent_id = _made(tmp_path)
    kept = path.parent / identity.FILE_NAME
    # As left by an agent from before the file existed, or a file someone edited.
    kept.write_text("01SOMETHINGELSE\n")
    _open(path).close()
    assert identity.read(kept) == agent_id


def test_keep_replaces_the_file_atomically(tmp_path):
    kept = tmp_path / identity.FILE_NAME
    identity.keep(kept, "01FIRST")
    identity.keep(kept, "01SECOND")
    assert kept.read_text() == "01SECOND\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [identity.FILE_NAME]

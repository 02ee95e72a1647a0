"""agent.storage.models: each database gets model classes of its own."""

from __future__ import annotations

from agent.runtime.changes import ChangeFeed
from agent.storage import models
from agent.storage.store import Store

SPEC = {"image": "alpine", "command": ["true"]}


def test_two_stores_in_one_process_never_share_their_tables(tmp_path):
    first = Store(tmp_path / "a" / "choo.db", ChangeFeed())
    second = Store(tmp_path / "b" / "choo.db", ChangeFeed())
    first.open()
    second.open()
    try:
        job = first.add_job(SPEC, trigger="rpc", queue_limit=10)
        assert first.job_ids() == {job["id"]}
        assert second.job_ids() == set()
        assert first.agent_id != second.agent_id
        assert first.models.Job is not second.models.Job
    finally:
        first.close()
        second.close()


def test_the_meta_table_keeps_its_name():
    # The frozen v1 schema (test_migrations.py) calls it "meta".
    bound = models.bind(None)
    assert [m._meta.table_name for m in bound.tables()] == [
        "meta",
        "job",
        "attempt",
        "event",
        "schedule",
        "job_label",
        "job_count",
        "tally",
        "notification",
        "job_dependency",
        "queue_control",
    ]

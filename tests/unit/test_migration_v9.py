"""A schema 8 database (frozen in frozen_schemas.py) upgrades through schema 9:
each job's image, command and the IDs it waits for are copied out of its spec
into columns of their own, and ``job.list`` summaries read from them say what
the specs say, as for a job submitted after the upgrade."""

from __future__ import annotations

import contextlib
import json
import sqlite3

from agent.protocol import spec as specs
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store
from tests.unit.frozen_schemas import V8_SCHEMA, assert_as_new, sql

AGENT_ID = "01JD0000000000000000000000"
FIRST = "01JD0000000000000000000010"
SECOND = "01JD0000000000000000000020"
WAITER = "01JD0000000000000000000030"
BARE = "01JD0000000000000000000040"

#: Each job's spec as an agent of schema 8 stored it (normalised).
SPECS = {
    FIRST: specs.normalize(
        {"image": "alpine", "command": ["sh", "-c", "echo 'hi' \"there\""], "labels": {"k": "v"}}
    ),
    SECOND: specs.normalize({"image": "registry.example/team/tool:1.2", "command": ["true"]}),
    # It waits for two jobs, named out of their ID order: the order is kept.
    WAITER: specs.normalize(
        {
            "image": "alpine",
            "command": ["make"],
            "after": [{"id": SECOND, "condition": "ok"}, {"id": FIRST, "condition": "any"}],
        }
    ),
    BARE: specs.normalize({"image": "busybox"}),
}


def make_v8(path):
    """A v8 database holding the jobs of ``SPECS``, queued."""
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.executescript(V8_SCHEMA)
        con.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", "8"), ("agent_id", AGENT_ID)]
        )
        for number, (job_id, spec) in enumerate(SPECS.items()):
            con.execute(
                "INSERT INTO job (id, name, state, priority, trigger, spec, labels, attempt,"
                " retries_left, cancel_requested, submitted_at) VALUES"
                " (?, NULL, 'queued', 0, 'cli', ?, ?, 0, 0, 0, ?)",
                (job_id, json.dumps(spec), json.dumps(spec["labels"]), 40.0 + number),
            )


def shown(summary):
    """What a summary shows of a job's spec."""
    return {key: summary[key] for key in ("image", "command", "after", "labels")}


def test_v8_jobs_list_what_their_specs_say(tmp_path):
    path = tmp_path / "choo.db"
    make_v8(path)
    store = Store(path, ChangeFeed())
    store.open()
    try:
        listed = {summary["id"]: summary for summary in store.summaries()}
        assert shown(listed[FIRST]) == {
            "image": "alpine",
            "command": ["sh", "-c", "echo 'hi' \"there\""],
            "after": [],
            "labels": {"k": "v"},
        }
        assert shown(listed[SECOND])["image"] == "registry.example/team/tool:1.2"
        assert listed[WAITER]["after"] == [SECOND, FIRST]
        assert shown(listed[BARE]) == {"image": "busybox", "command": [], "after": [], "labels": {}}
        # The same specs submitted to the upgraded agent list the same.
        for job_id, spec in SPECS.items():
            fresh = store.add_job(spec, trigger="cli", queue_limit=100)
            (again,) = store.summaries(states=["queued"], limit=1)
            assert again["id"] == fresh["id"] and shown(again) == shown(listed[job_id])
    finally:
        store.close()
    # What SQLite wrote: a job that waits for none has no IDs (as a new one).
    assert sql(path, f"SELECT after_ids FROM job WHERE id IN ('{FIRST}', '{BARE}')") == [
        (None,),
        (None,),
    ]
    assert sql(path, f"SELECT after_ids FROM job WHERE id = '{WAITER}'") == [
        (json.dumps([SECOND, FIRST], separators=(",", ":")),)
    ]
    assert_as_new(path, tmp_path)

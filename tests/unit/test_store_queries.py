"""agent.storage.queries and the bulk removal: every query shape on a real SQLite file,
and EXPLAIN QUERY PLAN checks that the hot ones are served by an index."""

from __future__ import annotations

import re

import pytest
from ulid import ULID

from agent.protocol import spec as specs
from agent.protocol import types
from agent.protocol.errors import AmbiguousPrefix, NoSuchJob
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage import jobs as jobs_module
from agent.storage.id_ranges import first_id_at, prefix_range
from agent.storage.store import Store
from tests.unit.frozen_schemas import sql

ST, R, OK, FAIL = State.STARTING, State.RUNNING, State.SUCCEEDED, State.FAILED


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state" / "choo.db"


@pytest.fixture
def feed():
    return ChangeFeed()


@pytest.fixture
def store(db_path, feed):
    store = Store(db_path, feed)
    store.open()
    yield store
    store.close()


def add(store, job_id=None, **fields):
    spec = specs.normalize({"image": "alpine", "command": ["echo", "hi"], **fields})
    return store.add_job(spec, trigger="cli", queue_limit=1000, job_id=job_id)["id"]


def add_at(store, seconds, **fields):
    """A job whose ID says it was made at ``seconds``."""
    return add(store, str(ULID.from_timestamp(seconds)), **fields)


def finish(store, job_id, target=OK, **fields):
    store.transition(job_id, ST, new_attempt="rpc")
    store.transition(job_id, R)
    store.transition(job_id, target, **fields)


# -- ID prefixes -----------------------------------------------------------------


def test_prefix_range_pads_with_the_last_character():
    assert prefix_range("01J") == ("01J", "01J" + "Z" * 23)
    assert prefix_range("A" * 26) == ("A" * 26, "A" * 26)


def test_a_prefix_is_resolved_in_any_case_and_only_within_its_range(store):
    low, high = "01J0" + "Z" * 22, "01J1" + "0" * 22
    add(store, low)
    add(store, high)
    assert store.resolve("01J0") == low
    assert store.resolve("01j1") == high
    assert store.resolve(low.lower()) == low  # a whole ID, lower case
    assert store.resolve(high) == high
    with pytest.raises(AmbiguousPrefix, match="'01j' matches more than one job; give more"):
        store.resolve("01j")


@pytest.mark.parametrize("prefix", ["00", "01J2", "01I", "zz", "01J0" + "Z" * 21 + "Y"])
def test_a_prefix_outside_every_range_matches_no_job(store, prefix):
    add(store, "01J0" + "Z" * 22)
    add(store, "01J1" + "0" * 22)
    with pytest.raises(NoSuchJob, match=f"no job matches '{prefix}'; see 'chooctl ps -a'"):
        store.resolve(prefix)


# -- since -----------------------------------------------------------------------


def test_first_id_at_is_the_smallest_id_of_its_millisecond():
    assert first_id_at(2000.0) == str(ULID.from_timestamp(2000.0))[:10] + "0" * 16
    assert first_id_at(2000.0009) == first_id_at(2000.0)
    assert first_id_at(2000.001) > first_id_at(2000.0)
    assert first_id_at(-5) == "0" * 26


def test_since_is_a_lower_bound_on_the_id_time(store):
    old, edge, new = add_at(store, 1000.0), add_at(store, 2000.0), add_at(store, 3000.0)
    assert [j["id"] for j in store.summaries(since=2000.0)] == [new, edge]
    assert [j["id"] for j in store.summaries(since=1999.999)] == [new, edge]
    assert [j["id"] for j in store.summaries(since=2000.001)] == [new]
    assert store.summaries(since=3000.001) == []
    assert [j["id"] for j in store.summaries(since=0)] == [new, edge, old]
    assert [j["id"] for j in store.list(since=2000.0)] == [new, edge]


def test_since_combines_with_labels_states_and_the_cursor(store):
    ids = [add_at(store, 1000.0 + i, labels={"k": "v"}) for i in range(5)]
    finish(store, ids[3])
    page = store.summaries(since=1001.0, labels={"k": "v"}, states=["queued"], limit=2)
    assert [j["id"] for j in page] == [ids[4], ids[2]]
    rest = store.summaries(
        since=1001.0, labels={"k": "v"}, states=["queued"], after=page[-1]["id"], limit=2
    )
    assert [j["id"] for j in rest] == [ids[1]]


# -- labels ----------------------------------------------------------------------


def test_labels_are_kept_in_their_table(store, db_path):
    job = add(store, labels={"team": "infra", "tier": "gold"})
    add(store)
    assert sorted(sql(db_path, "SELECT job_id, key, value FROM job_label")) == [
        (job, "team", "infra"),
        (job, "tier", "gold"),
    ]


def test_several_labels_must_all_match(store):
    both = add(store, labels={"team": "infra", "tier": "gold"})
    infra = add(store, labels={"team": "infra", "tier": "bronze"})
    add(store, labels={"team": "web", "tier": "gold"})
    assert [j["id"] for j in store.summaries(labels={"team": "infra"})] == [infra, both]
    assert [j["id"] for j in store.summaries(labels={"team": "infra", "tier": "gold"})] == [both]
    assert store.summaries(labels={"team": "infra", "tier": "silver"}) == []
    assert store.summaries(labels={"team": ""}) == []


def test_the_narrowest_filter_drives_and_the_answer_is_the_same(store):
    # "common" on every job, "rare" on two: either can be read first.
    made = [
        add(store, labels={"common": "x", **({"rare": "y"} if i % 4 == 0 else {})})
        for i in range(8)
    ]
    finish(store, made[4])
    rare = [made[4], made[0]]
    assert [j["id"] for j in store.summaries(labels={"common": "x", "rare": "y"})] == rare
    assert [j["id"] for j in store.summaries(labels={"rare": "y", "common": "x"})] == rare
    queued = store.summaries(labels={"common": "x"}, states=["queued"])
    assert [j["id"] for j in queued] == [m for m in made[::-1] if m != made[4]]
    done = store.summaries(labels={"common": "x", "rare": "y"}, states=["succeeded"])
    assert [j["id"] for j in done] == [made[4]]


def test_a_label_filter_pages_with_the_cursor(store):
    made = [add(store, labels={"k": "v"}) for _ in range(5)]
    add(store)
    first = store.summaries(labels={"k": "v"}, limit=3)
    second = store.summaries(labels={"k": "v"}, limit=3, after=first[-1]["id"])
    assert [j["id"] for j in first + second] == made[::-1]


def test_name_and_label_together(store):
    wanted = add(store, name="build", labels={"k": "v"})
    add(store, name="build")
    add(store, name="test", labels={"k": "v"})
    assert [j["id"] for j in store.summaries(name="build", labels={"k": "v"})] == [wanted]


# -- summaries -------------------------------------------------------------------


def test_a_summary_has_exactly_the_fields_of_its_type(store):
    job_id = add(store, name="n", labels={"k": "v"}, env={"SECRET": "s"})
    store.request_cancel(job_id)
    (summary,) = store.summaries()
    assert set(summary) == set(types.JobSummary.__annotations__)
    assert summary["image"] == "alpine" and summary["command"] == ["echo", "hi"]
    assert summary["labels"] == {"k": "v"}
    assert summary["cancel_requested"] is True
    assert summary["container"] == store.get(job_id)["container"]
    assert "spec" not in summary and "log_tail" not in summary
    record = store.get(job_id)
    assert {k: record[k] for k in summary if k in record} == {
        k: summary[k] for k in summary if k in record
    }


def test_a_page_of_summaries_shows_what_each_spec_says(store):
    # Read from the columns submit copies the spec into (schema 9), each page's
    # JSON decoded at once: every job keeps its own, in the spec's order.
    first = add(store, command=["sh", "-c", 'echo "a, b" [c]'], labels={"x": "1,2"})
    second = add(store, image="registry.example/tool:1", command=[], labels={})
    waiter = add(
        store,
        command=["make", "}"],
        after=[{"id": second, "condition": "any"}, {"id": first, "condition": "ok"}],
    )
    page = store.summaries()
    assert [summary["id"] for summary in page] == [waiter, second, first]
    for summary in page:
        spec = store.get(summary["id"])["spec"]
        assert (summary["image"], summary["command"], summary["labels"]) == (
            spec["image"],
            spec["command"],
            spec["labels"],
        )
        assert summary["after"] == [dep["id"] for dep in spec["after"]]
    assert page[0]["after"] == [second, first]
    assert store.summaries(after=waiter, limit=1)[0]["command"] == []


# -- counts ----------------------------------------------------------------------


def test_counts_follow_every_insert_move_and_delete(store, db_path):
    ids = [add(store) for _ in range(5)]
    finish(store, ids[0])
    finish(store, ids[1], FAIL)
    store.transition(ids[2], State.CANCELLED)
    store.transition(ids[3], ST, new_attempt="rpc")
    store.remove_jobs([ids[0]])
    expected = {s.value: 0 for s in State}
    expected.update(sql(db_path, "SELECT state, COUNT(*) FROM job GROUP BY state"))
    assert store.counts() == expected
    assert expected == {
        "queued": 1,
        "starting": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 1,
    }


# -- prune -----------------------------------------------------------------------


def test_prunable_keeps_jobs_not_old_enough_and_jobs_not_ended(store):
    old, recent, active = add(store), add(store), add(store)
    finish(store, old, ended_at=100.0)
    finish(store, recent, FAIL, ended_at=300.0)
    store.transition(active, ST, new_attempt="rpc")
    assert store.prunable(ended_before=200.0) == [old]
    assert sorted(store.prunable(ended_before=400.0)) == sorted([old, recent])
    assert store.prunable(ended_before=400.0, states=["failed"]) == [recent]
    assert store.prunable(ended_before=400.0, states=["running"]) == []


def test_remove_jobs_in_batches_takes_only_finished_jobs(store, feed, db_path, monkeypatch):
    monkeypatch.setattr(jobs_module, "_BATCH", 2)
    done = [add(store, name=f"j{i}", labels={"k": "v"}) for i in range(5)]
    for job_id in done:
        finish(store, job_id)
    running = add(store)
    store.transition(running, ST, new_attempt="rpc")
    seq = feed.seq
    removed = store.remove_jobs([*done, running, "01" + "0" * 24])
    assert sorted(removed, key=lambda r: r["id"]) == [
        {"id": job_id, "name": f"j{i}"} for i, job_id in enumerate(done)
    ]
    assert store.job_ids() == {running}
    for table in ("attempt", "event"):
        assert sql(db_path, f"SELECT DISTINCT job_id FROM {table}") == [(running,)]
    assert sql(db_path, "SELECT * FROM job_label") == []
    _, events = feed.since(seq)
    assert sorted(e["job_id"] for e in events) == sorted(done)
    assert {e["kind"] for e in events} == {"removed"}
    assert store.counts()["succeeded"] == 0 and store.counts()["starting"] == 1


def test_remove_jobs_takes_every_row_that_refers_to_a_job(store, db_path):
    """Foreign-key checks are off for the bulk delete: the rows that refer to a
    removed job (here a dependency of a finished waiter) go all the same."""
    waited = add(store)
    finish(store, waited)
    waiter = add(store, after=[{"id": waited}], labels={"k": "v"})
    store.transition(waiter, State.CANCELLED)
    assert sql(db_path, "SELECT COUNT(*) FROM job_dependency") == [(1,)]
    removed = store.remove_jobs([waited, waiter])
    assert sorted(r["id"] for r in removed) == sorted([waited, waiter])
    for table in ("job", "attempt", "event", "job_label", "job_dependency", "notification"):
        assert sql(db_path, f"SELECT COUNT(*) FROM {table}") == [(0,)], table
    assert sql(db_path, "PRAGMA foreign_key_check") == []
    # The connection checks references again afterwards.
    assert store.db.execute_sql("PRAGMA foreign_keys").fetchall() == [(1,)]


def test_remove_jobs_inside_a_transaction_keeps_the_checks_and_still_removes(store, db_path):
    job_id = add(store, labels={"k": "v"})
    finish(store, job_id)
    with store.writing():
        assert [r["id"] for r in store.remove_jobs([job_id])] == [job_id]
        assert store.db.execute_sql("PRAGMA foreign_keys").fetchall() == [(1,)]
    assert sql(db_path, "SELECT COUNT(*) FROM job_label") == [(0,)]


def test_prunable_of_one_submitter(store):
    spec = specs.normalize({"image": "alpine", "command": ["true"]})
    mine, theirs = (
        store.add_job(spec, trigger="cli", queue_limit=10, uid=uid)["id"] for uid in (1000, 1001)
    )
    for job_id in (mine, theirs):
        finish(store, job_id, ended_at=100.0)
    assert store.prunable(ended_before=200.0, submitter=1000) == [mine]
    assert sorted(store.prunable(ended_before=200.0)) == sorted([mine, theirs])


def test_a_hot_query_is_built_once_per_shape(store, monkeypatch):
    ids = [add(store, labels={"k": "v"}) for _ in range(3)]
    store.summaries(labels={"k": "v"}, limit=2)  # every shape asked once
    store.get(ids[0])
    built = []
    sql_of = type(store.models.Job.select()).sql

    def counting(query):
        built.append(query)
        return sql_of(query)

    monkeypatch.setattr(type(store.models.Job.select()), "sql", counting)
    # Same shapes, other values: nothing is built again, and the values are this call's.
    assert [j["id"] for j in store.summaries(labels={"k": "v"}, limit=1)] == [ids[2]]
    assert store.summaries(labels={"k": "w"}, limit=2) == []
    assert store.get(ids[1])["id"] == ids[1]
    assert built == []
    # Another shape (a cursor) is built, once.
    page = store.summaries(labels={"k": "v"}, limit=2, after=ids[2])
    assert [j["id"] for j in page] == [ids[1], ids[0]]
    assert len(built) == 1


def test_rows_read_without_models_keep_booleans(store):
    job_id = add(store)
    store.request_cancel(job_id)
    job = store.get(job_id)
    assert job["cancel_requested"] is True and job["held"] is False
    finish_id = add(store)
    finish(store, finish_id)
    attempt = store.attempts(finish_id)[0]
    assert attempt["oom"] is False and attempt["usage"]["sampled"] is None


# -- index use -------------------------------------------------------------------


def plans(store, call) -> list[tuple[str, str]]:
    """``(statement, its EXPLAIN QUERY PLAN)`` of every SELECT ``call`` runs."""
    statements = []
    execute = store.db.execute_sql

    def recording(query, params=None, *args, **kwargs):
        if query.lstrip().upper().startswith("SELECT"):
            statements.append((query, params))
        return execute(query, params, *args, **kwargs)

    store.db.execute_sql = recording
    try:
        call()
    finally:
        store.db.execute_sql = execute
    return [
        (query, " ".join(row[3] for row in execute("EXPLAIN QUERY PLAN " + query, params)))
        for query, params in statements
    ]


@pytest.fixture
def filled(store):
    for i in range(6):
        job_id = add(store, name=f"n{i % 2}", labels={"k": str(i % 2), "all": "x"})
        if i % 3 == 0:
            finish(store, job_id, FAIL if i else OK)
    return store


#: The hot queries, and what their plans must say (peewee names the tables t1, t2...).
QUERIES = {
    "resolve": (
        lambda s, some_id: s.resolve(some_id[:24].lower()),
        ["SEARCH t1 USING COVERING INDEX sqlite_autoindex_job_1 (id>? AND id<?)"],
    ),
    # An ordered walk of the primary key, which LIMIT stops.
    "list": (lambda s, _: s.summaries(limit=50), ["SCAN t1 USING INDEX sqlite_autoindex_job_1"]),
    "list one state": (
        lambda s, _: s.summaries(states=["failed"], limit=50),
        ["SEARCH t1 USING INDEX job_state_id (state=?)"],
    ),
    "list by name": (
        lambda s, _: s.summaries(name="n1", limit=50),
        ["SEARCH t1 USING INDEX job_name_id (name=?)"],
    ),
    "list by label": (
        lambda s, _: s.summaries(labels={"k": "1"}, limit=50),
        [
            "SEARCH t2 USING COVERING INDEX joblabel_key_value_job_id (key=? AND value=?)",
            "SEARCH t1 USING INDEX sqlite_autoindex_job_1 (id=?)",
        ],
    ),
    "list by two labels": (
        lambda s, _: s.summaries(labels={"k": "1", "all": "x"}, limit=50),
        [
            "SEARCH t2 USING COVERING INDEX joblabel_key_value_job_id (key=? AND value=?)",
            "SEARCH t3 USING PRIMARY KEY (job_id=? AND key=?)",
        ],
    ),
    "list since": (
        lambda s, _: s.summaries(since=1000.0, limit=50),
        ["SEARCH t1 USING INDEX sqlite_autoindex_job_1 (id>?)"],
    ),
    "list page": (
        lambda s, _: s.summaries(after="7" + "Z" * 25, limit=50),
        ["SEARCH t1 USING INDEX sqlite_autoindex_job_1 (id<?)"],
    ),
    "nonterminal": (lambda s, _: s.nonterminal(), ["SEARCH t1 USING INDEX job_state_id (state=?)"]),
    "prunable": (
        lambda s, _: s.prunable(ended_before=1e12),
        ["SEARCH t1 USING INDEX job_state_id (state=?)"],
    ),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_hot_queries_use_an_index(filled, name):
    call, expected = QUERIES[name]
    some_id = filled.summaries(limit=1)[0]["id"]
    found = plans(filled, lambda: call(filled, some_id))
    page = found[-1][1]  # the statement that reads the answer (after any probes)
    for part in expected:
        assert part in page, found
    for query, plan in found:
        # No table of jobs is ever read whole, bar the LIMITed walk of "list".
        bare = [scan for scan in re.findall(r"SCAN (\S+)( USING)?", plan) if not scan[1]]
        assert all(table == "_wrapped" for table, _ in bare), (query, plan)
    if name.startswith("list") or name == "resolve":
        assert "TEMP B-TREE" not in page, page


def test_counts_read_only_the_count_table(filled):
    ((query, plan),) = plans(filled, filled.counts)
    assert 'FROM "job_count"' in query and '"job" ' not in query, query

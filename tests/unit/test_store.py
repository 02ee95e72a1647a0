"""agent.storage.store: jobs, attempts and events in a real SQLite file."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time

import pytest

from agent.protocol import spec as specs
from agent.protocol.errors import (
    AmbiguousPrefix,
    InvalidParams,
    InvalidTransition,
    NoSuchJob,
    QueueFull,
    StorageError,
)
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import SCHEMA_VERSION, Store
from tests.unit.frozen_schemas import sql

Q, ST, R = State.QUEUED, State.STARTING, State.RUNNING
OK, FAIL, CANC = State.SUCCEEDED, State.FAILED, State.CANCELLED


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


def spec(**fields):
    return specs.normalize({"image": "alpine", "command": ["true"], **fields})


def add(store, queue_limit=1000, trigger="rpc", **fields):
    return store.add_job(spec(**fields), trigger=trigger, queue_limit=queue_limit)


def run_to(store, job_id, *path):
    for target in path:
        extra = {"new_attempt": "rpc"} if target == ST else {}
        store.transition(job_id, target, **extra)


# -- opening -------------------------------------------------------------------


def test_open_creates_the_directory_and_records_schema(store, db_path):
    assert db_path.is_file()
    assert sql(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert len(store.agent_id) == 26


def test_reopen_keeps_jobs_and_agent_id(db_path):
    first = Store(db_path, ChangeFeed())
    first.open()
    job = add(first, name="keep", labels={"k": "v"})
    first.transition(job["id"], ST, new_attempt="rpc")
    agent_id = first.agent_id
    first.close()

    second = Store(db_path, ChangeFeed())
    second.open()
    try:
        assert second.agent_id == agent_id
        again = second.get(job["id"])
        assert again["state"] == "starting"
        assert again["spec"] == job["spec"]
        assert [e["state"] for e in second.events(job["id"])] == ["queued", "starting"]
        assert len(second.attempts(job["id"])) == 1
    finally:
        second.close()


def test_each_new_database_has_its_own_agent_id(tmp_path):
    ids = set()
    for n in range(2):
        # Each in its own state directory: the identity file beside it is shared.
        store = Store(tmp_path / f"state{n}" / "choo.db", ChangeFeed())
        store.open()
        ids.add(store.agent_id)
        store.close()
    assert len(ids) == 2


def test_newer_schema_is_refused(db_path):
    store = Store(db_path, ChangeFeed())
    store.open()
    store.close()
    with contextlib.closing(sqlite3.connect(db_path)) as con, con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))

    newer = Store(db_path, ChangeFeed())
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 1}"):
        newer.open()
    newer.close()
    # The refusal changed nothing on disk.
    assert sql(db_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION + 1),)
    ]


# -- adding jobs ---------------------------------------------------------------


def test_add_job_stores_a_queued_job(store):
    before = time.time()
    s = spec(name="build", priority=7, retries=2, labels={"team": "infra"})
    job = store.add_job(s, trigger="cli", queue_limit=10, uid=1000, pid=4242)
    assert len(job["id"]) == 26
    assert job["state"] == "queued"
    assert job["name"] == "build"
    assert job["priority"] == 7
    assert job["retries_left"] == 2
    assert job["trigger"] == "cli"
    assert job["spec"] == s
    assert job["attempt"] == 0
    assert job["cancel_requested"] is False
    assert job["submitter_uid"] == 1000 and job["submitter_pid"] == 4242
    assert job["container"] == f"choo-{job['id']}"
    assert before <= job["submitted_at"] <= time.time()
    assert job["started_at"] is job["ended_at"] is job["reason"] is job["exit_code"] is None
    assert store.get(job["id"]) == job
    assert store.attempts(job["id"]) == []


def test_add_job_writes_and_publishes_one_event(store, feed):
    job = add(store, trigger="schedule")
    (event,) = store.events(job["id"])
    assert event["kind"] == "state"
    assert event["state"] == "queued"
    assert event["detail"] == {"trigger": "schedule"}
    seq, published = feed.since(0)
    assert seq == 1
    assert published[0]["job_id"] == job["id"]
    assert published[0]["id"] == event["id"]


def test_queue_full_refuses_and_stores_nothing(store, feed, db_path):
    add(store, queue_limit=2)
    add(store, queue_limit=2)
    with pytest.raises(QueueFull, match="queue_limit=2"):
        add(store, queue_limit=2)
    assert sql(db_path, "SELECT COUNT(*) FROM job") == [(2,)]
    assert sql(db_path, "SELECT COUNT(*) FROM event") == [(2,)]
    assert feed.seq == 2


def test_queue_limit_zero_refuses_everything(store, db_path):
    with pytest.raises(QueueFull):
        add(store, queue_limit=0)
    assert sql(db_path, "SELECT COUNT(*) FROM job") == [(0,)]


def test_queue_limit_counts_only_queued_jobs(store):
    first = add(store, queue_limit=1)
    store.transition(first["id"], ST, new_attempt="rpc")
    second = add(store, queue_limit=1)
    assert second["state"] == "queued"


# -- transitions ---------------------------------------------------------------


def test_a_full_run_writes_one_event_per_transition(store, feed):
    job_id = add(store)["id"]
    seq = feed.seq
    path = [
        (ST, {"new_attempt": "rpc"}),
        (R, {"attempt_fields": {"container_id": "c0ffee"}, "started_at": 100.0}),
        (OK, {"exit_code": 0, "detail": {"exit_code": 0}}),
    ]
    for n, (target, kwargs) in enumerate(path, start=1):
        job = store.transition(job_id, target, **kwargs)
        assert job["state"] == target
        assert len(store.events(job_id)) == 1 + n
        assert feed.seq == seq + n

    assert [e["state"] for e in store.events(job_id)] == ["queued", "starting", "running", OK]
    assert store.events(job_id)[-1]["detail"] == {"exit_code": 0}
    job = store.get(job_id)
    assert job["exit_code"] == 0
    assert job["started_at"] == 100.0
    assert job["ended_at"] is not None
    (attempt,) = store.attempts(job_id)
    assert attempt["number"] == 1
    assert attempt["container_id"] == "c0ffee"


@pytest.mark.parametrize("target", [FAIL, CANC, OK])
def test_terminal_transition_sets_ended_at(store, target):
    job_id = add(store)["id"]
    run_to(store, job_id, ST, R)
    assert store.get(job_id)["ended_at"] is None
    before = time.time()
    job = store.transition(job_id, target)
    assert before <= job["ended_at"] <= time.time()


def test_explicit_ended_at_is_kept(store):
    job_id = add(store)["id"]
    run_to(store, job_id, ST, R)
    assert store.transition(job_id, FAIL, ended_at=123.0)["ended_at"] == 123.0


def test_non_terminal_transitions_leave_ended_at_alone(store):
    job_id = add(store)["id"]
    run_to(store, job_id, ST, R, Q)
    assert store.get(job_id)["ended_at"] is None


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], R),
        ([], OK),
        ([], FAIL),
        ([], Q),
        ([ST], ST),
        ([ST, R], ST),
        ([ST, R, OK], Q),
        ([ST, R, OK], FAIL),
        ([ST, FAIL], R),
        ([CANC], Q),
        ([CANC], ST),
    ],
)
def test_invalid_transitions_change_nothing(store, feed, path, target):
    job_id = add(store)["id"]
    run_to(store, job_id, *path)
    before, events, seq = store.get(job_id), store.events(job_id), feed.seq
    with pytest.raises(InvalidTransition) as excinfo:
        store.transition(job_id, target, reason="exit", new_attempt="rpc")
    assert excinfo.value.data == {"state": before["state"]}
    assert store.get(job_id) == before
    assert store.events(job_id) == events
    assert feed.seq == seq


def test_expect_guards_against_a_lost_race(store, feed):
    job_id = add(store)["id"]
    seq = feed.seq
    with pytest.raises(InvalidTransition):
        store.transition(job_id, CANC, expect=[R])
    assert store.get(job_id)["state"] == "queued"
    assert feed.seq == seq
    assert store.transition(job_id, CANC, expect=[Q, ST])["state"] == "cancelled"


def test_transition_of_unknown_job(store):
    with pytest.raises(NoSuchJob):
        store.transition("01" + "0" * 24, ST)


def test_transition_is_one_transaction(store, feed, db_path):
    # The event is written last; when writing it fails, the state change, the
    # new attempt and the field updates must all be rolled back with it.
    job_id = add(store)["id"]
    seq = feed.seq
    with pytest.raises(TypeError):
        store.transition(job_id, ST, new_attempt="rpc", reason="x", detail={"bad": object()})
    assert sql(db_path, "SELECT state, attempt, reason FROM job") == [("queued", 0, None)]
    assert sql(db_path, "SELECT COUNT(*) FROM attempt") == [(0,)]
    assert sql(db_path, "SELECT COUNT(*) FROM event") == [(1,)]
    assert feed.seq == seq
    # ...and the store is still usable afterwards.
    assert store.transition(job_id, ST, new_attempt="rpc")["attempt"] == 1


def test_events_are_published_only_after_commit(db_path):
    seen = []

    class CommitProbe(ChangeFeed):
        def publish(self, event):
            # A second connection sees only committed rows.
            seen.append(
                (
                    event,
                    sql(db_path, "SELECT state FROM job WHERE id = ?", event["job_id"]),
                    sql(db_path, "SELECT COUNT(*) FROM event WHERE id = ?", event["id"]),
                )
            )
            super().publish(event)

    store = Store(db_path, CommitProbe())
    store.open()
    try:
        job_id = add(store)["id"]
        run_to(store, job_id, ST, R)
        store.request_cancel(job_id)
        store.transition(job_id, CANC)
    finally:
        store.close()
    assert [e["kind"] for e, _, _ in seen] == ["state"] * 3 + ["cancel-requested", "state"]
    for event, job_rows, event_rows in seen:
        assert event_rows == [(1,)]
        if event["state"] is not None:
            assert job_rows == [(event["state"],)]


def test_published_events_carry_job_id_and_name(store, feed):
    job = add(store, name="nightly")
    store.transition(job["id"], ST, new_attempt="rpc", detail={"why": "admitted"})
    _, events = feed.since(1)
    (event,) = events
    assert event["job_id"] == job["id"]
    assert event["name"] == "nightly"
    assert event["state"] == "starting"
    assert event["detail"] == {"why": "admitted"}


def test_waiter_in_another_thread_sees_the_transition(store, feed):
    job_id = add(store)["id"]
    seq = feed.seq
    result = {}

    def waiter():
        after = seq
        while store.get(job_id)["state"] != "running":
            after = feed.wait_job(job_id, after=after, timeout=5)
            assert after is not None, "no event of the job came"
        result["ok"] = True

    thread = threading.Thread(target=waiter)
    thread.start()
    run_to(store, job_id, ST, R)
    thread.join(5)
    assert result == {"ok": True}


# -- attempts ------------------------------------------------------------------


def test_retry_starts_a_second_attempt(store):
    job_id = add(store, retries=1)["id"]
    store.transition(job_id, ST, new_attempt="rpc")
    store.transition(job_id, R, attempt_fields={"container_id": "first"})
    store.transition(job_id, Q, attempt_fields={"exit_code": 3, "reason": "exit"})
    job = store.transition(job_id, ST, new_attempt="retry", attempt_fields={"container_id": "2"})
    assert job["attempt"] == 2
    attempts = store.attempts(job_id)
    assert [(a["number"], a["trigger"]) for a in attempts] == [(1, "rpc"), (2, "retry")]
    assert attempts[0]["container_id"] == "first"
    assert attempts[0]["exit_code"] == 3 and attempts[0]["reason"] == "exit"
    # attempt_fields on the transition that begins an attempt apply to the new one.
    assert attempts[1]["container_id"] == "2"
    assert attempts[1]["exit_code"] is None
    assert attempts[1]["started_at"] is not None


def test_update_attempt_touches_only_that_attempt(store):
    job_id = add(store)["id"]
    run_to(store, job_id, ST, R, Q, ST)
    store.update_attempt(job_id, 1, oom=True, exit_code=137)
    first, second = store.attempts(job_id)
    assert (first["oom"], first["exit_code"]) == (True, 137)
    assert (second["oom"], second["exit_code"]) == (False, None)


def test_attempts_of_other_jobs_are_separate(store):
    a, b = add(store)["id"], add(store)["id"]
    run_to(store, a, ST)
    assert len(store.attempts(a)) == 1
    assert store.attempts(b) == []


# -- cancel requests -----------------------------------------------------------


def test_request_cancel_marks_the_job_once(store, feed):
    job_id = add(store)["id"]
    run_to(store, job_id, ST, R)
    seq = feed.seq
    job = store.request_cancel(job_id)
    assert job["cancel_requested"] is True
    assert job["state"] == "running"
    assert feed.seq == seq + 1
    event = store.events(job_id)[-1]
    assert (event["kind"], event["state"]) == ("cancel-requested", None)

    store.request_cancel(job_id)
    assert feed.seq == seq + 1
    assert len(store.events(job_id)) == 4


def test_request_cancel_of_a_finished_job_does_nothing(store, feed):
    job_id = add(store)["id"]
    run_to(store, job_id, ST, R, OK)
    seq, events = feed.seq, store.events(job_id)
    assert store.request_cancel(job_id)["cancel_requested"] is False
    assert feed.seq == seq
    assert store.events(job_id) == events


def test_request_cancel_of_unknown_job(store):
    with pytest.raises(NoSuchJob):
        store.request_cancel("01" + "0" * 24)


def test_update_changes_columns_without_an_event(store, feed):
    job_id = add(store)["id"]
    seq = feed.seq
    store.update(job_id, log_tail="line 1\nline 2", not_before=5.0)
    job = store.get(job_id)
    assert (job["log_tail"], job["not_before"], job["state"]) == ("line 1\nline 2", 5.0, "queued")
    assert feed.seq == seq
    assert len(store.events(job_id)) == 1


# -- resolving IDs -------------------------------------------------------------


def _unique_prefixes(a: str, b: str) -> tuple[str, str, str]:
    """The shared prefix of two IDs, and the shortest prefix unique to each."""
    n = 0
    while a[n] == b[n]:
        n += 1
    return a[:n], a[: n + 1], b[: n + 1]


def test_resolve_full_id_and_prefixes(store):
    a, b = add(store)["id"], add(store)["id"]
    shared, only_a, only_b = _unique_prefixes(a, b)
    assert store.resolve(a) == a
    assert store.resolve(a.lower()) == a
    assert store.resolve(only_a) == a
    assert store.resolve(only_b.lower()) == b
    with pytest.raises(AmbiguousPrefix):
        store.resolve(shared)
    with pytest.raises(AmbiguousPrefix):
        store.resolve(shared.lower())


def test_resolve_single_character_prefix_of_the_only_job(store):
    job_id = add(store)["id"]
    assert store.resolve(job_id[0]) == job_id


@pytest.mark.parametrize("prefix", ["ZZZZ", "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"])
def test_resolve_no_match(store, prefix):
    add(store)
    with pytest.raises(NoSuchJob):
        store.resolve(prefix)


@pytest.mark.parametrize(
    "prefix",
    [None, 5, ["01"], "", "0" * 27, "01-AB", "01 AB", "../x", "%", "0%", "_", "0_", "*"],
)
def test_resolve_invalid_input(store, prefix):
    add(store)  # a job that a LIKE wildcard would match
    with pytest.raises(InvalidParams):
        store.resolve(prefix)


def test_get_unknown_job(store):
    with pytest.raises(NoSuchJob):
        store.get("01" + "0" * 24)


# -- listing -------------------------------------------------------------------


def test_list_is_newest_first(store):
    made = [add(store)["id"] for _ in range(5)]
    assert [j["id"] for j in store.list()] == made[::-1]


def test_list_filters_by_state(store):
    queued, running, done = add(store)["id"], add(store)["id"], add(store)["id"]
    run_to(store, running, ST, R)
    run_to(store, done, ST, R, FAIL)
    assert [j["id"] for j in store.list(states=["queued"])] == [queued]
    assert {j["id"] for j in store.list(states=["running", "failed"])} == {running, done}
    assert store.list(states=["cancelled"]) == []
    assert len(store.list(states=[])) == 3


def test_list_filters_by_name(store):
    a = add(store, name="a")["id"]
    add(store, name="b")
    add(store)
    assert [j["id"] for j in store.list(name="a")] == [a]
    assert store.list(name="zzz") == []


def test_list_filters_by_labels(store):
    both = add(store, labels={"team": "infra", "tier": "gold"})["id"]
    infra = add(store, labels={"team": "infra"})["id"]
    add(store, labels={"team": "web"})
    add(store)
    assert {j["id"] for j in store.list(labels={"team": "infra"})} == {both, infra}
    assert [j["id"] for j in store.list(labels={"team": "infra", "tier": "gold"})] == [both]
    assert store.list(labels={"team": "INFRA"}) == []
    assert store.list(labels={"missing": ""}) == []


def test_list_limit_counts_matching_jobs_only(store):
    wanted = [add(store, labels={"k": "v"})["id"] for _ in range(3)]
    for _ in range(5):
        add(store)
    assert [j["id"] for j in store.list(labels={"k": "v"}, limit=2)] == wanted[::-1][:2]


def test_list_cursor_pagination_visits_every_job_once(store):
    made = [add(store)["id"] for _ in range(7)]
    pages, after = [], None
    while True:
        page = [j["id"] for j in store.list(after=after, limit=3)]
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == made[::-1]


def test_list_cursor_combines_with_filters(store):
    named = [add(store, name="n")["id"] for _ in range(4)]
    add(store, name="other")
    first = store.list(name="n", limit=2)
    second = store.list(name="n", limit=2, after=first[-1]["id"])
    assert [j["id"] for j in first + second] == named[::-1]


# -- counts and the controller's view -----------------------------------------


def test_counts(store):
    assert store.counts() == {s.value: 0 for s in State}
    ids = [add(store)["id"] for _ in range(6)]
    run_to(store, ids[0], ST)
    run_to(store, ids[1], ST, R)
    run_to(store, ids[2], ST, R)
    run_to(store, ids[3], ST, R, OK)
    run_to(store, ids[4], CANC)
    assert store.counts() == {
        "queued": 1,
        "starting": 1,
        "running": 2,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 1,
    }


def test_nonterminal_orders_by_priority_then_id(store):
    made = {}
    for label, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 9)]:
        made[label] = add(store, priority=priority)["id"]
    run_to(store, made["b"], ST, R)
    run_to(store, made["f"], ST, R, OK)
    order = [j["id"] for j in store.nonterminal()]
    assert order == [made[x] for x in ("b", "d", "a", "c", "e")]
    assert {j["state"] for j in store.nonterminal()} == {"queued", "running"}

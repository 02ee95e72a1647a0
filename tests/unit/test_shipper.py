"""The shipper: every record of every attempt's log reaches the journal exactly once.

A real Store and real k8s-file logs on disk; the journal is a fake that keeps
what it was sent (and matches ``JournalWriter``'s shape, checked below). The
shipper's rounds are driven by hand (``recover``, ``track``, ``ship_round``),
except where the thread itself is under test, which waits on a condition.
"""

from __future__ import annotations

import inspect
import logging

import pytest

from agent.adapters import log_space
from agent.adapters.joblogs import JobLogs, Record
from agent.adapters.journal import JournalWriter
from agent.config import Config
from agent.protocol.states import State
from agent.runtime import log_limit
from agent.runtime import shipper as shipping
from agent.runtime.shipper import JournalPort, Shipper
from tests.harness import wait_until

SPEC = {"image": "img", "command": ["x"], "pull": "missing", "retries": 1, "stop_timeout": 5}


class FakeJournal:
    """Keeps each shipped entry; refuses them while ``down``; ``uid`` entries only count."""

    def __init__(self):
        self.entries: list[tuple[str, int, Record]] = []
        self.down = False

    def ship(self, job_id: str, attempt: int, record: Record) -> None:
        if self.down:
            raise ConnectionRefusedError("journald is down")
        self.entries.append((job_id, attempt, record))

    def last_shipped(self, job_id: str, attempt: int) -> int | None:
        offsets = [r.offset for j, a, r in self.entries if (j, a) == (job_id, attempt)]
        return offsets[-1] if offsets else None

    def data(self, job_id: str, attempt: int = 1) -> bytes:
        return b"".join(r.data for j, a, r in self.entries if (j, a) == (job_id, attempt))


def line(data: bytes, stream: str = "stdout", tag: str = "F") -> bytes:
    """One record as conmon writes it."""
    return b"2026-01-02T03:04:05.123456789+00:00 %s %s %s\n" % (stream.encode(), tag.encode(), data)


@pytest.fixture
def world(feed_store, change_feed, tmp_path):
    logs = JobLogs(tmp_path / "logs")
    journal = FakeJournal()
    return feed_store, logs, journal, Shipper(feed_store, change_feed, logs, journal, poll=0.01)


def running_job(store, logs, attempt_records=(b"",)) -> str:
    job_id = store.add_job(SPEC, trigger="rpc", queue_limit=100)["id"]
    store.transition(job_id, State.STARTING, new_attempt="rpc")
    store.transition(job_id, State.RUNNING)
    logs.prepare(job_id, 1).write_bytes(b"".join(attempt_records))
    return job_id


def append(logs, job_id, data: bytes, attempt: int = 1) -> None:
    with open(logs.path(job_id, attempt), "ab") as handle:
        handle.write(data)


def test_every_record_is_shipped_once_with_its_exact_bytes(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"one"), line(b"\xff\xfe", "stderr"), line(b"")])
    shipper.recover()
    shipper.ship_round()
    append(logs, job, line(b"x" * 8192, tag="P") + line(b"y"))
    shipper.ship_round()
    shipper.ship_round()
    assert journal.data(job) == b"one\n\xff\xfe\n\n" + b"x" * 8192 + b"y\n"
    assert [r.partial for *_, r in journal.entries] == [False, False, False, True, False]
    assert [r.stream for *_, r in journal.entries][:2] == ["stdout", "stderr"]


def test_an_unfinished_record_waits_for_its_newline(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"whole"), b"2026-01-02T03:04:05Z stdout F hal"])
    shipper.recover()
    shipper.ship_round()
    assert journal.data(job) == b"whole\n"
    append(logs, job, b"f\n")
    shipper.ship_round()
    assert journal.data(job) == b"whole\nhalf\n"


def test_an_ended_job_is_shipped_to_its_end_then_dropped_and_saved(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    append(logs, job, line(b"b"))
    store.transition(job, State.SUCCEEDED)
    shipper.track(store.get(job))
    shipper.ship_round()
    assert journal.data(job) == b"a\nb\n"
    assert shipper.pending() == []
    size = logs.path(job, 1).stat().st_size
    assert store.attempts(job)[0]["log_shipped"] == size


def test_a_retry_ends_the_earlier_attempt_and_ships_the_next(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"first")])
    shipper.recover()
    store.transition(job, State.QUEUED)
    store.transition(job, State.STARTING, new_attempt="retry")
    logs.prepare(job, 2).write_bytes(line(b"second"))
    shipper.track(store.get(job))
    shipper.ship_round()
    assert (journal.data(job, 1), journal.data(job, 2)) == (b"first\n", b"second\n")
    assert shipper.pending() == [(job, 2)]


def test_a_big_backlog_goes_in_batches_without_starving_another_job(world, monkeypatch):
    store, logs, journal, shipper = world
    monkeypatch.setattr(shipping, "BATCH", 10)
    chatty = running_job(store, logs, [line(b"%d" % i) for i in range(25)])
    quiet = running_job(store, logs, [line(b"q")])
    shipper.recover()
    assert shipper.ship_round() is True
    assert journal.data(quiet) == b"q\n"
    while shipper.ship_round():
        pass
    assert journal.data(chatty) == b"".join(b"%d\n" % i for i in range(25))


def test_restart_resumes_after_the_journal_s_newest_entry(world, change_feed):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a"), line(b"b")])
    shipper.recover()
    shipper.ship_round()  # shipped, but the database was never told (a SIGKILL)
    append(logs, job, line(b"c"))
    again = Shipper(store, change_feed, logs, journal)
    again.recover()
    again.ship_round()
    assert journal.data(job) == b"a\nb\nc\n"


def test_the_journal_is_asked_only_of_a_log_this_agent_did_not_make(world, change_feed):
    store, logs, journal, shipper = world
    asked = []
    journal.last_shipped = lambda job_id, attempt: asked.append((job_id, attempt))
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    shipper.ship_round()
    assert asked == [] and journal.data(job) == b"a\n"  # made here: nothing shipped before
    restarted = Shipper(store, change_feed, JobLogs(logs.root), journal)
    restarted.recover()
    assert asked == [(job, 1)]  # made by the agent before: the journal says how far


def test_restart_falls_back_on_the_database_when_the_journal_has_nothing(world, change_feed):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a"), line(b"b")])
    shipper.recover()
    shipper.ship_round()
    shipper.save()
    journal.entries.clear()  # vacuumed, or unreadable
    append(logs, job, line(b"c"))
    again = Shipper(store, change_feed, logs, journal)
    again.recover()
    again.ship_round()
    assert journal.data(job) == b"c\n"


def test_a_finished_shipped_job_is_not_looked_at_again(world, change_feed):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    store.transition(job, State.SUCCEEDED)
    shipper.recover()
    shipper.ship_round()
    journal.entries.clear()
    again = Shipper(store, change_feed, logs, journal)
    again.recover()
    assert again.pending() == []


def test_a_journald_that_is_down_is_retried_with_backoff_and_logged_once(world, caplog):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a"), line(b"b")])
    shipper.recover()
    journal.down = True
    with caplog.at_level(logging.INFO, logger="choo-agent.shipper"):
        for _ in range(3):
            shipper._retry_at = 0.0  # skip the wait
            shipper.ship_round()
        journal.down = False
        shipper._retry_at = 0.0
        shipper.ship_round()
    assert journal.data(job) == b"a\nb\n"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not take job output" in m for m in messages) == 1
    assert sum("takes job output again" in m for m in messages) == 1
    assert shipper._backoff == shipping.BACKOFF[0]


def test_while_backing_off_nothing_is_tried(world):
    store, logs, journal, shipper = world
    running_job(store, logs, [line(b"a")])
    shipper.recover()
    journal.down = True
    shipper.ship_round()
    journal.down = False
    shipper.ship_round()  # still within the first backoff
    assert journal.entries == []


def test_a_file_cut_in_place_is_recorded_as_lost_and_nothing_is_shipped_twice(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"old %d" % i) for i in range(3)])
    shipper.recover()
    shipper.ship_round()
    cut_at = logs.path(job, 1).stat().st_size
    logs.path(job, 1).write_bytes(line(b"new"))  # conmon's log_size_max truncation
    shipper.ship_round()
    assert journal.data(job) == b"old 0\nold 1\nold 2\nnew\n"
    record = store.get(job)
    assert record["log_lost"] == cut_at
    lost = [e for e in store.events(job) if e["kind"] == shipping.LOST_EVENT]
    assert [e["detail"]["attempt"] for e in lost] == [1]


def test_a_file_cut_and_regrown_past_the_offset_is_detected(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    shipper.ship_round()
    logs.path(job, 1).write_bytes(line(b"longer than the first record was"))
    shipper.ship_round()
    assert journal.data(job) == b"a\nlonger than the first record was\n"
    assert store.get(job)["log_lost"] is not None


def test_a_file_cut_while_the_agent_was_away_is_recorded(world, change_feed):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a" * 100), line(b"b")])
    shipper.recover()
    shipper.ship_round()
    logs.path(job, 1).write_bytes(line(b"c"))
    again = Shipper(store, change_feed, logs, journal)
    again.recover()
    again.ship_round()
    assert journal.data(job) == b"a" * 100 + b"\nb\nc\n"
    assert store.get(job)["log_lost"] is not None


def test_a_removed_job_is_dropped(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    store.transition(job, State.SUCCEEDED)
    logs.remove(job)
    store.remove_job(job)
    shipper._follow(0)
    assert shipper.pending() == []


def test_a_prune_drops_its_jobs_without_reading_each(world, monkeypatch):
    store, logs, journal, shipper = world
    jobs = [running_job(store, logs, [line(b"a")]) for _ in range(2)]
    shipper.recover()
    for job in jobs:
        store.transition(job, State.SUCCEEDED)
        logs.remove(job)
    seq = store.feed.seq
    store.remove_jobs(jobs)
    monkeypatch.setattr(store, "get", lambda job_id: pytest.fail(f"read {job_id}"))
    shipper._follow(seq)
    assert shipper.pending() == []


def test_the_thread_ships_new_output_and_stops(world, change_feed):
    store, logs, journal, shipper = world
    shipper.start()
    try:
        job = running_job(store, logs, [line(b"a")])
        wait_until(lambda: journal.data(job) == b"a\n", 30, "the journal to hold the output")
        append(logs, job, line(b"b"))
        wait_until(lambda: journal.data(job) == b"a\nb\n", 30, "the journal to hold the output")
    finally:
        shipper.stop(timeout=30)
    assert not shipper._thread.is_alive()
    assert store.attempts(job)[0]["log_shipped"] == logs.path(job, 1).stat().st_size


def test_the_writer_and_the_fake_match_the_port():
    def shape(function):
        return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]

    for name in ("ship", "last_shipped"):
        wanted = shape(getattr(JournalPort, name))
        assert shape(getattr(JournalWriter, name)) == wanted
        assert shape(getattr(FakeJournal, name)) == wanted


# -- max_log_bytes ---------------------------------------------------------------


def capped_job(store, logs, cap, records=()) -> str:
    job_id = store.add_job({**SPEC, "max_log_bytes": cap}, trigger="rpc", queue_limit=100)["id"]
    store.transition(job_id, State.STARTING, new_attempt="rpc")
    store.transition(job_id, State.RUNNING)
    logs.prepare(job_id, 1).write_bytes(b"".join(records))
    return job_id


def cuts(store, job_id):
    return [e["detail"] for e in store.events(job_id) if e["kind"] == log_limit.CUT_EVENT]


def test_output_past_the_cap_is_not_shipped_and_is_cut_from_the_file(world):
    store, logs, journal, shipper = world
    kept = [line(b"a" * 4), line(b"b" * 4)]  # 5 + 5 bytes of output: exactly the cap
    job = capped_job(store, logs, 10, [*kept, line(b"c"), line(b"d" * 100)])
    shipper.recover()
    shipper.ship_round()
    assert journal.data(job) == b"aaaa\nbbbb\n"
    assert logs.path(job, 1).read_bytes() == b"".join(kept)
    assert store.get(job)["log_dropped"] == 2 + 101
    assert cuts(store, job) == [{"attempt": 1, "max_log_bytes": 10, "kept": 10}]
    assert store.get(job)["stop_reason"] is None  # log_limit_action = "truncate"
    append(logs, job, line(b"e" * 9))  # conmon appends at the new end
    shipper.ship_round()
    assert journal.data(job) == b"aaaa\nbbbb\n"
    assert logs.path(job, 1).read_bytes() == b"".join(kept)
    assert store.get(job)["log_dropped"] == 2 + 101 + 10
    assert len(cuts(store, job)) == 1


def test_a_restarted_shipper_counts_what_was_kept_and_notes_the_cut_once(world, change_feed):
    store, logs, journal, shipper = world
    job = capped_job(store, logs, 10, [line(b"a" * 8)])
    shipper.recover()
    shipper.ship_round()
    append(logs, job, line(b"b" * 8))
    again = Shipper(store, change_feed, logs, journal)
    again.recover()
    again.ship_round()
    assert journal.data(job) == b"a" * 8 + b"\n"
    assert store.get(job)["log_dropped"] == 9
    assert len(cuts(store, job)) == 1
    append(logs, job, line(b"c"))
    third = Shipper(store, change_feed, logs, journal)
    third.recover()
    third.ship_round()
    assert journal.data(job) == b"a" * 8 + b"\n"
    assert len(cuts(store, job)) == 1  # the same cut, found again


def test_with_log_limit_action_fail_the_job_is_asked_to_stop(feed_store, change_feed, tmp_path):
    logs, journal, woken = JobLogs(tmp_path / "logs"), FakeJournal(), []
    config = Config(log_limit_action="fail")
    wake = lambda: woken.append(True)  # noqa: E731
    shipper = Shipper(feed_store, change_feed, logs, journal, config=config, wake=wake)
    job = capped_job(feed_store, logs, 10, [line(b"x" * 20)])
    shipper.recover()
    shipper.ship_round()
    record = feed_store.get(job)
    assert (record["stop_reason"], record["stop_sent_at"]) == ("log_limit", None)
    assert woken == [True]
    assert journal.data(job) == b""


TORN = b"2026-01-02T03:04:05.123456789+00:00 stdout F half a li"


def lost_events(store, job) -> list[dict]:
    return [e["detail"] for e in store.events(job) if e["kind"] == shipping.LOST_EVENT]


def test_a_record_conmon_could_not_finish_is_lost_output_once_the_attempt_ends(world, change_feed):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    append(logs, job, TORN)  # conmon's write came back short: the disk was full
    shipper.recover()
    shipper.ship_round()
    assert journal.data(job) == b"a\n" and store.get(job)["log_lost"] is None  # may be mid-write
    store.transition(job, State.SUCCEEDED)
    shipper.track(store.get(job))
    shipper.ship_round()
    assert shipper.pending() == []
    assert store.get(job)["log_lost"] == len(TORN)
    assert [(d["attempt"], d["bytes"]) for d in lost_events(store, job)] == [(1, len(TORN))]
    again = Shipper(store, change_feed, logs, journal)  # after a restart: recorded once
    again.recover()
    again.ship_round()
    assert again.pending() == [] and len(lost_events(store, job)) == 1
    assert journal.data(job) == b"a\n"


def test_a_record_cut_short_on_a_full_disk_is_lost_output_while_the_job_runs(world, monkeypatch):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    shipper.ship_round()
    monkeypatch.setattr(log_space, "no_room", lambda path: True)
    append(logs, job, TORN)
    shipper.ship_round()
    shipper.ship_round()
    assert store.get(job)["log_lost"] == len(TORN)
    assert [d["offset"] for d in lost_events(store, job)] == [len(line(b"a"))]


def test_once_space_returns_the_cut_record_ends_at_the_cut_and_the_next_starts_cleanly(
    world, monkeypatch, change_feed
):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    shipper.ship_round()
    with monkeypatch.context() as full:
        full.setattr(log_space, "no_room", lambda path: True)
        append(logs, job, TORN)
        shipper.ship_round()
    assert [d["offset"] for d in lost_events(store, job)] == [len(line(b"a"))]
    # Space is back: conmon writes its next record right after the cut one.
    append(logs, job, line(b"next"))
    shipper.ship_round()
    assert journal.data(job) == b"a\nhalf a li\nnext\n"  # not joined
    cut = len(line(b"a")) + len(TORN)
    assert [r.offset for _, _, r in journal.entries] == [0, len(line(b"a")), cut]
    shipper.save()
    # A restart resumes after "next", which begins mid-line: it knows the cut from the record.
    restarted = Shipper(store, change_feed, logs, journal)
    restarted.recover()
    append(logs, job, line(b"more"))
    restarted.ship_round()
    assert journal.data(job) == b"a\nhalf a li\nnext\nmore\n"  # nothing twice
    assert len(lost_events(store, job)) == 1  # and no false "the log was cut"


def test_a_cut_within_a_header_that_no_round_saw_is_found_by_the_record_after_it(
    world, change_feed
):
    """The disk filled and space came back between two rounds: the line at the
    cut is no record, so the cut is recorded there and the next record shipped."""
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])
    shipper.recover()
    shipper.ship_round()
    head = TORN[:40]  # the time stamp and "std"
    append(logs, job, head + line(b"next"))
    shipper.ship_round()
    assert journal.data(job) == b"a\nnext\n"
    assert [(d["offset"], d["bytes"]) for d in lost_events(store, job)] == [
        (len(line(b"a")), len(head))
    ]
    shipper.save()
    restarted = Shipper(store, change_feed, logs, journal)  # resumes mid-line, after "next"
    restarted.recover()
    append(logs, job, line(b"more"))
    restarted.ship_round()
    assert journal.data(job) == b"a\nnext\nmore\n" and len(lost_events(store, job)) == 1


def test_the_reserve_of_a_running_log_is_kept_and_given_back_when_it_ends(world):
    store, logs, journal, shipper = world
    job = running_job(store, logs, [line(b"a")])  # written over: no reserve left
    path = logs.path(job, 1)
    shipper.recover()
    shipper.ship_round()
    assert log_space.ahead(path) >= log_space.RESERVE
    store.transition(job, State.SUCCEEDED)
    shipper.track(store.get(job))
    shipper.ship_round()
    assert log_space.ahead(path) < 4096

"""The shipper's mark of a clean stop: a restart reads only the ended jobs
submitted since, and after a crash (no mark) the whole window again."""

from __future__ import annotations

import time

from ulid import ULID

from agent.protocol.states import State
from agent.runtime.shipped_mark import SHIPPED_MARK, leave_mark, take_mark
from agent.runtime.shipper import RESUME_WINDOW, Shipper
from tests.harness import wait_until
from tests.unit.test_shipper import (
    append,
    line,
    running_job,
    world,  # noqa: F401 (the fixture)
)


def _spy_since(store):
    seen = []
    real = store.list

    def listing(**kwargs):
        seen.append(kwargs["since"])
        return real(**kwargs)

    store.list = listing
    return seen


def test_a_clean_stop_leaves_the_oldest_followed_job_and_the_next_start_reads_from_it(
    world,  # noqa: F811
    change_feed,
    tmp_path,
):
    store, logs, journal, _ = world
    mark = tmp_path / SHIPPED_MARK
    shipper = Shipper(store, change_feed, logs, journal, poll=0.01, mark=mark)
    done = running_job(store, logs, [line(b"old")])
    store.transition(done, State.SUCCEEDED)
    running = running_job(store, logs, [line(b"a")])
    shipper.start()
    wait_until(lambda: journal.data(running) == b"a\n", 30, "the journal to hold the output")
    shipper.stop(timeout=30)
    assert float(mark.read_text()) == ULID.from_str(running).timestamp
    # While the agent is down the job ends, with output the journal has not seen.
    append(logs, running, line(b"b"))
    store.transition(running, State.SUCCEEDED)
    again = Shipper(store, change_feed, logs, journal, mark=mark)
    seen = _spy_since(store)
    again.recover()
    assert seen == [ULID.from_str(running).timestamp]
    assert not mark.exists(), "taken: a crash from now on means the whole window"
    again.ship_round()
    assert journal.data(running) == b"a\nb\n"
    assert journal.data(done) == b"old\n"  # shipped once, by the first shipper


def test_without_a_mark_a_start_looks_back_the_whole_window(world, change_feed, tmp_path):  # noqa: F811
    store, logs, journal, _ = world
    shipper = Shipper(store, change_feed, logs, journal, mark=tmp_path / SHIPPED_MARK)
    seen = _spy_since(store)
    before = time.time()
    shipper.recover()
    assert len(seen) == 1 and before - RESUME_WINDOW <= seen[0] <= time.time() - RESUME_WINDOW


def test_a_stop_following_nothing_marks_its_own_time_and_a_bad_mark_is_ignored(tmp_path):
    mark = tmp_path / SHIPPED_MARK
    before = time.time()
    leave_mark(mark, [])
    assert before <= take_mark(mark) <= time.time()
    assert take_mark(mark) == 0.0, "a mark is taken once"
    mark.write_text("garbage")
    assert take_mark(mark) == 0.0 and not mark.exists()
    assert take_mark(None) == 0.0

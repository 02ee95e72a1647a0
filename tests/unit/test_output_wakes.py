"""Follower wake-ups (agent/runtime/output_wakes.py over agent/adapters/inotify.py),
with the kernel's real inotify on temporary files and a real change feed.

Each wait here is given an hour: a test passes only if the wake-up ends it,
never because a timeout ran out (the threads are joined within the harness's
generous bound, which only says when to give up).
"""

from __future__ import annotations

import errno
import os
import threading

import pytest

from agent.adapters.inotify import IN_MODIFY, Inotify
from agent.adapters.joblogs import JobLogs
from agent.api import logs as output
from agent.protocol.output import entry_bytes
from agent.runtime.changes import ChangeFeed
from agent.runtime.output_wakes import POLL, OutputWakes
from tests.harness import wait_until
from tests.unit.test_joblogs import record

JOB = "01JOB"
HOUR = 3600.0


@pytest.fixture
def feed():
    return ChangeFeed()


@pytest.fixture
def wakes(feed):
    wakes = OutputWakes(feed)
    wakes.start()
    yield wakes
    wakes.stop()


def waiting(waiter):
    """A thread in ``waiter.wait(HOUR)``, and an event set once it ended."""
    done = threading.Event()

    def run():
        waiter.wait(HOUR)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return done


def inotify_instances() -> int:
    fds = os.listdir("/proc/self/fd")
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return links.count("anon_inode:inotify")


def test_a_write_to_the_watched_log_ends_the_wait(wakes, tmp_path):
    path = tmp_path / "1.log"
    path.touch()
    with wakes.waiter(JOB) as waiter:
        waiter.watch(path)
        done = waiting(waiter)
        with open(path, "ab") as log:
            log.write(record("stdout", b"line", False))
        assert done.wait(60), "the write did not wake the waiter"


def test_a_write_before_the_wait_is_not_slept_through(wakes, tmp_path):
    path = tmp_path / "1.log"
    path.touch()
    with wakes.waiter(JOB) as waiter:
        waiter.watch(path)
        with open(path, "ab") as log:  # written while the follower was reading
            log.write(record("stdout", b"line", False))
        wait_until(lambda: waiter._woken.is_set(), what="the inotify thread to see the write")
        assert waiting(waiter).wait(60)


def test_an_event_of_the_job_ends_the_wait_and_a_log_not_made_yet_is_watched_later(
    wakes, feed, tmp_path
):
    path = tmp_path / "1.log"
    with wakes.waiter(JOB) as waiter:
        waiter.watch(path)  # the attempt has not started: nothing to watch yet
        done = waiting(waiter)
        feed.publish({"job_id": JOB, "kind": "state"})
        assert done.wait(60), "the job's event did not wake the waiter"
        path.touch()
        waiter.watch(path)
        done = waiting(waiter)
        path.write_bytes(record("stderr", b"x", False))
        assert done.wait(60)


def test_a_removed_log_wakes_its_waiter_and_a_new_one_is_watched_again(wakes, tmp_path):
    path = tmp_path / "1.log"
    path.touch()
    with wakes.waiter(JOB) as waiter:
        waiter.watch(path)
        done = waiting(waiter)
        path.unlink()
        assert done.wait(60), "the removal did not wake the waiter"
        path.touch()  # made again under the same name (a create retried)
        waiter.watch(path)
        done = waiting(waiter)
        path.write_bytes(b"more")
        assert done.wait(60)


def test_many_followers_of_many_logs_share_one_instance_and_one_watch_per_log(wakes, tmp_path):
    paths = [tmp_path / f"{n}.log" for n in range(50)]
    for path in paths:
        path.touch()
    before = inotify_instances()
    waiters = [wakes.waiter(f"JOB{n}") for n in range(50)]
    waiters += [wakes.waiter(f"JOB{n}") for n in range(50)]  # a second follower of each
    for n, waiter in enumerate(waiters):
        waiter.watch(paths[n % 50])
    assert inotify_instances() == before
    assert len(wakes._by_wd) == 50
    assert all(len(ws) == 2 for ws in wakes._by_wd.values())
    dones = [waiting(w) for w in waiters[:50]]
    paths[7].write_bytes(b"x")
    assert dones[7].wait(60)
    for waiter in waiters:
        waiter.close()
    assert wakes._by_wd == {} and wakes._by_job == {}
    for waiter in waiters[:50]:
        waiter.wake()  # let the other waiting threads end


def test_without_inotify_a_wait_is_a_short_poll(feed, tmp_path):
    wakes = OutputWakes(feed)  # not started: no inotify, no feed thread
    path = tmp_path / "1.log"
    path.touch()
    with wakes.waiter(JOB) as waiter:
        waiter.watch(path)
        assert not wakes.watching and wakes._by_wd == {}
        assert waiting(waiter).wait(60), f"a wait without inotify is not a {POLL} s poll"


def test_follow_sleeps_until_a_write_or_the_job_end_wakes_it(wakes, feed, tmp_path):
    logs = JobLogs(tmp_path / "logs")
    path = logs.prepare(JOB, 1)
    state = {"ended": False}
    sent = []
    asleep = threading.Event()
    emitted = threading.Event()
    with wakes.waiter(JOB) as waiter:

        def wait(_seconds):
            asleep.set()
            waiter.wait(HOUR)  # only a wake-up ends it
            asleep.clear()

        def emit(item):
            sent.append(item)
            emitted.set()

        def run():
            output.follow(
                output.start(logs, JOB, tail=None, since=None, after=None),
                JOB,
                ended=lambda: state["ended"],
                emit=emit,
                closed=lambda: False,
                wait=wait,
                watch=waiter.watch,
            )

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert asleep.wait(60)
        with open(path, "ab") as log:
            log.write(record("stdout", b"first", False))
        assert emitted.wait(60), "the write did not wake the follower"
        wait_until(asleep.is_set, what="the follower to sleep again")
        state["ended"] = True
        feed.publish({"job_id": JOB, "kind": "state"})
        thread.join(60)
        assert not thread.is_alive(), "the job's end did not wake the follower"
    assert [entry_bytes(e) for e in sent] == [b"first\n"]


def test_inotify_reports_the_watch_and_a_missing_path_says_so(tmp_path):
    inotify = Inotify()
    inotify.open()
    try:
        path = tmp_path / "f"
        path.touch()
        wd = inotify.add_watch(path, IN_MODIFY)
        path.write_bytes(b"x")
        events = inotify.read(60)
        assert events and events[0].wd == wd and events[0].mask & IN_MODIFY
        assert events[0].name == ""
        with pytest.raises(OSError) as raised:
            inotify.add_watch(tmp_path / "missing", IN_MODIFY)
        assert raised.value.errno == errno.ENOENT
        assert inotify.read(0) == []
    finally:
        inotify.close()
    with pytest.raises(OSError):
        inotify.fileno()

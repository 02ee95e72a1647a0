"""agent.runtime.pool: work runs in parallel, and shutdown waits no longer than its grace."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from agent.runtime.pool import BoundedPool


def test_work_runs_and_answers_through_its_future():
    pool = BoundedPool(2, grace=5, name="t")
    futures = [pool.submit(pow, n, 2) for n in range(10)]
    assert [f.result(5) for f in futures] == [n * n for n in range(10)]
    pool.shutdown()
    assert pool.unfinished() == 0


def test_pieces_run_side_by_side_up_to_max_workers():
    pool = BoundedPool(3, grace=5, name="t")
    barrier = threading.Barrier(3, timeout=5)
    futures = [pool.submit(barrier.wait) for _ in range(3)]
    # Three at once or the barrier breaks (BrokenBarrierError).
    assert sorted(f.result(10) for f in futures) == [0, 1, 2]
    pool.shutdown()


def test_shutdown_runs_queued_work_within_its_grace():
    pool = BoundedPool(1, grace=30, name="t")
    futures = [pool.submit(pow, n, 2) for n in range(20)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in futures) and pool.unfinished() == 0


def test_shutdown_can_drop_queued_work():
    hang = threading.Event()
    pool = BoundedPool(1, grace=0.1, name="t")
    running = pool.submit(hang.wait)
    queued = pool.submit(print, "never")
    pool.shutdown(wait=True, cancel_futures=True)
    assert running.running() and queued.cancelled()
    hang.set()


def test_shutdown_leaves_hung_work_behind_after_its_grace():
    hang = threading.Event()
    pool = BoundedPool(1, grace=0.2, name="t")
    running = pool.submit(hang.wait)
    queued = pool.submit(print, "never")
    pool.shutdown(wait=True)
    # Returned with the first still running, the second still waiting behind it.
    assert running.running() and not queued.done()
    assert pool.unfinished() == 2
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print, "late")
    hang.set()
    assert running.result(5) is True
    queued.result(5)
    assert pool.unfinished() == 0


def test_hung_work_does_not_hold_the_process_exit():
    # With ThreadPoolExecutor this child would never exit: its threads are
    # joined at interpreter exit.
    child = subprocess.run(
        [sys.executable, "-c", HUNG_AT_EXIT], capture_output=True, text=True, timeout=60
    )
    assert (child.returncode, child.stdout) == (0, "shut down\n"), child.stderr


HUNG_AT_EXIT = """
import threading
from agent.runtime.pool import BoundedPool
pool = BoundedPool(2, grace=0.1, name="t")
pool.submit(threading.Event().wait)
pool.shutdown()
print("shut down")
"""


def test_a_thread_free_again_calls_idle_first_and_goes_on_if_it_fails(caplog):
    calls: list[tuple[str, int]] = []

    def idle() -> None:
        calls.append(("idle", threading.get_ident()))
        if len(calls) == 2:
            raise OSError("cannot give back")

    pool = BoundedPool(1, grace=5, name="t", idle=idle)
    for _ in range(3):
        assert pool.submit(lambda: calls.append(("work", threading.get_ident()))).result(5) is None
        pool.submit(lambda: None).result(5)  # the idle call before this one is recorded
    pool.shutdown()
    works = [i for i, (what, _) in enumerate(calls) if what == "work"]
    assert all(calls[i + 1][0] == "idle" for i in works)
    assert len({ident for _, ident in calls}) == 1  # on the thread that ran the work
    assert "could not give back" in caplog.text

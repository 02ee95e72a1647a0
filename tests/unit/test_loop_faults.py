"""The reconcile loop in a faulty world, on a real SQLite file: a database that
is locked or fails its reads, work that always fails, a Podman call that hangs.

Podman is the fake (tests/unit/fakes.py); the database is real. Faults are
real where SQLite can make them: the lock is a second connection's
``BEGIN EXCLUSIVE``. A disk I/O error cannot be had on demand from a real
file system here, so it is raised as SQLite's own ``OperationalError`` inside
peewee's exception wrapper: exactly the exception a failing read gives the
loop. tests/faults/test_loop_faults.py does the lock against a real agent.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import peewee
import pytest

from agent.adapters.podman import ContainerState
from agent.protocol.errors import PodmanUnavailable
from tests.harness import wait_until
from tests.unit import test_controller
from tests.unit.test_controller import build, submit

#: The store, fake Podman, controller and fake clock of tests/unit/test_controller.py.
world = test_controller.world


def disk_io_error():
    """What peewee raises when SQLite cannot read the file."""
    with peewee.__exception_wrapper__:
        raise sqlite3.OperationalError("disk I/O error")


def test_a_database_locked_by_another_process_degrades_until_a_write_succeeds(world):
    store, podman, controller, clock = world
    job = submit(store)
    store.db.execute_sql("PRAGMA busy_timeout = 0")  # fail at once, not after 10 s
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        due = controller.reconcile_safely()  # recording `starting` fails
        assert due == clock.mono + 1
        assert controller.degraded.startswith("database: ")
        assert "locked" in controller.degraded
        # Reads still work (WAL), but the pass first proves it can write: still degraded.
        assert controller.reconcile_safely() == clock.mono + 2  # backing off
        assert "locked" in controller.degraded
        assert store.get(job)["state"] == "queued"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    controller.reconcile_safely()
    assert controller.degraded is None
    assert store.get(job)["state"] == "running"


def test_the_loop_thread_survives_raw_database_errors_and_recovers(world, monkeypatch):
    store, podman, controller, clock = world
    monkeypatch.setattr("agent.runtime.health.RETRY_PASS_AFTER", 0.01)
    monkeypatch.setattr("agent.runtime.health.MAX_PASS_BACKOFF", 0.05)
    broken = threading.Event()
    broken.set()
    reads, ticks = [], []
    real_nonterminal = store.nonterminal

    def nonterminal():
        reads.append(None)
        if broken.is_set():
            disk_io_error()
        return real_nonterminal()

    def tick():  # the daemon's watchdog and status line read the database too
        ticks.append(None)
        if broken.is_set():
            disk_io_error()

    monkeypatch.setattr(store, "nonterminal", nonterminal)
    # Real time: the loop waits on real events; its backoff is cut short above.
    config = controller.config
    controller = build(store, podman, config, time.time, monotonic=time.monotonic, on_tick=tick)
    controller.tick_interval = 0.05
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(reads) > 3 and len(ticks) > 3, what="passes retried")
        assert thread.is_alive()
        assert controller.degraded == "database: OperationalError: disk I/O error"
        job = submit(store)
        broken.clear()
        controller.wake()
        wait_until(lambda: store.get(job)["state"] == "running", what="the next job started")
        wait_until(lambda: controller.degraded is None, what="degraded cleared")
        assert thread.is_alive()
    finally:
        controller.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_a_start_that_always_fails_backs_off_per_job_and_others_run(world):
    store, podman, controller, clock = world
    tries: list[float] = []
    real_run = podman.run

    def run(job_id, *args, **kwargs):
        if job_id == failing:
            tries.append(clock.mono)
            raise RuntimeError("unexpected reply from Podman")
        return real_run(job_id, *args, **kwargs)

    podman.run = run
    failing = submit(store)
    start = clock.mono
    while clock.mono < start + 120:  # a pass every half second, for two minutes
        controller.reconcile_safely()
        clock.now += 0.5
    gaps = [round(b - a) for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60][: len(gaps)] and len(tries) == 7
    assert store.get(failing)["state"] == "starting"
    other = submit(store)
    controller.reconcile_safely()
    assert store.get(other)["state"] == "running"
    assert controller.degraded is None  # the job's own trouble, not the agent's


def test_a_hung_kill_holds_its_own_job_only(world):
    store, podman, controller, clock = world
    controller = build(store, podman, controller.config, clock, executor=ThreadPoolExecutor(4))
    hung, release = threading.Event(), threading.Event()
    real_signal = podman.signal

    def signal(cid, sig):
        if cid == podman.containers[stuck].id:
            hung.set()
            release.wait()
        real_signal(cid, sig)

    podman.signal = signal
    stuck = submit(store, timeout=5)
    controller.reconcile()
    wait_until(lambda: store.get(stuck)["state"] == "running", what="the job running")
    clock.now += 5
    # The pass hands out the SIGTERM, which hangs; the pass itself must return.
    timed_out = threading.Thread(target=controller.reconcile, daemon=True)
    timed_out.start()
    wait_until(hung.is_set, what="the kill in flight")
    timed_out.join(30)
    assert not timed_out.is_alive(), "the pass waits on the hung kill"
    try:
        others = [submit(store) for _ in range(3)]
        for _ in others:  # max_concurrent=2: one slot is the stuck job's
            controller.reconcile()
            job = next(j for j in others if store.get(j)["state"] in ("starting", "running"))
            wait_until(lambda j=job: store.get(j)["state"] == "running", what="it runs")
            podman.exit(job, 0)
            controller.reconcile()
            wait_until(lambda j=job: store.get(j)["state"] == "succeeded", what="it ends")
        assert store.get(stuck)["stop_sent_at"] is None
    finally:
        release.set()
    controller.workers.settle(30)
    assert store.get(stuck)["stop_reason"] == "timeout"


def test_an_earlier_attempts_container_is_removed_not_finished_as_the_new_attempt(world):
    store, podman, controller, clock = world
    job = submit(store, retries=1)
    controller.reconcile()
    real_remove, failures = podman.remove, []

    def remove(cid):  # the finish's removal and the sweep's next one both time out
        if len(failures) < 2:
            failures.append(cid)
            raise PodmanUnavailable("Podman did not answer when asked to remove it")
        real_remove(cid)

    podman.remove = remove
    podman.exit(job, 1)
    controller.reconcile()  # attempt 1 failed: queued for a retry; its removal failed
    assert store.get(job)["state"] == "queued" and failures
    clock.now += 10
    controller.reconcile()  # attempt 2 begins while attempt 1's container is still there
    assert store.get(job)["attempt"] == 2 and len(failures) == 2
    for _ in range(6):  # through the backoff of the failed removals
        controller.reconcile()
        clock.now += 1
    record = store.get(job)
    assert record["state"] == "running"
    assert podman.containers[job] == ContainerState(
        id=f"c-{job}-2",
        name=f"choo-{job}",
        job_id=job,
        attempt=2,
        status="running",
        created_at=podman.containers[job].created_at,
    )
    assert [a["exit_code"] for a in store.attempts(job)] == [1, None]


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyError("x")])
def test_an_unexpected_error_in_a_pass_degrades_with_its_reason(world, monkeypatch, error):
    store, podman, controller, clock = world

    def broken():
        raise error

    monkeypatch.setattr(podman, "list_ours", broken)
    controller.reconcile_safely()
    assert controller.degraded.startswith("the reconcile loop failed: ")
    monkeypatch.undo()
    controller.reconcile_safely()
    assert controller.degraded is None

"""Usage per attempt: the arithmetic (rules), reading a fake /proc and a fake
cgroup v2 directory (adapter), and the sampler's bookkeeping (runtime)."""

from __future__ import annotations

import os
import time

import pytest

from agent.adapters.proc_usage import RESCAN_EVERY, ProcReader
from agent.protocol import spec as specs
from agent.protocol.spec import container_name
from agent.protocol.states import State
from agent.rules.usage import (
    Sample,
    Totals,
    descendants,
    parse_io_stat,
    parse_keyed,
    parse_stat,
    tree_sample,
)
from agent.runtime.changes import ChangeFeed
from agent.runtime.usage import UsageSampler
from agent.storage.store import Store
from tests.harness import wait_until

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CID = "c" * 64
JOB = "01JD0000000000000000000030"


def stat_line(pid, name, ppid, utime, stime, cutime, cstime, rss):
    middle = " ".join(["0"] * 9)
    tail = " ".join(["0"] * 6)
    return (
        f"{pid} ({name}) S {ppid} {middle} {utime} {stime} {cutime} {cstime} {tail} {rss}"
        + " 0" * 30
    )


def test_stat_line_with_spaces_and_parentheses_in_the_name():
    stat = parse_stat(stat_line(7, "my (odd) prog", 3, 10, 5, 2, 1, 250))
    assert (stat.ppid, stat.cpu_ticks, stat.rss_pages) == (3, 18, 250)


def test_keyed_files_and_io_stat():
    assert parse_keyed("read_bytes: 4096\nwrite_bytes: 512\n") == {
        "read_bytes": 4096,
        "write_bytes": 512,
    }
    assert parse_keyed("Name:\tsh\nVmHWM:\t  2048 kB\n")["VmHWM"] == 2048
    assert parse_io_stat("8:0 rbytes=100 wbytes=7 rios=1\n259:0 rbytes=50 wbytes=3\n") == (150, 10)
    assert parse_io_stat("") == (0, 0)


def test_descendants_walks_the_whole_tree_and_nothing_else():
    children = {0: [1], 1: [10, 20], 10: [11, 13], 11: [12]}
    assert sorted(descendants(children, 10)) == [10, 11, 12, 13]
    assert descendants(children, 99) == [99]


def test_totals_keep_counters_monotonic_and_peaks_high():
    totals = Totals()
    assert totals.columns() == {}
    totals.add(Sample(cpu_seconds=1.0, memory=100, io_read=5, io_write=1, pids=3), now=10.0)
    # A child exited unreaped by one in the tree: the sum dips, the total does not.
    totals.add(Sample(cpu_seconds=0.8, memory=300, io_read=4, io_write=2, pids=1), now=11.0)
    totals.add(
        Sample(cpu_seconds=2.0, memory=50, io_read=None, io_write=None, pids=2, memory_peak=400),
        now=12.0,
    )
    assert totals.columns() == {
        "cpu_seconds": 2.0,
        "memory_peak": 400,
        "io_read": 5,
        "io_write": 2,
        "pids_peak": 3,
        "usage_sampled": True,
    }
    assert totals.cpu_percent == pytest.approx(100.0)  # 1 s of CPU over the last 1 s
    assert totals.memory == 50


def test_exact_only_while_every_sample_was():
    totals = Totals()
    totals.add(Sample(1.0, 1, 0, 0, 1, exact=True), now=1.0)
    assert totals.columns()["usage_sampled"] is False
    totals.add(Sample(1.0, 1, 0, 0, 1, exact=False), now=2.0)
    assert totals.columns()["usage_sampled"] is True


def test_tree_io_is_unknown_when_one_process_hides_it():
    stats = [parse_stat(stat_line(2, "a", 1, 100, 0, 0, 0, 10))] * 2
    seen = tree_sample(
        stats, [{"read_bytes": 1}, None], [4, 8], ticks_per_second=100, page_size=4096
    )
    assert (seen.io_read, seen.io_write, seen.cpu_seconds) == (None, None, 2.0)
    assert (seen.memory, seen.memory_peak, seen.pids) == (20 * 4096, 8 * 1024, 2)


def fake_proc(root, processes):
    """processes: pid -> (name, ppid, ticks, rss pages, cmdline, io or None, hwm KiB)."""
    for pid, (name, ppid, ticks, rss, cmdline, io, hwm) in processes.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(stat_line(pid, name, ppid, ticks, 0, 0, 0, rss))
        (d / "cmdline").write_text("\0".join(cmdline) + "\0")
        if io is not None:
            (d / "io").write_text(f"rchar: 1\nread_bytes: {io[0]}\nwrite_bytes: {io[1]}\n")
        (d / "status").write_text(f"Name:\t{name}\nVmHWM:\t{hwm} kB\n")
        (d / "cgroup").write_text(f"0::/user.slice/libpod-{pid}.scope\n")
    (root / "self").mkdir(exist_ok=True)


CONMON = ["/usr/bin/conmon", "--api-version", "1", "-c", CID, "-u", CID, "-n", container_name(JOB)]
PROCESSES = {
    1: ("init", 0, 0, 1, ["init"], None, 0),
    100: ("conmon", 1, 500, 100, CONMON, (0, 0), 400),
    101: ("sh", 100, 2 * TICKS, 200, ["sh"], (4096, 8192), 1000),
    102: ("tail", 101, TICKS, 16384, ["tail"], (0, 4096), 70000),
    200: ("conmon", 1, 0, 1, ["/usr/bin/conmon", "-c", "d" * 64, "-n", "other"], None, 0),
}


def test_reader_finds_the_conmon_and_sums_the_tree_below_it(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    reader = ProcReader(tmp_path / "proc", tmp_path / "no-cgroup")
    snapshot = reader.snapshot()
    assert set(snapshot.monitors) == {CID, "d" * 64}
    monitor = snapshot.monitors[CID]
    assert (monitor.name, monitor.pid) == (container_name(JOB), 100)
    sample = reader.sample(snapshot, monitor)
    assert sample.exact is False
    assert sample.cpu_seconds == pytest.approx(3.0)  # conmon's own CPU is not the job's
    assert sample.memory == (200 + 16384) * PAGE
    assert sample.memory_peak == 70000 * 1024
    assert (sample.io_read, sample.io_write, sample.pids) == (4096, 12288, 2)
    assert reader.sample(snapshot, snapshot.monitors["d" * 64]) is None  # nothing below it


def test_between_full_looks_only_the_known_trees_are_read(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    reader = ProcReader(tmp_path / "proc", tmp_path / "no-cgroup")
    first = reader.snapshot([container_name(JOB)])
    assert set(first.monitors) == {CID} and first.detailed
    assert set(first.stats) == set(PROCESSES)  # a full look
    # A process born after it is not read until the next full look...
    fake_proc(tmp_path / "proc", {103: ("sleep", 101, 0, 50, ["sleep"], (0, 0), 200)})
    looks = [reader.snapshot([container_name(JOB)]) for _ in range(RESCAN_EVERY - 1)]
    assert all(set(look.stats) == {100, 101, 102} for look in looks)
    assert not any(look.detailed for look in looks)
    assert reader.sample(looks[0], looks[0].monitors[CID]).io_read is None  # not read this look
    full = reader.snapshot([container_name(JOB)])
    assert 103 in full.stats and reader.sample(full, full.monitors[CID]).pids == 3


def test_reader_takes_exact_figures_from_a_cgroup_v2_directory(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    cgroups = tmp_path / "cgroup"
    cgroups.mkdir()
    (cgroups / "cgroup.controllers").write_text("cpu io memory pids\n")
    scope = cgroups / "user.slice" / "libpod-101.scope"
    scope.mkdir(parents=True)
    (scope / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (scope / "memory.current").write_text("1048576\n")
    (scope / "memory.peak").write_text("67108864\n")
    (scope / "io.stat").write_text("8:0 rbytes=1000 wbytes=2000 rios=1 wios=2\n")
    (scope / "pids.current").write_text("2\n")
    reader = ProcReader(tmp_path / "proc", cgroups)
    snapshot = reader.snapshot()
    sample = reader.sample(snapshot, snapshot.monitors[CID])
    assert sample == Sample(
        cpu_seconds=2.5,
        memory=1048576,
        io_read=1000,
        io_write=2000,
        pids=2,
        memory_peak=67108864,
        exact=True,
    )
    # A kernel without memory.peak or the io controller: what it has.
    (scope / "memory.peak").unlink()
    (scope / "io.stat").unlink()
    sample = reader.sample(reader.snapshot(), snapshot.monitors[CID])
    assert (sample.memory_peak, sample.io_read, sample.exact) == (None, None, True)
    # In its conmon's cgroup (a container run without cgroups): summed from /proc.
    (tmp_path / "proc" / "100" / "cgroup").write_text("0::/user.slice/libpod-101.scope\n")
    assert reader.sample(reader.snapshot(), snapshot.monitors[CID]).exact is False
    (tmp_path / "proc" / "100" / "cgroup").write_text("0::/user.slice/libpod-100.scope\n")
    assert reader.sample(reader.snapshot(), snapshot.monitors[CID]).exact is True
    # No cgroup of its own (a cgroup v1 host's unified mount): summed from /proc.
    (scope / "cpu.stat").unlink()
    assert reader.sample(reader.snapshot(), snapshot.monitors[CID]).exact is False


def test_sampler_keeps_only_this_agents_running_jobs_until_they_end(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    running = [JOB]
    now = [0.0]
    sampler = UsageSampler(
        ProcReader(tmp_path / "proc", tmp_path / "none"),
        lambda: running,
        lambda: 1.0,
        clock=lambda: now[0],
    )
    sampler.sample_once()
    now[0] = 1.0
    sampler.sample_once()
    live = sampler.live()
    assert set(live) == {JOB}  # the other conmon is not one of ours
    assert live[JOB]["cpu_percent"] == 0.0 and live[JOB]["memory"] == (200 + 16384) * PAGE
    columns = sampler.take(CID)
    assert columns["cpu_seconds"] == pytest.approx(3.0)
    assert columns["pids_peak"] == 2 and columns["usage_sampled"] is True
    assert sampler.take(CID) == columns  # a retried finish records the same
    # Once the job is no longer running and its container gone, it is forgotten.
    sampler.sample_once()
    running.clear()
    for pid in (101, 102):
        for f in (tmp_path / "proc" / str(pid)).iterdir():
            f.unlink()
        (tmp_path / "proc" / str(pid)).rmdir()
    sampler.sample_once()
    assert sampler.live() == {} and sampler.take(CID) == {}


def test_sampler_asks_which_jobs_run_only_when_a_look_can_change_the_answer(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    asked = []

    def running():
        asked.append(1)
        return [JOB]

    sampler = UsageSampler(ProcReader(tmp_path / "proc", tmp_path / "x"), running, lambda: 1.0)
    for _ in range(2 * RESCAN_EVERY - 1):
        sampler.sample_once()
    assert len(asked) == 2  # at the full looks, which can find a new container
    assert sampler.live()[JOB]["cpu_seconds"] == pytest.approx(3.0)
    for pid in (101, 102):  # its processes are gone: does its job still run?
        for f in (tmp_path / "proc" / str(pid)).iterdir():
            f.unlink()
        (tmp_path / "proc" / str(pid)).rmdir()
    sampler.sample_once()
    assert len(asked) == 3 and sampler.take(CID)["cpu_seconds"] == pytest.approx(3.0)


def test_sampler_thread_samples_on_its_own_and_stops(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    sampler = UsageSampler(
        ProcReader(tmp_path / "proc", tmp_path / "x"), lambda: [JOB], lambda: 0.01
    )
    sampler.start()
    wait_until(lambda: sampler.live().get(JOB, {}).get("cpu_percent") is not None, what="2 samples")
    sampler.stop()
    assert not sampler._thread.is_alive()


def test_a_retry_s_container_replaces_the_last_attempt_s(tmp_path):
    fake_proc(tmp_path / "proc", PROCESSES)
    sampler = UsageSampler(ProcReader(tmp_path / "proc", tmp_path / "x"), lambda: [JOB], lambda: 1)
    sampler.sample_once()
    for pid in (101, 102):  # attempt 1 exited: its figures wait for the finisher
        for f in (tmp_path / "proc" / str(pid)).iterdir():
            f.unlink()
        (tmp_path / "proc" / str(pid)).rmdir()
    sampler.sample_once()
    assert sampler.take(CID)["cpu_seconds"] == pytest.approx(3.0)
    retry = ["/usr/bin/conmon", "-c", "e" * 64, "-n", container_name(JOB)]
    fake_proc(
        tmp_path / "proc",
        {
            300: ("conmon", 1, 0, 1, retry, None, 0),
            301: ("sh", 300, TICKS, 10, ["sh"], (0, 0), 40),
        },
    )
    for _ in range(RESCAN_EVERY):  # until a full look finds the new conmon
        sampler.sample_once()
    assert sampler.take(CID) == {}
    assert sampler.live()[JOB]["cpu_seconds"] == pytest.approx(1.0)


def test_an_attempt_records_how_long_it_waited_once_due(tmp_path):
    store = Store(tmp_path / "s" / "choo.db", ChangeFeed())
    store.open()
    try:
        job = store.add_job(
            specs.normalize({"image": "alpine", "command": ["true"]}),
            trigger="rpc",
            queue_limit=10,
        )
        store.transition(job["id"], State.STARTING, new_attempt="rpc")
        (attempt,) = store.attempts(job["id"])
        assert 0 <= attempt["usage"]["queue_wait"] <= attempt["started_at"] - job["submitted_at"]
        # A retry due in the future waits from then, never a negative time.
        store.transition(job["id"], State.RUNNING)
        store.transition(job["id"], State.QUEUED, not_before=time.time() + 3600)
        store.transition(job["id"], State.STARTING, new_attempt="retry")
        assert store.attempts(job["id"])[1]["usage"]["queue_wait"] == 0.0
    finally:
        store.close()

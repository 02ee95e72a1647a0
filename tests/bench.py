"""``make bench``: choo against bare Podman, measured side by side in one run.

Prints medians and ratios, never a verdict: these machines are shared and
noisy, so targets live here as figures to read, not as test assertions.

    .venv/bin/python tests/bench.py [--image REF] [--pairs N] [--only NAME ...]

Benches: run (one short job, end to end), throughput (100 jobs through
max_concurrent=4), end (how soon after a container's FinishedAt its job's
end is recorded: p50/p99), ready (restart while adopting 50 running and 50
exited containers), idle (the agent's CPU and memory with 50 running jobs),
cancel (job.cancel of a running job to its job.wait answer, against its
stop_timeout), socket (on 100,000 finished jobs: agent.ping round trips alone
and under 50 concurrent clients, 50 clients making 3 pings : 1 job.list, the
agent's CPU per call and memory: tests/bench_socket.py), output (`seq 1 200000`
through chooctl run against podman run, with podman's journald log driver as
a reference), follow (how soon a line a running job prints reaches a
follower: p50/p99), logs (lines per second through chooctl logs), history
(job.list, label filters, job.get by prefix and prune on 100,000 finished
jobs: tests/bench_history.py), usage (the agent's CPU with 50 running jobs sampled
at the default usage_interval, and without: tests/bench_usage.py).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.bench_history import bench_history, place_database  # noqa: E402
from tests.bench_restart import bench_idle, bench_ready, load, spread  # noqa: E402
from tests.bench_socket import bench_socket, percentiles  # noqa: E402
from tests.bench_usage import bench_usage  # noqa: E402
from tests.harness import IMAGE, AgentProcess, PodmanService, podman  # noqa: E402

PODMAN_RUN = ["podman", "run", "--rm", "--runtime", "runc", "--network", "none"]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def abba(ours, theirs, pairs: int) -> tuple[list[float], list[float]]:
    """Time ``pairs`` pairs of the two callables, in ABBA order (A B, B A, A B, ...)."""
    mine, others = [], []
    for i in range(pairs):
        if i % 2:
            others.append(theirs())
            mine.append(ours())
        else:
            mine.append(ours())
            others.append(theirs())
    return mine, others


def report(title: str, ours: list[float], theirs: list[float], target: float) -> None:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"\n## {title}")
    print(f"  pairs:           {len(ours)}   ({load()})")
    print(f"  choo:            {spread(ours)}")
    print(f"  podman:          {spread(theirs)}")
    print(f"  ratio:           {spread(ratios, 1.0, '', 3)}   (target <= {target})")


def bench_run(make_agent, image: str, pairs: int) -> None:
    """`chooctl run IMAGE true` against `podman run --rm IMAGE true`, in ABBA order
    (the agent removes a job's container after chooctl exits, which would slow
    whichever always came next)."""
    agent = make_agent()
    ours_argv = [*agent.chooctl_argv(), "run", image, "true"]
    theirs_argv = [*PODMAN_RUN, image, "true"]
    timed(ours_argv), timed(theirs_argv)  # warm-up: page cache, image layers
    ours, theirs = abba(lambda: timed(ours_argv), lambda: timed(theirs_argv), pairs)
    report("chooctl run true vs podman run --rm true", ours, theirs, 1.0)


def bench_throughput(make_agent, image: str, pairs: int, jobs: int = 100) -> None:
    """100 `true` jobs through the agent at max_concurrent=4 vs `xargs -P4 podman run`."""
    agent = make_agent(max_concurrent=4)
    xargs = ["sh", "-c", f"seq {jobs} | xargs -P4 -I{{}} {' '.join(PODMAN_RUN)} {image} true"]

    def through_agent() -> float:
        start = time.perf_counter()
        with agent.client() as client:
            ids = [
                client.call("job.submit", spec={"image": image, "command": ["true"]})["id"]
                for _ in range(jobs)
            ]
            for job_id in ids:
                if client.call("job.wait", id=job_id, timeout=600)["state"] != "succeeded":
                    raise SystemExit(f"bench: job {job_id} did not succeed")
        return time.perf_counter() - start

    ours, theirs = abba(through_agent, lambda: timed(xargs), 5)
    report(f"{jobs} true jobs at max_concurrent=4 vs xargs -P4 podman run", ours, theirs, 1.0)


def _podman_time(text: str) -> float:
    """Seconds since the epoch of Podman's RFC 3339 time with nanoseconds."""
    base, _, rest = text.partition(".")
    digits = "".join(itertools.takewhile(str.isdigit, rest))
    zone = rest[len(digits) :].replace("Z", "+00:00") or "+00:00"
    return datetime.fromisoformat(f"{base}.{digits[:6].ljust(6, '0')}{zone}").timestamp()


def bench_end(make_agent, image: str, pairs: int) -> None:
    """How long after a container's own FinishedAt the agent records its job's end."""
    agent = make_agent(keep_containers=True)
    spec = {"image": image, "command": ["sh", "-c", "sleep 0.3"]}
    lags, answered = [], []
    for _ in range(max(10, pairs * 2)):
        job_id = agent.call("job.submit", spec=spec)["id"]
        if agent.call("job.wait", id=job_id, timeout=120)["state"] != "succeeded":
            raise SystemExit(f"bench: job {job_id} did not succeed")
        waited = time.time()  # the end committed and its event passed to a waiter
        attempt = agent.call("job.get", id=job_id)["attempts"][-1]
        found = podman("--url", agent.podman_url, "inspect", attempt["container_id"])
        finished = _podman_time(json.loads(found.stdout)[0]["State"]["FinishedAt"])
        lags.append(attempt["ended_at"] - finished)
        answered.append(waited - finished)
        podman("--url", agent.podman_url, "rm", "-f", attempt["container_id"], check=False)
    print("\n## job end recorded after the container's own finish time (FinishedAt)")
    print(f"  jobs:            {len(lags)}   ({load()})")
    print(f"  lag:             {percentiles(lags)}   (target p99 < 20 ms)")
    print(f"                   {spread(lags)}")
    print(f"  job.wait answer: {spread(answered)}   (committed, packed, told a waiter)")


def bench_cancel(make_agent, image: str, pairs: int, stop_timeout: int = 2) -> None:
    """job.cancel of a running job until job.wait answers it cancelled."""
    agent = make_agent()
    spec = {"image": image, "command": ["sleep", "300"], "stop_timeout": stop_timeout}
    times = []
    for _ in range(max(3, pairs // 3)):
        job_id = agent.call("job.submit", spec=spec)["id"]
        agent.wait_state(job_id, "running", timeout=120)
        start = time.perf_counter()
        agent.call("job.cancel", id=job_id)
        if agent.call("job.wait", id=job_id, timeout=120)["state"] != "cancelled":
            raise SystemExit(f"bench: job {job_id} was not cancelled")
        times.append(time.perf_counter() - start)
    print(f"\n## job.cancel of a running job to job.wait's answer (stop_timeout {stop_timeout} s)")
    print(f"  cancels:         {len(times)}")
    print(f"  median:          {statistics.median(times) * 1000:8.1f} ms")
    print(f"  min / max:       {min(times) * 1000:.1f} / {max(times) * 1000:.1f} ms")
    print(f"  target:          <= stop_timeout + 5 s = {(stop_timeout + 5) * 1000:.0f} ms")


def bench_output(make_agent, image: str, pairs: int, lines: int = 200_000) -> None:
    """`chooctl run IMAGE seq 1 N` against `podman run --rm IMAGE seq 1 N`."""
    agent = make_agent()
    command = ["seq", "1", str(lines)]
    ours_argv = [*agent.chooctl_argv(), "run", image, *command]
    theirs_argv = [*PODMAN_RUN, image, *command]
    journald_argv = [*PODMAN_RUN, "--log-driver", "journald", image, *command]
    timed(ours_argv), timed(theirs_argv)  # warm-up
    ours, theirs = [], []
    for _ in range(max(3, pairs // 3)):
        ours.append(timed(ours_argv))
        theirs.append(timed(theirs_argv))
    report(f"chooctl run seq 1 {lines} vs podman run --rm", ours, theirs, 1.5)
    try:
        journald = [timed(journald_argv) for _ in range(3)]
    except SystemExit as exc:
        print(f"  podman run --log-driver journald: not measured ({exc})")
    else:
        print(
            f"  podman --log-driver journald median: {statistics.median(journald) * 1000:8.1f} ms"
        )


def bench_follow(make_agent, image: str, pairs: int, count: int = 200) -> None:
    """From a line's record time (when conmon read it) to its arrival at a follower."""
    agent = make_agent()
    script = f"for i in $(seq 1 {count}); do echo $i; usleep 50000; done"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    latencies: list[float] = []

    def on_entry(entry) -> None:
        latencies.append(time.time() - entry["time"])

    with agent.client(timeout=None) as client:
        client.follow(job["id"], on_entry)
    print(f"\n## follow latency: a line every 50 ms, record time to the follower ({count} lines)")
    print(f"  entries:         {len(latencies)}")
    print(f"  latency:         {_follow_percentiles(latencies)}")
    print("  target:          <= 50 ms")


def _follow_percentiles(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return "   ".join(f"p{n} {cuts[n - 1] * 1000:6.1f} ms" for n in (50, 90, 99))


def _follow_one(args: tuple[str, str]) -> list[float]:
    """One follower process: follows one job to its end; the latency of each
    entry printed after it began (earlier ones are a catch-up, not a follow)."""
    from agent.client import Client

    path, job_id = args
    latencies: list[float] = []
    began = time.time()

    def on_entry(entry) -> None:
        if entry["time"] >= began:
            latencies.append(time.time() - entry["time"])

    with Client(Path(path), timeout=None) as client:
        client.follow(job_id, on_entry)
    return latencies


def bench_follow_many(make_agent, image: str, pairs: int, jobs: int = 50, count: int = 100) -> None:
    """Follow latency under load: ``jobs`` running jobs, each printing a line
    every 50 ms and followed by a follower of its own; and the agent's memory
    (VmRSS, sampled every 0.1 s: its peaks are short), while they start and are
    followed, and once the followers are gone."""
    agent = make_agent(max_concurrent=jobs)
    pid = agent.process.pid
    script = f"sleep 2; for i in $(seq 1 {count}); do echo $i; usleep 50000; done"
    ids = [
        agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})["id"]
        for _ in range(jobs)
    ]
    context = multiprocessing.get_context("fork")
    cpu_before = _cpu_seconds(pid)
    with context.Pool(jobs) as pool:
        pending = pool.map_async(_follow_one, [(str(agent.socket), i) for i in ids], chunksize=1)
        peak = _memory(pid)
        while not pending.ready():
            peak = max(peak, _memory(pid))
            pending.wait(0.1)
        latencies = [x for r in pending.get() for x in r]
    cpu = _cpu_seconds(pid) - cpu_before
    after = _memory(pid)
    print(f"\n## follow latency under load: {jobs} jobs, a line every 50 ms each, a follower each")
    print(f"  entries:         {len(latencies)} (of {jobs * count})")
    print(f"  latency:         {_follow_percentiles(latencies)}")
    print("  target:          <= 50 ms")
    print(
        f"  agent VmRSS max: {peak[0]:8.1f} MiB   (target < 100 MiB; {peak[1]:.1f} MiB of it files)"
    )
    print(f"  followers gone:  {after[0]:8.1f} MiB   ({after[1]:.1f} MiB of it files)")
    print(f"  agent CPU:       {cpu:8.1f} s while followed")


def _memory(pid: int) -> tuple[float, float]:
    """A process's resident memory, and the part of it that is mapped files
    (RssFile: its code, and any file it maps, such as journal files), in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "RssFile"))


def _cpu_seconds(pid: int) -> float:
    """A process's user and system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_logs(make_agent, image: str, pairs: int, lines: int = 1_000_000) -> None:
    """Lines per second through `chooctl logs` of an ended job."""
    agent = make_agent()
    job = agent.call("job.submit", spec={"image": image, "command": ["seq", "1", str(lines)]})
    agent.call("job.wait", id=job["id"], timeout=600)
    argv = [*agent.chooctl_argv(), "logs", job["id"]]
    times = [timed(argv) for _ in range(max(3, pairs // 5))]
    best = statistics.median(times)
    print(f"\n## chooctl logs of an ended job of {lines} lines")
    print(f"  median:          {best * 1000:8.1f} ms   ({lines / best:,.0f} lines/s)")


BENCHES = {
    "run": bench_run,
    "throughput": bench_throughput,
    "ready": bench_ready,
    "idle": bench_idle,
    "end": bench_end,
    "cancel": bench_cancel,
    "socket": bench_socket,
    "output": bench_output,
    "follow": bench_follow,
    "follow_many": bench_follow_many,
    "logs": bench_logs,
    "history": bench_history,
    "usage": bench_usage,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=sorted(BENCHES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="choo-bench-") as tmp:
        root = Path(tmp)
        service = PodmanService(root)
        service.start()
        agents: list[AgentProcess] = []

        def make_agent(database: Path | None = None, **settings) -> AgentProcess:
            """A started agent; with ``database``, on a copy of that file."""
            agent_root = root / f"agent{len(agents)}"
            agent_root.mkdir()
            agent = AgentProcess(agent_root, service.url, {"log_level": "info", **settings})
            if database is not None:
                place_database(database, agent.state_dir)
            agents.append(agent)
            return agent.start()

        try:
            benches = {
                **BENCHES,
                "history": functools.partial(bench_history, scratch=root),
                "socket": functools.partial(bench_socket, scratch=root),
            }
            for name in args.only:
                benches[name](make_agent, args.image, args.pairs)
        finally:
            for agent in agents:
                agent.stop()
                agent.remove_containers()
            service.stop()


if __name__ == "__main__":
    main()

"""``make bench``'s socket rows: the agent's JSON-RPC socket on 100,000 finished jobs.

``bench_socket`` starts an agent on tests/bench_history.py's database (built
once per bench run) and times ``agent.ping`` round trips on one connection,
then 50 client processes at once making pings, then 3 pings : 1 ``job.list``
(all states, limit 10: the newest page of ``chooctl ps -a``, as fifty polling
dashboards ask it; the agent keeps a page until the next write), then the same
with every list a page of its own (a cursor of its own: each one a query);
with the agent's CPU per call, which a busy machine's waits for a CPU leave
out, and what of it a ``job.list`` takes (the mixed round's, less its pings at
the pings round's).
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import statistics
import time
from pathlib import Path

from tests.bench_history import HISTORY_JOBS, _cpu_seconds, history_database, settle
from tests.bench_restart import load, rss_mib

_PING = b'{"jsonrpc":"2.0","id":1,"method":"agent.ping"}\n'
#: The mixed load's other call: the newest page of ``chooctl ps -a``, 10 jobs long.
_LIST = b'{"jsonrpc":"2.0","id":2,"method":"job.list","params":{"all":true,"limit":10}}\n'


def _page(cursor: str) -> bytes:
    """A ``job.list`` of the 10 jobs after ``cursor``."""
    params = {"all": True, "limit": 10, "cursor": cursor}
    return (
        json.dumps({"jsonrpc": "2.0", "id": 2, "method": "job.list", "params": params}).encode()
        + b"\n"
    )


def _socket_client(args: tuple[str, int, list[bytes]]) -> list[float]:
    """One client process: ``calls`` round trips on one connection; their latencies.
    Every fourth call the next of ``lists`` (if any), the others ``agent.ping``."""
    path, calls, lists = args
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    reader = sock.makefile("rb")
    latencies = []
    for i in range(calls):
        request = lists[(i // 4) % len(lists)] if lists and i % 4 == 3 else _PING
        start = time.perf_counter()
        sock.sendall(request)
        answer = reader.readline()
        latencies.append(time.perf_counter() - start)
        if b'"error"' in answer or (request is not _PING and answer.count(b'"id"') < 11):
            raise SystemExit(f"bench: the agent answered {answer[:300]!r}")
    sock.close()
    return latencies


def bench_socket(make_agent, image: str, pairs: int, scratch: Path, clients: int = 50) -> None:
    """On an agent holding 100,000 finished jobs (tests/bench_history.py's database):
    agent.ping latency on one connection; the throughput of 50 concurrent clients
    making pings, then 3 pings : 1 ``job.list`` (limit 10); the agent's CPU per call
    (which a busy machine's waits for a CPU leave out) and its memory."""
    agent = make_agent(database=history_database(scratch))
    pid = agent.process.pid
    settle(pid)  # its start-up work on the history done
    rss_before = rss_mib(pid)
    calls = 200 * max(1, pairs)
    _socket_client((str(agent.socket), 200, []))  # warm-up
    before = _cpu_seconds(pid)
    alone = _socket_client((str(agent.socket), calls, []))
    cpu = (_cpu_seconds(pid) - before) / calls
    print(f"\n## socket: agent.ping round trips, one client, {HISTORY_JOBS:,} jobs held")
    print(f"  calls:           {calls}   ({load()})")
    print(f"  latency:         {percentiles(alone)}   (target p50 < 100 us)")
    print(f"  agent CPU:       {cpu * 1e6:7.0f} us/call")
    context = multiprocessing.get_context("fork")
    per_client = 40 * max(1, pairs)
    ping_cpu = 0.0  # the pings round's agent CPU per call
    each = sum(1 for i in range(per_client) if i % 4 == 3)  # a client's lists
    lists = clients * each
    cursors = _ids(agent, lists)
    rounds = [
        ("agent.ping", [[]] * clients),
        ("3 agent.ping : 1 job.list (all, limit 10), the newest page", [[_LIST]] * clients),
        (
            "3 agent.ping : 1 job.list (all, limit 10), every list a page of its own",
            [[_page(c) for c in cursors[n * each : (n + 1) * each]] for n in range(clients)],
        ),
    ]
    for what, client_lists in rounds:
        with context.Pool(clients) as pool:
            before = _cpu_seconds(pid)
            start = time.perf_counter()
            results = pool.map(
                _socket_client,
                [(str(agent.socket), per_client, own) for own in client_lists],
                chunksize=1,
            )
            elapsed = time.perf_counter() - start
            cpu = _cpu_seconds(pid) - before
        latencies = [x for r in results for x in r]
        mixed = bool(client_lists[0])
        target = "   (target >= 5,000)" if mixed else ""
        print(f"\n## socket: {clients} concurrent clients, {what}")
        print(f"  calls:           {len(latencies)} in {elapsed:.2f} s   ({load()})")
        print(f"  throughput:      {len(latencies) / elapsed:8.0f} calls/s{target}")
        print(f"  latency:         {percentiles(latencies)}")
        print(f"  agent CPU:       {cpu / len(latencies) * 1e6:7.0f} us/call")
        if not mixed:
            ping_cpu = cpu / len(latencies)
            continue
        # The round's CPU less its pings' (at the pings round's cost), per job.list.
        list_cpu = (cpu - (len(latencies) - lists) * ping_cpu) / lists
        print(f"  of a job.list:   {list_cpu * 1e6:7.0f} us/call (its pings at the round above's)")
    rss_after = rss_mib(pid)
    print("\n## socket: agent memory (VmRSS)")
    print(f"  before load:     {rss_before:8.1f} MiB")
    print(f"  after load:      {rss_after:8.1f} MiB")


def _ids(agent, count: int) -> list[str]:
    """The IDs of the ``count`` newest jobs (each a cursor: the page after it)."""
    ids: list[str] = []
    with agent.client() as client:
        while len(ids) < count:
            params = {"all": True, "limit": 1000, "cursor": ids[-1] if ids else None}
            ids += [job["id"] for job in client.call("job.list", **params)["jobs"]]
    return ids[:count]


def percentiles(latencies: list[float]) -> str:
    """p50 and p99 of ``latencies`` (seconds), in microseconds."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1e6:7.0f} us   p99 {cuts[98] * 1e6:7.0f} us"

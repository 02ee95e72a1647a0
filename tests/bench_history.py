"""``make bench``'s history rows: the agent's queries on a database of 100,000 finished jobs.

``build_history`` makes that database through the agent's own store: 100
template jobs are submitted and driven to their end with ``Store.add_job``
and ``Store.transition`` (so every row is what the agent itself writes),
then each of the 100,000 jobs is a copy of one template's rows (job,
attempt, events, labels) under its own ULID and times, inserted with the
statements the store's models generate, 5,000 jobs per transaction. The
job_count triggers count them like any other insert. ``bench_history``
then times, through a real agent over its socket, ``agent.ping``,
``job.list`` (limit 50), label filters, ``job.get`` by ID prefix, 50
concurrent clients making mixed calls, ``chooctl run true`` against an agent
with an empty database (ABBA), and a prune of every job (through the agent,
then by the store alone on a copy). Each prune shows its CPU seconds and the
seconds it sat runnable waiting for a CPU (``/proc/.../schedstat``): on a
shared machine that wait, not the work, is often most of the wall time. With
``CHOO_BENCH_HISTORY=prune`` in the environment only the prunes are timed.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path

import peewee as pw
from ulid import ULID

from agent.protocol import spec as specs
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store

#: How many finished jobs the history holds.
HISTORY_JOBS = 100_000
#: How many distinct jobs it is copied from; job i has the label shard=(i % TEMPLATES).
TEMPLATES = 100
#: Jobs inserted per transaction.
BATCH = 5_000
#: The history spans this many seconds before now (within the default retention).
SPAN = 6 * 86400


def _templates(store: Store) -> list[str]:
    """Submit and finish the template jobs, through the store's own transitions."""
    ids = []
    for shard in range(TEMPLATES):
        spec = specs.normalize(
            {
                "image": "alpine",
                "command": ["sh", "-c", f"echo shard {shard}"],
                "name": f"nightly-{shard % 10}",
                "env": {"BUILD": "x" * 40},
                "labels": {"kind": "bench", "shard": str(shard)},
            }
        )
        job_id = store.add_job(spec, trigger="rpc", queue_limit=TEMPLATES + 1)["id"]
        store.transition(job_id, State.STARTING, new_attempt="rpc")
        store.transition(job_id, State.RUNNING)
        failed = shard % 10 == 0
        store.update_attempt(job_id, 1, exit_code=1 if failed else 0, log_shipped=120)
        store.transition(
            job_id,
            State.FAILED if failed else State.SUCCEEDED,
            exit_code=1 if failed else 0,
            reason="exit" if failed else None,
            log_tail="line\n" * 20,
        )
        ids.append(job_id)
    return ids


def _rows(store: Store, job_id: str) -> dict[type[pw.Model], list[dict]]:
    """A job's rows in every table that holds one, by model."""
    m = store.models
    return {
        m.Job: list(m.Job.select().where(m.Job.id == job_id).dicts()),
        m.Attempt: list(m.Attempt.select().where(m.Attempt.job == job_id).dicts()),
        m.Event: list(m.Event.select().where(m.Event.job == job_id).dicts()),
        m.JobLabel: list(m.JobLabel.select().where(m.JobLabel.job == job_id).dicts()),
    }


def _columns(model: type[pw.Model]) -> list[pw.Field]:
    """The fields an insert gives (not an auto-increment key)."""
    return [f for f in model._meta.sorted_fields if not isinstance(f, pw.AutoField)]


def _copy(row: dict, fields: list[pw.Field], job_id: str, shift: float) -> tuple:
    """``row`` as another job's: its ID in the key and the references, times moved."""
    values = []
    for field in fields:
        value = row[field.name]
        if field.name in ("id", "job"):
            value = job_id
        elif isinstance(field, pw.FloatField) and value is not None:
            value += shift
        values.append(value)
    return tuple(values)


def build_history(path: Path, jobs: int = HISTORY_JOBS) -> float:
    """Make the database at ``path``: ``jobs`` finished jobs over the last ``SPAN``.

    Returns:
        The seconds it took.
    """
    start = time.perf_counter()
    store = Store(path, ChangeFeed())
    store.open()
    try:
        templates = _templates(store)
        rows = [_rows(store, job_id) for job_id in templates]
        models = list(rows[0])
        fields = {model: _columns(model) for model in models}
        statements = {
            model: model.insert_many([[None] * len(fields[model])], fields=fields[model]).sql()[0]
            for model in models
        }
        now = time.time()
        for batch in range(0, jobs, BATCH):
            copies: dict[type[pw.Model], list[tuple]] = {model: [] for model in models}
            for i in range(batch, min(batch + BATCH, jobs)):
                when = now - SPAN + i * SPAN / jobs
                job_id = str(ULID.from_timestamp(when))
                template = rows[i % TEMPLATES]
                shift = when - template[store.models.Job][0]["submitted_at"]
                for model in models:
                    copies[model] += [
                        _copy(row, fields[model], job_id, shift) for row in template[model]
                    ]
            with store.writing():
                connection = store.db.connection()
                for model in models:
                    connection.executemany(statements[model], copies[model])
        store.remove_jobs(templates)
        counts = store.counts()
    finally:
        store.close()
    finished = sum(counts[s.value] for s in (State.SUCCEEDED, State.FAILED))
    if finished != jobs:
        raise SystemExit(f"bench: the history holds {finished} finished jobs, not {jobs}")
    return time.perf_counter() - start


def _round_trips(path: Path, requests: list[bytes]) -> list[float]:
    """Send each request on one connection, one at a time; their latencies."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    reader = sock.makefile("rb")
    latencies = []
    for request in requests:
        start = time.perf_counter()
        sock.sendall(request)
        answer = reader.readline()
        latencies.append(time.perf_counter() - start)
        if b'"error"' in answer:
            raise SystemExit(f"bench: the agent answered {answer[:300]!r}")
    sock.close()
    return latencies


def _request(method: str, **params) -> bytes:
    request = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params:
        request["params"] = params
    return json.dumps(request).encode() + b"\n"


def _show(title: str, agent, requests: list[bytes], target_ms: float) -> None:
    """Time ``requests`` one at a time; with the agent's CPU per call (all its
    threads, the ended ones too), which a busy machine's waits for a CPU leave out."""
    before = _cpu_seconds(agent.process.pid)
    latencies = _round_trips(agent.socket, requests)
    cpu = (_cpu_seconds(agent.process.pid) - before) / len(requests)
    cuts = statistics.quantiles(latencies, n=10)
    print(
        f"  {title:28s} p50 {statistics.median(latencies) * 1000:6.2f} ms   "
        f"p90 {cuts[8] * 1000:6.2f} ms   max {max(latencies) * 1000:6.2f} ms   "
        f"agent CPU {cpu * 1000:5.2f} ms/call   (target < {target_ms:g} ms)"
    )


_HISTORY: dict[str, Path] = {}


def history_database(scratch: Path) -> Path:
    """The 100k-job database of this bench run, built on first use."""
    if "path" not in _HISTORY:
        path = scratch / "history" / "choo.db"
        seconds = build_history(path)
        print(f"\n## history: {HISTORY_JOBS:,} finished jobs built through the store")
        print(f"  built in:        {seconds:8.1f} s")
        _HISTORY["path"] = path
    return _HISTORY["path"]


def _mixed_client(args: tuple[str, list[bytes]]) -> list[float]:
    """One client process of the mixed load: its requests on one connection."""
    path, requests = args
    return _round_trips(Path(path), requests)


def _mixed_load(agent, ids: list[str], clients: int, per_client: int) -> None:
    """``clients`` processes at once, each call in four: 2 pings, 1 ``job.list``
    (limit 10), 1 ``job.get`` by prefix."""
    picks = random.Random(50).choices(ids, k=per_client)
    requests = []
    for i, job_id in enumerate(picks):
        if i % 4 == 2:
            requests.append(_request("job.list", all=True, limit=10))
        elif i % 4 == 3:
            requests.append(_request("job.get", id=job_id[:12]))
        else:
            requests.append(_request("agent.ping"))
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        before = _cpu_seconds(agent.process.pid)
        start = time.perf_counter()
        results = pool.map(_mixed_client, [(str(agent.socket), requests)] * clients, chunksize=1)
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds(agent.process.pid) - before
    latencies = [x for r in results for x in r]
    cuts = statistics.quantiles(latencies, n=100)
    print(f"\n## history: {clients} clients at once, 2 pings : 1 job.list : 1 job.get")
    print(f"  calls:           {len(latencies)} in {elapsed:.2f} s")
    print(f"  throughput:      {len(latencies) / elapsed:8.0f} calls/s   (target >= 5,000)")
    print(f"  latency:         p50 {cuts[49] * 1000:6.2f} ms   p99 {cuts[98] * 1000:6.2f} ms")
    print(
        f"  agent CPU:       {cpu / len(latencies) * 1e6:8.0f} us/call"
        f"   ({len(latencies) / cpu:,.0f} calls per CPU-second)"
    )


def _timed_run(agent, image: str) -> float:
    argv = [*agent.chooctl_argv(), "run", image, "true"]
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def _run_ratio(full, empty, image: str, pairs: int) -> None:
    """``chooctl run true`` on the 100k agent against one with an empty database, ABBA."""
    _timed_run(full, image), _timed_run(empty, image)  # warm-up
    ratios = []
    for i in range(max(2, pairs)):
        if i % 2:
            ours, base = _timed_run(full, image), _timed_run(empty, image)
        else:
            base, ours = _timed_run(empty, image), _timed_run(full, image)
        ratios.append(ours / base)
    cuts = statistics.quantiles(ratios, n=10)
    print(f"\n## history: chooctl run true, {HISTORY_JOBS:,} finished jobs / an empty database")
    print(
        f"  ratio:           median {statistics.median(ratios):.3f}   p90 {cuts[8]:.3f}"
        f"   max {max(ratios):.3f}   ({len(ratios)} pairs, ABBA; target <= 1.05)"
    )


def _sched(pid: int) -> tuple[float, float]:
    """Seconds on a CPU and seconds runnable but waiting for one, over the threads
    alive (the prune's, still connected, among them)."""
    on_cpu = waiting = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "schedstat").read_text().split()
            on_cpu += int(fields[0]) / 1e9
            waiting += int(fields[1]) / 1e9
    return on_cpu, waiting


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, idle: float = 0.05, longest: float = 600.0) -> float:
    """Wait until the agent uses less than ``idle`` of a CPU over a second (its
    start-up work on the history done), at most ``longest`` seconds.

    Returns:
        The seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < longest:
        before = _cpu_seconds(pid)
        time.sleep(1.0)
        if _cpu_seconds(pid) - before < idle:
            break
    return time.monotonic() - start


def bench_history(make_agent, image: str, pairs: int, scratch: Path) -> None:
    """job.list, label filters, job.get by prefix and prune on 100,000 finished jobs."""
    source = history_database(scratch)
    started = time.perf_counter()
    agent = make_agent(database=source)
    ready = time.perf_counter() - started
    waited = settle(agent.process.pid)
    print("\n## history: the agent on it")
    print(f"  ready after:     {ready:8.2f} s")
    print(f"  then busy for:   {waited:8.1f} s   (CPU under 5 % from then on)")
    if os.environ.get("CHOO_BENCH_HISTORY") != "prune":
        _queries(agent, make_agent, image, pairs)
    _prunes(agent, source, scratch)


def _queries(agent, make_agent, image: str, pairs: int) -> None:
    """Time the queries, the mixed load and ``chooctl run`` on the history's agent."""
    with agent.client() as client:
        ids = [j["id"] for j in client.call("job.list", all=True, limit=1000)["jobs"]]
    calls = 50 * max(1, pairs)
    print(f"\n## history: queries through the agent's socket ({calls} calls each)")
    # Each call a page of its own (a cursor of its own): the agent keeps a page
    # until the next write, and the same page again measures that, not the query.
    cursors = random.Random(7).choices(ids, k=calls)

    def pages(**params) -> list[bytes]:
        return [_request("job.list", cursor=cursor, **params) for cursor in cursors]

    rows = [
        # The round trip alone, to read the others against on a busy machine.
        ("agent.ping (reference)", [_request("agent.ping")] * calls, 0.1),
        ("job.list limit 50", pages(all=True, limit=50), 5),
        (
            "job.list limit 50, one page again (kept)",
            [_request("job.list", all=True, limit=50)] * calls,
            5,
        ),
        ("job.list label shard=42", pages(label="shard=42", limit=50), 20),
        ("job.list labels kind, shard", pages(label=["kind=bench", "shard=42"], limit=50), 20),
        ("job.list state=failed", pages(state="failed", limit=50), 5),
    ]
    for title, requests, target in rows:
        _round_trips(agent.socket, requests[:5])  # warm-up
        _show(title, agent, requests, target)
    picks = random.Random(13).choices(ids, k=calls)
    gets = [_request("job.get", id=job_id[:12].lower()) for job_id in picks]
    _show("job.get by 12-char prefix", agent, gets, 2)
    _mixed_load(agent, ids, clients=50, per_client=8 * max(1, pairs))
    _run_ratio(agent, make_agent(), image, pairs)


def _prunes(agent, source: Path, scratch: Path) -> None:
    """Time a prune of every job through ``agent``, then by the store alone on a copy."""
    print("\n## history: job.prune of every finished job   (target < 5 s)")
    with agent.client(timeout=600) as client:
        before = _sched(agent.process.pid)
        start = time.perf_counter()
        pruned = client.call("job.prune", older_than=0)["count"]
        elapsed = time.perf_counter() - start
        after = _sched(agent.process.pid)
        left = client.call("agent.info")["jobs"]
    _show_prune("through the agent", pruned, elapsed, before, after)
    print(f"  left:              {sum(left.values())} jobs")
    copy = scratch / "history-prune" / "choo.db"
    place_database(source, copy.parent)
    store = Store(copy, ChangeFeed())
    store.open()
    try:
        before = _sched(os.getpid())
        start = time.perf_counter()
        removed = store.remove_jobs(store.prunable(ended_before=time.time()))
        elapsed = time.perf_counter() - start
        after = _sched(os.getpid())
    finally:
        store.close()
    _show_prune("the store alone", len(removed), elapsed, before, after)


def _show_prune(title: str, count: int, elapsed: float, before, after) -> None:
    print(
        f"  {title + ':':18s} {count:,} in {elapsed:6.2f} s   (CPU {after[0] - before[0]:.2f} s,"
        f" waiting for a CPU {after[1] - before[1]:.2f} s)"
    )


def place_database(source: Path, state_dir: Path) -> None:
    """Copy a built database into an agent's state directory (before it starts)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, state_dir / "choo.db")

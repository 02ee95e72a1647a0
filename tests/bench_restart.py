"""``make bench``'s restart and idle rows: READY while adopting 100 containers,
and what 50 running jobs cost the agent at rest.

ready: the agent stopped with 50 jobs running and 50 more whose containers
exit while it is down; started again, it reports READY once it has adopted
the running ones and recorded the ends of the others (target < 1 s). idle:
the agent's CPU time over windows with 50 ``sleep`` jobs running, default
settings (usage sampling on), and its RSS (targets < 2 % of one core,
< 100 MiB). Prints figures, never a verdict.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from pathlib import Path

from tests.bench_usage import WINDOW
from tests.bench_usage import _share as cpu_share
from tests.harness import wait_until


def load() -> str:
    """The host's load averages, printed with every row: the box is shared."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def spread(values: list[float], scale: float = 1000.0, unit: str = "ms", digits: int = 1) -> str:
    """Median, p90 and max of ``values`` (times ``scale``, in ``unit``); p90
    within the values measured (never extrapolated past the max)."""
    p90 = (
        statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    )
    return "   ".join(
        f"{name} {value * scale:8.{digits}f} {unit}".rstrip()
        for name, value in (
            ("median", statistics.median(values)),
            ("p90", p90),
            ("max", max(values)),
        )
    )


def rss_mib(pid: int) -> float:
    """A process's resident memory, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_ready(make_agent, image: str, pairs: int, running: int = 50, exited: int = 50) -> None:
    """Agent start to ready while it adopts 50 running containers and 50 that exited
    while it was down (their ends recorded before READY)."""
    agent = make_agent(max_concurrent=running + exited)
    runners = [
        agent.call("job.submit", spec={"image": image, "command": ["sleep", "3600"]})["id"]
        for _ in range(running)
    ]
    for job_id in runners:
        agent.wait_state(job_id, "running", timeout=300)
    times: list[float] = []
    pings: list[float] = []
    infos: list[float] = []
    for _ in range(3):
        enders = [
            agent.call("job.submit", spec={"image": image, "command": ["sleep", "15"]})["id"]
            for _ in range(exited)
        ]
        for job_id in enders:
            agent.wait_state(job_id, "running", timeout=300)
        agent.stop()
        names = {f"choo-{job_id}" for job_id in enders}
        wait_until(
            lambda names=names: all(
                c["State"] == "exited" for c in agent.containers() if names & set(c["Names"])
            ),
            timeout=120,
            what="the jobs' containers exited while the agent was down",
        )
        ready, ping, info = _timed_start(agent)
        times.append(ready)
        pings.append(ping)
        infos.append(info)
        states = {agent.call("job.get", id=i)["state"] for i in enders}
        if states != {"succeeded"}:
            raise SystemExit(f"bench: the exited jobs are {states} at READY, not succeeded")
    if {agent.call("job.get", id=i)["state"] for i in runners} != {"running"}:
        raise SystemExit("bench: the adopted jobs are not running")
    for job_id in runners:
        agent.call("job.cancel", id=job_id)
    # The agent removes them in parallel; left to the bench's teardown, they
    # would go one `podman rm -f` at a time (minutes under load).
    wait_until(lambda: not agent.containers(), timeout=300, what="the runners' containers gone")
    print(f"\n## agent start to ready, adopting {running} running and {exited} exited containers")
    print(f"  restarts:        {len(times)}   ({load()})")
    print(f"  start to READY:  {spread(times)}   (target < 1000 ms)")
    print(f"  first ping:      {spread(pings)}")
    print(f"  first info:      {spread(infos)}")
    # The agent's own account of each restart (its READY line), step by step.
    for line in [line for line in agent.log().splitlines() if " ready in " in line][-len(times) :]:
        print(f"  agent: {line.partition(' ready in ')[2].partition(': socket')[0]}")


def _timed_start(agent) -> tuple[float, float, float]:
    """Start ``agent`` as systemd would; seconds from the start to READY=1 on its
    notify socket, to its first ``agent.ping`` answer, and to its first ``agent.info``."""
    path = agent.root / "notify.sock"
    path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        os.chmod(path, 0o777)
        notify.settimeout(120)
        start = time.perf_counter()
        agent.start(wait=False, env={"NOTIFY_SOCKET": str(path)})
        while b"READY=1" not in notify.recv(65536).split(b"\n"):
            pass
        ready = time.perf_counter() - start
    wait_until(lambda: _answers(agent, "agent.ping"), 60, "the agent to answer", interval=0.001)
    ping = time.perf_counter() - start
    agent.call("agent.info")
    return ready, ping, time.perf_counter() - start


def _answers(agent, method: str) -> bool:
    try:
        agent.call(method)
    except Exception:
        return False
    return True


def bench_idle(make_agent, image: str, pairs: int, running: int = 50) -> None:
    """The agent's CPU (defaults, usage sampling included) and RSS with 50 jobs running."""
    agent = make_agent(max_concurrent=running)
    ids = [
        agent.call("job.submit", spec={"image": image, "command": ["sleep", "3600"]})["id"]
        for _ in range(running)
    ]
    for job_id in ids:
        agent.wait_state(job_id, "running", timeout=300)
    pid = agent.process.pid
    shares = [cpu_share(pid) for _ in range(3)]
    rss = rss_mib(pid)
    for job_id in ids:
        agent.call("job.cancel", id=job_id)
    print(f"\n## agent idle with {running} running jobs ({len(shares)} windows of {WINDOW:.0f} s)")
    print(f"  cpu:             {spread(shares, 1.0, '%')}   (target < 2 %; {load()})")
    print(f"  rss:             {rss:8.1f} MiB   (target < 100 MiB)")

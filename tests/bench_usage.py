"""``make bench``'s usage row: what sampling 50 running jobs costs the agent.

The agent's own CPU time (utime + stime of /proc/PID/stat) over a window with
50 ``sleep`` jobs running, at the default ``usage_interval``, then again with
sampling turned off by a reload (``usage_interval = 0``, SIGHUP): the
difference is the sampler's share (target < 2 % of one core).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.harness import wait_until

#: Seconds each measurement lasts.
WINDOW = 20.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _share(pid: int) -> float:
    """The agent's CPU over one window, in % of one core."""
    start_cpu, start = _cpu_seconds(pid), time.monotonic()
    time.sleep(WINDOW)
    return 100 * (_cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def bench_usage(make_agent, image: str, pairs: int, running: int = 50) -> None:
    """Agent CPU with ``running`` jobs sampled at the default interval, and without."""
    agent = make_agent(max_concurrent=running)
    ids = [
        agent.call("job.submit", spec={"image": image, "command": ["sleep", "600"]})["id"]
        for _ in range(running)
    ]
    for job_id in ids:
        agent.wait_state(job_id, "running", timeout=600)
    sampled = agent.call("job.top")
    seen = sum(1 for entry in sampled if entry["memory"] is not None)
    pid = agent.process.pid
    on = _share(pid)
    agent.write_config(usage_interval=0)
    reloads = agent.log().count("configuration reloaded")
    agent.process.send_signal(signal.SIGHUP)
    wait_until(
        lambda: agent.log().count("configuration reloaded") > reloads, 30, "the reload applied"
    )
    off = _share(pid)
    for job_id in ids:
        agent.call("job.cancel", id=job_id)
    for job_id in ids:
        agent.call("job.wait", id=job_id, timeout=600)
    print(f"\n## usage sampling: agent CPU with {running} running jobs ({seen} sampled)")
    print(f"  sampling on (1 s):  {on:6.2f} % of one core over {WINDOW:.0f} s")
    print(f"  sampling off:       {off:6.2f} %")
    print(f"  sampler's share:    {on - off:6.2f} %   (target < 2 %)")

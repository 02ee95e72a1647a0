"""Usage per attempt against real rootless Podman (cgroup v1 here: sampled).

A job burns CPU for about 2 s, then holds about 64 MiB resident (busybox
``tail`` buffering 64 MiB without a newline until its input ends), then prints
its own shell's CPU ticks (utime, stime, cutime, cstime of /proc/$$/stat: all
it and its reaped children used). The agent's record of the attempt carries a
CPU time within 30 % of the job's own count (the count, not the wall 2 s: on a
busy two-core machine 2 s of wall time may be 0.7 s of CPU) and a peak memory
within 30 % of 64 MiB, marked ``sampled``; ``chooctl ps -a`` shows both.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

pytestmark = pytest.mark.podman

MIB = 1 << 20
SCRIPT = (
    "timeout 2 sh -c 'while :; do :; done'; "
    "{ head -c 67108864 /dev/zero; sleep 2; } | tail > /dev/null; "
    "cat /proc/$$/stat; "
    # Long enough for the sampler's last look to see the final figures.
    "sleep 1"
)


def chooctl(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*agent.chooctl_argv(), *args], capture_output=True, timeout=300, check=False, text=True
    )


def test_cpu_time_and_peak_memory_of_an_attempt_are_recorded(make_agent, image):
    agent = make_agent(usage_interval=0.2).start()
    done = chooctl(agent, "run", "--memory", "512m", image, "sh", "-c", SCRIPT)
    assert done.returncode == 0, done.stderr[-2000:]
    fields = done.stdout.strip().splitlines()[-1].rsplit(")", 1)[1].split()
    own_cpu = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    assert own_cpu > 0.1, done.stdout
    job_id = json.loads(chooctl(agent, "ps", "-a", "--json").stdout)[0]["id"]
    record = agent.call("job.get", id=job_id)
    usage = record["attempts"][0]["usage"]
    assert usage["sampled"] is True
    assert usage["cpu_seconds"] == pytest.approx(own_cpu, rel=0.3), (usage, own_cpu)
    assert usage["memory_peak"] == pytest.approx(64 * MIB, rel=0.3), usage
    assert usage["pids_peak"] >= 3  # the shell, head and tail at once
    assert usage["io_read"] is not None and usage["io_write"] is not None
    assert usage["wall_seconds"] >= 4.0
    assert 0 <= usage["queue_wait"] < usage["wall_seconds"]
    # The listing's compact column and its JSON carry the same figures.
    listing = json.loads(chooctl(agent, "ps", "-a", "--json").stdout)[0]
    assert listing["usage"] == {
        "cpu_seconds": usage["cpu_seconds"],
        "memory_peak": usage["memory_peak"],
    }
    table = chooctl(agent, "ps", "-a").stdout.splitlines()
    assert table[0].split()[-1] == "USAGE"
    assert table[1].split()[-1].endswith("M") and "s/" in table[1].split()[-1]


def test_no_usage_is_recorded_with_sampling_off(make_agent, image):
    agent = make_agent(usage_interval=0).start()
    done = chooctl(agent, "run", image, "sh", "-c", "sleep 1")
    assert done.returncode == 0, done.stderr[-2000:]
    job_id = json.loads(chooctl(agent, "ps", "-a", "--json").stdout)[0]["id"]
    usage = agent.call("job.get", id=job_id)["attempts"][0]["usage"]
    assert usage["cpu_seconds"] is None and usage["memory_peak"] is None
    assert usage["wall_seconds"] >= 1.0 and usage["queue_wait"] is not None

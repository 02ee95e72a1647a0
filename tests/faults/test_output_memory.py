"""2 GB of job output streams through the agent in bounded memory.

A job prints 2,000,000,000 bytes (lines of 64 KiB) and fails; ``chooctl logs
-f`` follows it to the end while the test samples the agent's resident memory
(VmRSS in /proc/PID/status). The agent's RSS stays under 256 MiB throughout:
no reply or notification holds the log, and the failure's log tail is read
from the end of the file, not the whole of it. Every byte arrives once.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

pytestmark = pytest.mark.podman

TOTAL = 2_000_000_000
RSS_LIMIT_KIB = 256 * 1024


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_two_gigabytes_of_output_keep_the_agent_under_256_mib(agent, image):
    script = f"yes \"$(head -c 65535 /dev/zero | tr '\\0' x)\" | head -c {TOTAL}; exit 1"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    peak = {"kib": vm_rss_kib(agent.process.pid)}
    done = threading.Event()

    def sample() -> None:
        # Sampling, not synchronising: the follow below decides when the test goes on.
        while not done.wait(0.05):
            peak["kib"] = max(peak["kib"], vm_rss_kib(agent.process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    follow = subprocess.Popen(
        [*agent.chooctl_argv(), "logs", "-f", job["id"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    received = 0
    newlines = 0
    while chunk := follow.stdout.read(1 << 20):
        received += len(chunk)
        newlines += chunk.count(b"\n")
    assert follow.wait(60) == 0, follow.stderr.read()[-2000:]
    ended = agent.call("job.wait", id=job["id"], timeout=600)
    done.set()
    sampler.join()
    assert received == TOTAL and newlines == TOTAL // 65536
    assert ended["state"] == "failed" and 0 < len(ended["log_tail"]) <= 64 * 1024
    assert peak["kib"] < RSS_LIMIT_KIB, f"the agent's RSS reached {peak['kib'] // 1024} MiB"

"""``chooctl top`` against a real agent: under a pseudo-terminal it shows a
running job and redraws in place with its CPU %; ``--no-stream`` prints one
table and ``--json`` the entries."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess

import pytest

from tests.harness import wait_until

pytestmark = pytest.mark.podman

CLEAR = b"\x1b[H\x1b[2J"


def chooctl(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*agent.chooctl_argv(), *args], capture_output=True, timeout=300, check=False, text=True
    )


def test_top_shows_a_running_job_live_on_a_terminal(make_agent, image):
    agent = make_agent(usage_interval=0.2).start()
    job_id = chooctl(agent, "submit", "--name", "spin", image, "sh", "-c", "while :; do :; done")
    job_id = job_id.stdout.strip()
    wait_until(lambda: agent.call("job.get", id=job_id)["state"] == "running", what="running")
    main, child = pty.openpty()
    top = subprocess.Popen(
        [*agent.chooctl_argv(), "top", "--interval", "0.2"],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "NO_COLOR": "1"},
    )
    os.close(child)
    seen = bytearray()

    def frames() -> list[bytes]:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            seen.extend(os.read(main, 65536))
        return [frame for frame in bytes(seen).split(CLEAR)[1:] if frame.count(b"\n") >= 2]

    def with_cpu() -> list[bytes]:
        # A frame whose job row has a CPU % measured (the sampler's second look).
        pattern = re.compile(rb"%s\s+spin\s+\S+\s+\d+\.\d\s" % job_id.encode())
        return [frame for frame in frames() if pattern.search(frame)]

    try:
        wait_until(lambda: len(with_cpu()) >= 2, what="two refreshes with the job's CPU %")
        header = with_cpu()[-1].splitlines()[0].decode()
        assert header.split()[:4] == ["ID", "NAME", "IMAGE", "CPU"]
        top.send_signal(signal.SIGINT)
        assert top.wait(timeout=60) == 0
    finally:
        if top.poll() is None:
            top.kill()
        os.close(main)
    once = chooctl(agent, "top", "--no-stream")
    assert once.returncode == 0 and CLEAR.decode() not in once.stdout
    assert job_id in once.stdout.splitlines()[1]
    (entry,) = json.loads(chooctl(agent, "top", "--no-stream", "--json").stdout)
    assert entry["id"] == job_id and entry["state"] == "running"
    assert entry["memory"] > 0 and entry["sampled"] is True
    chooctl(agent, "cancel", job_id)
    wait_until(lambda: agent.call("job.get", id=job_id)["state"] == "cancelled", what="cancelled")

"""``max_log_bytes`` against real Podman: a job's output past its cap is dropped.

A job prints about 200 KB with a cap of 10 KiB. ``chooctl run`` prints a
prefix of what ``podman run --rm`` prints, cut at a record (so at most the cap,
and more than the cap less one 8 KiB record); the job succeeds, its record says
how much was dropped, chooctl says so on stderr, and the log file on disk is
cut back to what was kept. With ``log_limit_action = "fail"`` the job is
stopped and fails with reason ``log_limit``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from agent.adapters.joblogs import JobLogs, records
from tests.harness import wait_until
from tests.integration.test_output import podman_run

pytestmark = pytest.mark.podman

CAP = 10 * 1024
#: About 200 KB of output, in lines of up to 6 bytes.
SCRIPT = "seq 1 40000"
#: The most output of one k8s-file record (conmon's buffer).
RECORD = 8 * 1024


def chooctl(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*agent.chooctl_argv(), *args], capture_output=True, timeout=300, check=False
    )


def kept_in_file(agent, job_id: str) -> bytes:
    path = JobLogs(agent.state_dir / "logs").path(job_id, 1)
    return b"".join(record.data for record in records(path))


def test_output_past_the_cap_is_dropped_and_said_so(agent, image):
    reference, _ = podman_run(image, SCRIPT)
    assert len(reference) > 20 * CAP
    done = chooctl(agent, "run", "--max-log-bytes", "10k", image, "sh", "-c", SCRIPT)
    assert done.returncode == 0, done.stderr[-2000:]
    kept = done.stdout
    assert reference.startswith(kept)
    assert CAP - RECORD < len(kept) <= CAP
    job_id = json.loads(chooctl(agent, "ps", "-a", "--json").stdout)[0]["id"]
    record = agent.call("job.get", id=job_id)
    assert record["state"] == "succeeded"
    assert record["spec"]["max_log_bytes"] == CAP
    assert record["log_dropped"] > 0
    notice = f"chooctl: job {job_id}: output past max_log_bytes ({CAP}) was dropped"
    assert notice in done.stderr.decode()
    # The shipper cuts the file back to what was kept, once the job has ended.
    wait_until(lambda: kept_in_file(agent, job_id) == kept, what="the log cut to the cap")
    logs = chooctl(agent, "logs", job_id)
    assert logs.stdout == kept and notice in logs.stderr.decode()
    cuts = [e["detail"] for e in record["events"] if e["kind"] == "output-cut"]
    assert [(c["attempt"], c["max_log_bytes"]) for c in cuts] == [(1, CAP)]
    # ps --json and inspect carry the count too
    listed = json.loads(chooctl(agent, "ps", "-a", "--json").stdout)[0]
    inspected = json.loads(chooctl(agent, "inspect", job_id).stdout)[0]
    assert listed["log_dropped"] == inspected["log_dropped"] >= record["log_dropped"]


def test_with_log_limit_action_fail_the_job_fails_log_limit(make_agent, image):
    agent = make_agent(log_limit_action="fail").start()
    script = f"{SCRIPT}; exec sleep 600"
    done = chooctl(
        agent, "run", "--max-log-bytes", "10k", "--stop-timeout", "1", image, "sh", "-c", script
    )
    assert done.returncode != 0
    assert "failed: log_limit" in done.stderr.decode()
    assert len(done.stdout) <= CAP
    job_id = json.loads(chooctl(agent, "ps", "-a", "--json").stdout)[0]["id"]
    record = agent.call("job.get", id=job_id)
    assert (record["state"], record["reason"]) == ("failed", "log_limit")
    assert record["log_dropped"] > 0

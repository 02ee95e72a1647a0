"""Reruns through chooctl, the real agent and Podman: one job with a changed
variable, and every failed job since a time, once."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.podman


def test_a_rerun_with_a_changed_variable_succeeds(agent, image):
    first = agent.run_to_end("-e", "CODE=3", image, "sh", "-c", 'echo "code $CODE"; exit $CODE')
    assert first["state"] == "failed"
    done = agent.chooctl("rerun", first["id"][:12], "-e", "CODE=0")
    assert done.returncode == 0, done.stderr
    rerun_id = done.stdout.strip()
    rerun = agent.call("job.wait", id=rerun_id, timeout=120)
    assert (rerun["state"], rerun["trigger"], rerun["rerun_of"]) == (
        "succeeded",
        "rerun",
        first["id"],
    )
    assert agent.output_lines(rerun_id) == ["code 0"]


def test_rerun_failed_reruns_each_failed_job_since_a_time_once(agent, image):
    flaky = [
        agent.run_to_end("--name", "batch", image, "sh", "-c", "exit 1")["id"] for _ in range(2)
    ]
    good = agent.run_to_end("--name", "batch", image, "true")["id"]
    other = agent.run_to_end("--name", "other", image, "sh", "-c", "exit 2")["id"]
    done = agent.chooctl("rerun", "--failed", "--since", "1h", "--name", "batch")
    assert done.returncode == 0, done.stderr
    new = done.stdout.split()
    reruns = [agent.call("job.wait", id=job_id, timeout=120) for job_id in new]
    assert [job["rerun_of"] for job in reruns] == flaky
    assert good not in {job["rerun_of"] for job in reruns}
    # Once: the failed reruns of the first round are rerun, their originals are not.
    again = agent.chooctl("rerun", "--failed", "--name", "batch").stdout.split()
    assert [agent.call("job.get", id=job_id)["rerun_of"] for job_id in again] == new
    for job_id in again:
        agent.call("job.wait", id=job_id, timeout=120)
    assert agent.call("job.get", id=other)["state"] == "failed"
    refused = agent.chooctl("rerun", "--failed", other)
    assert refused.returncode != 0 and "not both" in refused.stderr

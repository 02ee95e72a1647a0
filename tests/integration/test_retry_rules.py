"""Retry rules (``--retry-on``) through the real agent and Podman: an exit code
named is retried and another is not; a lost container is retried. (An OOM kill
cannot happen on this host: tests/unit/test_controller.py covers it.)"""

from __future__ import annotations

import json

import pytest

from tests.harness import HOLD, podman, release

pytestmark = pytest.mark.podman


@pytest.fixture
def quick(make_agent):
    """An agent whose retries follow at once (the backoff is not what is tested)."""
    return make_agent(retry_backoff_base=0.05, retry_backoff_cap=0.1).start()


def run_detached(agent, *args):
    done = agent.chooctl("run", "-d", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def attempts(agent, job_id):
    agent.call("job.wait", id=job_id, timeout=120)
    return json.loads(agent.chooctl("inspect", job_id).stdout)[0]["attempts"]


def test_an_exit_code_named_is_retried_and_another_is_not(quick, image):
    rule = ["--retries", "2", "--retry-on", "exit:75", "--retry-on", "lost"]
    flaky = run_detached(quick, *rule, image, "sh", "-c", "exit 75")
    broken = run_detached(quick, *rule, image, "sh", "-c", "exit 1")
    tries = attempts(quick, flaky)
    assert [a["exit_code"] for a in tries] == [75, 75, 75]
    assert [a["retry"] for a in tries] == [
        "retried: exit code 75 is in retry_on.exit_codes (2 retries left)",
        "retried: exit code 75 is in retry_on.exit_codes (1 retries left)",
        "not retried: exit code 75 is in retry_on.exit_codes, but no retries are left",
    ]
    [once] = attempts(quick, broken)
    assert (once["exit_code"], once["retry"]) == (
        1,
        "not retried: exit code 1 is not in retry_on.exit_codes",
    )
    job = quick.call("job.get", id=broken)
    assert (job["state"], job["reason"], job["retries_left"]) == ("failed", "exit", 2)


def test_a_lost_container_is_retried_when_the_rule_names_lost(quick, image):
    job_id = run_detached(
        quick, "--retries", "1", "--retry-on", "lost", image, "sh", "-c", f"{HOLD}; exit 0"
    )
    quick.wait_state(job_id, "running")
    podman("--url", quick.podman_url, "rm", "-f", f"choo-{job_id}")
    quick.wait_job(job_id, lambda j: j["attempt"] == 2 and j["state"] == "running", "attempt 2")
    release(quick.podman_url, job_id)
    first, second = attempts(quick, job_id)
    assert (first["reason"], first["retry"]) == (
        "lost",
        "retried: lost is in retry_on.reasons (1 retries left)",
    )
    assert second["exit_code"] == 0 and second["trigger"] == "retry"
    assert quick.call("job.get", id=job_id)["state"] == "succeeded"


def test_without_the_rule_a_failure_of_another_kind_is_not_retried(quick, image):
    job_id = run_detached(quick, "--retries", "2", "--retry-on", "exit:75", image, "sh", "-c", HOLD)
    quick.wait_state(job_id, "running")
    podman("--url", quick.podman_url, "rm", "-f", f"choo-{job_id}")
    [only] = attempts(quick, job_id)
    assert (only["reason"], only["retry"]) == (
        "lost",
        "not retried: lost is not retried (not in retry_on.reasons)",
    )

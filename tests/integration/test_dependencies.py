"""Dependencies (``--after``) through the real agent and Podman: chains of three with
each condition, a cascade through two levels, pruning, and an agent SIGKILL while
the middle job runs."""

from __future__ import annotations

import json
import signal

import pytest

from tests.harness import HOLD, release

pytestmark = pytest.mark.podman


def submit(agent, image, script, *after):
    options = [item for ref in after for item in ("--after", ref)]
    done = agent.chooctl("submit", *options, image, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def ended(agent, job_id):
    """The job's full record (with attempts and events) once it has ended."""
    agent.call("job.wait", id=job_id, timeout=120)
    return agent.call("job.get", id=job_id)


def outcome(job):
    return job["state"], job["reason"]


@pytest.mark.parametrize(("condition", "code"), [("ok", 0), ("failed", 3), ("any", 0), ("any", 3)])
def test_a_chain_of_three_runs_in_order_when_each_condition_is_met(agent, image, condition, code):
    first = submit(agent, image, f"{HOLD}; exit {code}")
    # A prefix will do, in either case.
    second = submit(agent, image, "echo second", f"{first[:16].lower()}:{condition}")
    third = submit(agent, image, "echo third", second)
    agent.wait_state(first, "running")
    ps = agent.chooctl("ps").stdout
    assert f"queued (after {first[:10]})" in ps and f"queued (after {second[:10]})" in ps
    [dependency] = agent.call("job.get", id=second)["dependencies"]
    assert dependency == {
        "id": first,
        "condition": condition,
        "state": "running",
        "verdict": "wait",
    }
    release(agent.podman_url, first)
    assert ended(agent, first)["exit_code"] == code
    assert outcome(ended(agent, second)) == ("succeeded", None)
    assert outcome(ended(agent, third)) == ("succeeded", None)
    # Each started only after the one before had ended.
    assert ended(agent, second)["started_at"] >= ended(agent, first)["ended_at"]
    assert ended(agent, third)["started_at"] >= ended(agent, second)["ended_at"]
    inspected = json.loads(agent.chooctl("inspect", third).stdout)[0]
    assert inspected["dependencies"] == [
        {"id": second, "condition": "ok", "state": "succeeded", "verdict": "met"}
    ]


@pytest.mark.parametrize(("condition", "code"), [("ok", 3), ("failed", 0)])
def test_an_unmet_condition_cancels_two_levels_at_once(agent, image, condition, code):
    first = submit(agent, image, f"{HOLD}; exit {code}")
    second = submit(agent, image, "echo never", f"{first}:{condition}")
    third = submit(agent, image, "echo never", second)
    # "any" is met by any end, the cascade's cancel included.
    fourth = submit(agent, image, "echo cleanup", f"{third}:any")
    agent.wait_state(first, "running")
    release(agent.podman_url, first)
    second_job, third_job = ended(agent, second), ended(agent, third)
    assert outcome(second_job) == outcome(third_job) == ("cancelled", "dependency")
    assert second_job["attempts"] == [] and third_job["attempts"] == []
    cause = second_job["events"][-1]["detail"]
    assert cause == {
        "reason": "dependency",
        "dependency": first,
        "condition": condition,
        "state": "failed" if code else "succeeded",
    }
    assert third_job["events"][-1]["detail"]["dependency"] == second
    assert third_job["events"][-1]["detail"]["state"] == "cancelled"
    assert outcome(ended(agent, fourth)) == ("succeeded", None)
    status = agent.chooctl("ps", "-a").stdout
    assert status.count("cancelled (dependency)") == 2


def test_a_dependency_must_exist_and_must_still_be_able_to_meet_it(agent, image):
    missing = agent.chooctl("submit", "--after", "7ZZZZZZZ", image, "true")
    assert missing.returncode != 0
    assert "after: no job matches '7ZZZZZZZ'" in missing.stderr
    done = submit(agent, image, "exit 0")
    assert ended(agent, done)["state"] == "succeeded"
    refused = agent.chooctl("submit", "--after", f"{done}:failed", image, "true")
    assert refused.returncode != 0
    assert f"job {done} already ended succeeded" in refused.stderr
    assert agent.call("job.list", all=True)["jobs"][0]["id"] == done  # nothing stored


def test_a_job_waited_on_is_not_pruned_while_its_waiter_waits(agent, image):
    done = submit(agent, image, "exit 0")
    assert ended(agent, done)["state"] == "succeeded"
    held = submit(agent, image, HOLD)
    waiter = submit(agent, image, "echo waited", done, held)
    agent.wait_state(held, "running")
    assert done not in agent.call("job.prune", older_than="0s")["removed"]
    release(agent.podman_url, held)
    assert outcome(ended(agent, waiter)) == ("succeeded", None)
    assert done in agent.call("job.prune", older_than="0s")["removed"]


@pytest.mark.parametrize(
    ("code", "last"), [(0, ("succeeded", None)), (1, ("cancelled", "dependency"))]
)
def test_a_chain_goes_on_across_an_agent_sigkill_while_the_middle_job_runs(
    agent, image, code, last
):
    first = submit(agent, image, "exit 0")
    middle = submit(agent, image, f"{HOLD}; exit {code}", first)
    final = submit(agent, image, "echo final", middle)
    agent.wait_state(middle, "running")
    agent.stop(signal.SIGKILL)
    # The middle job ends while no agent runs: the one that starts learns it.
    release(agent.podman_url, middle)
    agent.start()
    assert ended(agent, middle)["exit_code"] == code
    assert outcome(ended(agent, final)) == last
    assert [a["number"] for a in agent.call("job.get", id=middle)["attempts"]] == [1]

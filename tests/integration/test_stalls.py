"""Stall detection (``--idle-timeout``) through the real agent and Podman: a job
that sleeps silently past it ends ``stalled``; one that keeps printing does not."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.podman


def test_a_silent_job_is_stopped_and_fails_stalled(agent, image):
    job = agent.run_to_end("--idle-timeout", "2s", image, "sh", "-c", "echo started; sleep 300")
    assert (job["state"], job["reason"]) == ("failed", "stalled")
    assert job["attempts"][0]["reason"] == "stalled"
    assert agent.output_lines(job["id"]) == ["started"]


def test_a_job_that_keeps_printing_is_not_stalled(agent, image):
    # Prints every 0.2 s, for longer in all than its idle timeout.
    script = "for i in $(seq 1 40); do echo tick $i; sleep 0.2; done"
    job = agent.run_to_end("--idle-timeout", "4s", image, "sh", "-c", script)
    assert (job["state"], job["reason"]) == ("succeeded", None)
    assert len(agent.output_lines(job["id"])) == 40


def test_the_agents_idle_timeout_is_the_default(make_agent, image):
    agent = make_agent(idle_timeout=2).start()
    job = agent.run_to_end(image, "sleep", "300")
    assert (job["spec"]["idle_timeout"], job["reason"]) == (2.0, "stalled")

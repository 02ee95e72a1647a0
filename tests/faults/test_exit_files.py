"""The end of a job is noticed from conmon's exit file, not from Podman's events.

The agent talks to Podman through the fault-injecting relay
(tests/podman_relay.py), whose event stream is opened and then never
answers, and the periodic resync is an hour away: the only thing left that
can tell the agent a container ended is the exit file conmon writes. With
neither, the resync still finds the end (a missed notice only delays), and
ends noticed one by one are not lost when the agent is killed among them.
"""

from __future__ import annotations

import signal

import pytest

from tests.harness import wait_until
from tests.podman_relay import Rule

pytestmark = pytest.mark.podman


def test_a_job_end_is_recorded_from_its_exit_file_with_the_event_stream_silent(
    podman_relay, make_agent, image
):
    podman_relay.add(Rule("GET", r"/events", hang=True))
    agent = make_agent(podman_url=podman_relay.url, resync_interval=3600.0).start()
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", "sleep 1"]})
    agent.wait_state(job["id"], "running", timeout=60)
    done = agent.call("job.wait", id=job["id"], timeout=120)
    assert done["state"] == "succeeded", done
    assert podman_relay.count("GET", r"/events") >= 1, "the event stream was opened"


def test_with_no_exit_files_and_no_events_the_resync_still_records_the_end(
    podman_relay, make_agent, image, tmp_path
):
    # The agent looks for the exits directory under a runtime directory of its
    # own (Podman's is elsewhere), and the event stream never answers: only
    # the full pass of the periodic resync can see that the container ended.
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    podman_relay.add(Rule("GET", r"/events", hang=True))
    agent = make_agent(podman_url=podman_relay.url, resync_interval=2.0)
    agent.start(env={"XDG_RUNTIME_DIR": str(runtime)})
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", "exit 3"]})
    done = agent.call("job.wait", id=job["id"], timeout=120)
    assert (done["state"], done["exit_code"]) == ("failed", 3), done
    assert "noticed from Podman's events only" in agent.log()
    wait_until(lambda: agent.containers() == [], what="its container removed")


def test_ends_noticed_one_by_one_survive_a_sigkill_of_the_agent(make_agent, image):
    agent = make_agent(max_concurrent=8).start()
    ids = [
        agent.call(
            "job.submit", spec={"image": image, "command": ["sh", "-c", f"sleep 1.{i}; exit {i}"]}
        )["id"]
        for i in range(8)
    ]
    # Killed as the first end is recorded: the others end around it (or are
    # still starting), some recorded, some being recorded, some after it died.
    wait_until(lambda: agent.call("job.get", id=ids[0])["state"] == "succeeded", what="an end")
    agent.stop(signal.SIGKILL)
    agent.start()
    for i, job_id in enumerate(ids):
        job = agent.call("job.wait", id=job_id, timeout=120)
        assert (job["state"], job["exit_code"]) == ("succeeded" if i == 0 else "failed", i), job
        assert len(agent.call("job.get", id=job_id)["attempts"]) == 1
    wait_until(lambda: agent.containers() == [], what="no container left")

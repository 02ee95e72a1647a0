"""The end of a job is noticed from conmon's exit file, not from Podman's events.

The agent talks to Podman through the fault-injecting relay
(tests/podman_relay.py), whose event stream is opened and then never
answers, and the periodic resync is an hour away: the only thing left that
can tell the agent a container ended is the exit file conmon writes.
"""

from __future__ import annotations

import pytest

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

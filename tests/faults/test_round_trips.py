"""The Podman round trips of one job: none it does not need.

The agent talks to Podman through the relay (tests/podman_relay.py), which
sees every request: a job without secrets makes, reads or removes no secret,
and its container is started right after its create, with no inspect between.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.podman

INSPECT = re.compile(r"/containers/[^/?]+/json")


def test_a_job_without_secrets_makes_no_secret_call_and_no_inspect_after_its_create(
    podman_relay, make_agent, image
):
    agent = make_agent(podman_url=podman_relay.url).start()
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert agent.call("job.wait", id=job["id"], timeout=120)["state"] == "succeeded"
    # The job's own calls: no secret made, looked up or removed. (The loop's
    # once-a-minute sweep lists secrets, GET /secrets/json, for any job's.)
    assert podman_relay.count("POST", r"/secrets") == 0
    assert podman_relay.count("DELETE", r"/secrets") == 0
    assert podman_relay.count("GET", r"/secrets/[^j?][^/?]*") == 0
    seen = list(podman_relay.seen)
    create = next(
        i
        for i, r in enumerate(seen)
        if r.path.split("?")[0].endswith("/create") and "/containers/" in r.path
    )
    start = next(i for i, r in enumerate(seen) if r.method == "POST" and "/start" in r.path)
    between = seen[create + 1 : start]
    assert create < start
    assert not [r for r in between if r.method == "GET" and INSPECT.search(r.path)], between

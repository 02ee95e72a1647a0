"""The Podman round trips of one job: none it does not need.

The agent talks to Podman through the relay (tests/podman_relay.py), which
sees every request: a job without secrets makes, reads or removes no secret,
and its container is started right after its create, with no inspect between.
A job running as root has its /out in a host directory: no volume call at
all, and its image's user is asked once for many jobs. Its own calls are
then create, start and remove (an agent with /out volumes made five: a
volume create and remove besides, and an inspect for its first job).
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import out_volumes
from tests.harness import wait_until

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


def _own_calls(relay) -> list[str]:
    """The requests the jobs made, without the loop's periodic listings and events."""
    background = re.compile(r"/(containers|volumes|secrets|images)/json$|/(events|_ping|info)$")
    paths = [(r.method, r.path.split("?")[0]) for r in relay.seen]
    return [f"{m} {p}" for m, p in paths if not background.search(p)]


@pytest.mark.parametrize("user", [None, "1000"], ids=["root", "user"])
def test_a_root_job_makes_no_volume_call_and_a_users_job_one_create_and_one_remove(
    podman_relay, make_agent, image, user
):
    agent = make_agent(podman_url=podman_relay.url).start()
    spec = {"image": image, "command": ["true"], **({"user": user} if user else {})}
    jobs = 3
    for _ in range(jobs):
        job = agent.call("job.submit", spec=spec)
        assert agent.call("job.wait", id=job["id"], timeout=120)["state"] == "succeeded"
        wait_until(
            lambda: agent.containers() == [] and out_volumes(agent) == [],
            what="the job's container and /out removed",
        )
    calls = _own_calls(podman_relay)
    volume_calls = [c for c in calls if "/volumes/" in c]
    image_inspects = [c for c in calls if c.endswith(f"/images/{image}/json")]
    if user is None:
        assert agent.call("agent.info")["podman"]["out"]["mode"] == "directory"
        assert volume_calls == [], calls
        assert len(image_inspects) == 1, calls  # the image's user, then cached
        assert len(calls) == 1 + 3 * jobs, calls  # create, start, remove per job
    else:
        creates = [c for c in volume_calls if c.endswith("/volumes/create")]
        removes = [c for c in volume_calls if c.startswith("DELETE")]
        assert (len(creates), len(removes)) == (jobs, jobs), calls
        assert image_inspects == [], calls  # the spec's user says it all

"""Image garbage collection against real rootless Podman: ``chooctl prune --images``
removes an old unused image and keeps the one a queued job uses and the pinned one.

The images are made here with ``podman build --timestamp 0`` (created in 1970)
from the test image, and the agent's ``image_gc_age`` is twenty years, so no
other image of the shared Podman store (the test image, other tests') is old
enough to be chosen.
"""

from __future__ import annotations

import uuid

import pytest

from tests.harness import podman

pytestmark = pytest.mark.podman

TWENTY_YEARS = 20 * 365 * 86400.0


def _build(name: str, base: str, tmp_path) -> None:
    context = tmp_path / name.replace("/", "_").replace(":", "_")
    context.mkdir()
    (context / "Containerfile").write_text(f"FROM {base}\nLABEL choo.test.gc={name}\n")
    podman("build", "--timestamp", "0", "-q", "-t", name, str(context))


def _exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def test_prune_images_removes_only_an_old_unused_unpinned_image(make_agent, image, tmp_path):
    prefix = f"localhost/choo-gc-{uuid.uuid4().hex[:8]}"
    names = {kind: f"{prefix}-{kind}:v1" for kind in ("unused", "queued", "pinned")}
    for name in names.values():
        _build(name, image, tmp_path)
    agent = make_agent(
        max_concurrent=1, image_gc_age=TWENTY_YEARS, image_gc_keep=[names["pinned"]]
    ).start()
    try:
        blocker = agent.call("job.submit", spec={"image": image, "command": ["sleep", "600"]})
        agent.wait_state(blocker["id"], "running", timeout=60)
        queued = agent.call("job.submit", spec={"image": names["queued"], "command": ["true"]})
        assert agent.call("job.get", id=queued["id"])["state"] == "queued"
        done = agent.chooctl("prune", "--images")
        assert done.returncode == 0, done.stderr
        assert f"removed {names['unused']}" in done.stdout and "(" in done.stdout
        assert "removed 1 image, freed" in done.stdout
        assert not _exists(names["unused"])
        assert _exists(names["queued"]) and _exists(names["pinned"]) and _exists(image)
        assert f"removed image {names['unused']}" in agent.log()
        again = agent.chooctl("prune", "--images", "--json")
        assert '"removed": []' in again.stdout
        for job in (queued, blocker):
            agent.call("job.cancel", id=job["id"])
            agent.wait_state(job["id"], "cancelled", timeout=60)
    finally:
        for name in names.values():
            podman("rmi", "-f", name, check=False)

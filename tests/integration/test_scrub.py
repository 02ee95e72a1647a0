"""Files a job chowned to a subordinate uid, deleted through a throwaway container (real Podman)."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from agent.adapters.podman import Podman
from agent.adapters.podman.scrub import LABEL_SCRUB, Scrubber, scrub_name
from tests.harness import podman, wait_until

pytestmark = pytest.mark.podman

AGENT_ID = "01TESTSCRUB0000000000000000"


def _scrub_containers(url: str) -> list[str]:
    out = podman(
        "--url", url, "ps", "-a", "--format", "{{.Names}}", "--filter", f"label={LABEL_SCRUB}"
    ).stdout
    return out.split()


def _subuid_tree(root) -> None:
    """A tree the test user cannot delete: chowned to subordinate uid 1000, 0555."""
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    (root / "f").write_text("y")
    podman("unshare", "chown", "-R", "1000:1000", str(root))
    podman("unshare", "chmod", "0555", str(root / "sub"))
    assert root.stat().st_uid != os.getuid()


@pytest.fixture
def scrubber(podman_service, tmp_path):
    connection = Podman(
        podman_service.url,
        agent_id=AGENT_ID,
        timeout=30,
        runtime="runc",
        ulimits={"nofile": [1024, 1024], "nproc": [4096, 4096]},
    )
    yield Scrubber(connection, tmp_path / "scrub-root")
    connection.close()


def test_a_subuid_tree_is_removed_once_however_many_ask(scrubber, podman_service, tmp_path, caplog):
    doomed = tmp_path / "jobs" / "01JOBWITHSUBUIDFILES000000"
    _subuid_tree(doomed)
    (tmp_path / "jobs" / "neighbour").write_text("stays")
    results: list[OSError | None] = []
    with caplog.at_level(logging.INFO, logger="agent.adapters.podman.scrub"):
        threads = [
            threading.Thread(target=lambda: results.append(scrubber.remove(doomed)))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [None, None, None]
    assert not doomed.exists()
    assert (tmp_path / "jobs" / "neighbour").read_text() == "stays"
    # One container did it; the others found the directory gone once it was done.
    done = [r for r in caplog.records if "through the scrub container" in r.getMessage()]
    assert len(done) == 1 and scrub_name(doomed) in done[0].getMessage()
    assert _scrub_containers(podman_service.url) == []


def test_a_stray_scrub_container_is_swept_and_a_dead_podman_is_reported(
    scrubber, podman_service, image, tmp_path
):
    name = "choo-scrub-01STRAY0000000000000000000"
    podman(
        "--url", podman_service.url, "create", "--name", name,
        "--label", f"io.choo.agent={AGENT_ID}", "--label", f"{LABEL_SCRUB}=/nowhere",
        image, "true",
    )  # fmt: skip
    assert scrubber.sweep() == [name]
    assert _scrub_containers(podman_service.url) == []
    doomed = tmp_path / "jobs" / "01JOBWHILEPODMANISDOWN0000"
    _subuid_tree(doomed)
    down = Scrubber(
        Podman(f"unix://{tmp_path}/nothing.sock", agent_id=AGENT_ID, timeout=5),
        tmp_path / "scrub-root",
    )
    error = down.remove(doomed)
    assert error is not None and "Podman did not answer" in str(error)
    assert f"rm -rf {doomed}" in str(error)
    assert scrubber.remove(doomed) is None and not doomed.exists()


def test_a_removed_job_takes_its_subuid_files_even_when_its_image_is_gone(
    make_agent, image, tmp_path
):
    """The scrub container has no image of its own: the job's image may be gone."""
    agent = make_agent(workspace_roots=[str(tmp_path)]).start()
    own = "localhost/choo-scrub-test:gone"
    podman("--url", agent.podman_url, "tag", image, own)
    ws = tmp_path / "ws"
    ws.mkdir()
    command = "mkdir -p d/e && touch d/e/f && chown -R 1000:1000 d && chmod 0500 d/e d"
    job = agent.call(
        "job.submit", spec={"image": own, "command": ["sh", "-c", command], "workspace": str(ws)}
    )
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    podman("--url", agent.podman_url, "rmi", own)
    job_dir = agent.state_dir / "jobs" / job["id"]
    assert (job_dir / "workspace" / "d").stat().st_uid != os.getuid()
    removed = agent.chooctl("rm", job["id"])
    assert removed.returncode == 0, removed.stderr
    assert not job_dir.exists()
    # Pruned, not removed by name: the same.
    spec = {"image": image, "command": ["sh", "-c", command], "workspace": str(ws)}
    again = agent.call("job.submit", spec=spec)
    assert agent.call("job.wait", id=again["id"], timeout=60)["state"] == "succeeded"
    assert agent.call("job.prune", older_than="0s")["removed"] == [again["id"]]
    assert not (agent.state_dir / "jobs" / again["id"]).exists()
    assert "through the scrub container" in agent.log()
    assert "cannot remove" not in agent.log()
    wait_until(lambda: _scrub_containers(agent.podman_url) == [], what="no scrub container")

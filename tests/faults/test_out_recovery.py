"""/out across a killed agent: finished after a restart, strays swept, an older agent's
volume still read.

Real agent processes, SIGKILL and rootless Podman. A job killed under is
held (``HOLD``) and released by the test while the agent is down, so its end
is the restarted agent's to record.
"""

from __future__ import annotations

import shutil
import signal
import tarfile

import pytest

from tests.conftest import out_volumes
from tests.harness import HOLD, podman, release, wait_until

pytestmark = pytest.mark.podman


def _nothing_stray(agent, job_id: str) -> None:
    """No container, /out directory or /out volume of the agent's is left."""
    wait_until(
        lambda: (
            agent.containers() == []
            and not (agent.state_dir / "out" / job_id).exists()
            and out_volumes(agent) == []
        ),
        timeout=60,
        what="no container, /out directory or volume left",
    )


def _archive(job: dict) -> dict[str, bytes]:
    with tarfile.open(job["artifacts"]["path"]) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _exited(agent, job_id: str) -> bool:
    out = podman(
        "--url", agent.podman_url, "inspect", "--format", "{{.State.Status}}", f"choo-{job_id}"
    )
    return out.stdout.strip() == "exited"


@pytest.mark.parametrize("user", [None, "1000"], ids=["host-dir", "volume"])
def test_a_job_that_ended_while_the_agent_was_killed_is_packed_and_leaves_nothing(
    make_agent, image, user
):
    agent = make_agent().start()
    spec = {"image": image, "command": ["sh", "-c", f"echo kept > /out/f; {HOLD}"]}
    if user:
        spec["user"] = user
    job = agent.call("job.submit", spec=spec)
    agent.wait_state(job["id"], "running")
    agent.stop(signal.SIGKILL)
    release(agent.podman_url, job["id"])
    wait_until(lambda: _exited(agent, job["id"]), what="the job's container exited")
    agent.start()
    done = agent.call("job.wait", id=job["id"], timeout=60)
    assert done["state"] == "succeeded", done
    assert _archive(done) == {"f": b"kept\n"}
    _nothing_stray(agent, job["id"])


def test_what_a_killed_agent_left_of_an_ended_job_is_swept_at_the_next_start(make_agent, image):
    """Killed between recording an end and its cleanup: the /out directory and a
    volume of that job (made here as the cleanup would have found them) go."""
    agent = make_agent().start()
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    wait_until(lambda: agent.containers() == [], what="the container removed")
    agent.stop(signal.SIGKILL)
    stray_dir = agent.state_dir / "out" / job["id"]
    stray_dir.mkdir(parents=True)
    (stray_dir / "left").write_text("by a cut cleanup")
    other = "01JD0000000000000000000000"  # a job the database never had
    labels = ["--label", f"io.choo.agent={agent.agent_id}"]
    for job_id in (job["id"], other):
        podman(
            "--url",
            agent.podman_url,
            "volume",
            "create",
            *labels,
            "--label",
            f"io.choo.job={job_id}",
            f"choo-out-{job_id}",
        )
    agent.start()
    _nothing_stray(agent, job["id"])
    assert "Traceback" not in agent.log()


def test_a_job_begun_by_an_older_agent_with_a_volume_is_finished_from_it(make_agent, image):
    """An agent before host directories gave every job a ``choo-out-<ID>`` volume:
    its running job, adopted after the upgrade, is packed from that volume,
    which then goes."""
    agent = make_agent().start()
    command = f"echo old > /out/f; {HOLD}"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", command]})
    job_id = job["id"]
    agent.wait_state(job_id, "running")
    agent.stop(signal.SIGKILL)
    # Put in its place the container the older agent made: the same name,
    # labels and log file, with the job's volume at /out.
    url = ("--url", agent.podman_url)
    name, volume = f"choo-{job_id}", f"choo-out-{job_id}"
    log_path = podman(*url, "inspect", "--format", "{{.HostConfig.LogConfig.Path}}", name)
    podman(*url, "rm", "-f", name)
    shutil.rmtree(agent.state_dir / "out" / job_id)
    labels = [
        "--label",
        f"io.choo.agent={agent.agent_id}",
        "--label",
        f"io.choo.job={job_id}",
    ]
    podman(*url, "volume", "create", *labels, volume)
    podman(
        *url,
        "run",
        "-d",
        "--name",
        name,
        *labels,
        "--label",
        "io.choo.attempt=1",
        "--log-driver",
        "k8s-file",
        "--log-opt",
        f"path={log_path.stdout.strip()}",
        "--network",
        "none",
        "-v",
        f"{volume}:/out:rw",
        image,
        "sh",
        "-c",
        command,
    )
    agent.start()
    assert agent.call("job.get", id=job_id)["state"] == "running"
    release(agent.podman_url, job_id)
    done = agent.call("job.wait", id=job_id, timeout=60)
    assert done["state"] == "succeeded", done
    assert _archive(done) == {"f": b"old\n"}
    _nothing_stray(agent, job_id)


def test_an_agent_stopped_right_after_cancels_leaves_no_out_directory(make_agent, image):
    """The ends of cancelled jobs are recorded; the stop comes before their
    cleanups may have run: the stop itself removes their /out directories."""
    agent = make_agent(max_concurrent=8).start()
    spec = {"image": image, "command": ["sh", "-c", f"echo x > /out/f; {HOLD}"]}
    ids = [agent.call("job.submit", spec=spec)["id"] for _ in range(8)]
    for job_id in ids:
        agent.wait_state(job_id, "running", timeout=120)
    for job_id in ids:
        agent.call("job.cancel", id=job_id)
    for job_id in ids:
        assert agent.call("job.wait", id=job_id, timeout=120)["state"] == "cancelled"
    assert agent.stop() == 0
    assert [j for j in ids if (agent.state_dir / "out" / j).exists()] == []
    agent.start()  # removes any container whose removal the stop cut short
    wait_until(lambda: agent.containers() == [], timeout=60, what="no container left")

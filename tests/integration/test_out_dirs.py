"""/out as a host directory for a job running as root, a volume for any other user.

Through a real agent and rootless Podman: a root job's /out is
``state_dir/out/<ID>`` while it runs (no ``choo-out-<ID>`` volume is made),
a job with a ``user`` gets the volume; both pack the same archive, both
share /out between a job's attempts, and both leave nothing when they end.
"""

from __future__ import annotations

import stat
import tarfile

import pytest

from tests.conftest import out_volumes
from tests.harness import HOLD, release, wait_until

pytestmark = pytest.mark.podman

#: Writes a bit of everything /out can hold (the image is busybox).
WRITE = (
    "mkdir -p /out/a/b && echo one > /out/a/b/f && printf '' > /out/empty && "
    "echo run > /out/x && chmod 0750 /out/x && ln -s a/b/f /out/link && "
    "seq 1 20000 > /out/a/blob && cp /out/a/blob /out/copy"
)


def _members(path: str) -> dict[str, tuple]:
    """Every member of an archive: type, mode, link target and content."""
    with tarfile.open(path) as tar:
        return {
            m.name: (
                m.type,
                m.mode,
                m.linkname,
                tar.extractfile(m).read() if m.isfile() else None,
            )
            for m in tar.getmembers()
        }


def _held(agent, image, command: str, **spec) -> str:
    job = agent.call(
        "job.submit", spec={"image": image, "command": ["sh", "-c", f"{command}; {HOLD}"], **spec}
    )
    agent.wait_state(job["id"], "running")
    return job["id"]


def test_a_root_job_writes_a_host_directory_a_user_job_a_volume_and_both_pack_alike(agent, image):
    out_root = agent.state_dir / "out"
    # The agent asked the kernel who listens on Podman's socket (Podman
    # itself here) and found its own state directory there.
    out = agent.call("agent.info")["podman"]["out"]
    assert out["mode"] == "directory", out
    assert "sees" in out["reason"] and str(out_root) in out["reason"], out
    assert "/out of a job running as root: a directory" in agent.log()
    root_job = _held(agent, image, WRITE)
    assert (out_root / root_job / "a" / "b" / "f").read_text() == "one\n"
    assert stat.S_IMODE((out_root / root_job).stat().st_mode) == 0o755
    user_job = _held(agent, image, WRITE, user="1000")
    assert not (out_root / user_job).exists()
    assert out_volumes(agent) == [f"choo-out-{user_job}"], "only the user's job has a volume"
    for job_id in (root_job, user_job):
        release(agent.podman_url, job_id)
    ended = [agent.call("job.wait", id=j, timeout=120) for j in (root_job, user_job)]
    assert [j["state"] for j in ended] == ["succeeded", "succeeded"], ended
    archives = [_members(j["artifacts"]["path"]) for j in ended]
    assert archives[0] == archives[1]
    assert sorted(archives[0]) == ["a", "a/b", "a/b/f", "a/blob", "copy", "empty", "link", "x"]
    assert archives[0]["link"][:3] == (tarfile.SYMTYPE, 0o777, "a/b/f")
    assert archives[0]["x"][1] == 0o750
    wait_until(lambda: not (out_root / root_job).exists(), what="the root job's /out removed")
    wait_until(lambda: out_volumes(agent) == [], what="the user job's volume removed")


def test_the_container_sees_out_as_it_saw_the_volume(agent, image):
    """Read-write, nosuid and nodev, as Podman mounts a named volume; owned by root."""
    job = agent.call(
        "job.submit",
        spec={
            "image": image,
            "command": ["sh", "-c", "grep ' /out ' /proc/mounts; stat -c '%a %u' /out"],
        },
    )
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    mount, owner = agent.output_lines(job["id"])
    options = mount.split()[3].split(",")
    assert "rw" in options and "nosuid" in options and "nodev" in options, mount
    assert owner == "755 0"


@pytest.mark.parametrize("user", [None, "1000"], ids=["host-dir", "volume"])
def test_a_retrys_attempts_share_out(make_agent, image, user):
    agent = make_agent(retry_backoff_base=0.05, retry_backoff_cap=0.1).start()
    command = (
        "if [ -e /out/first ]; then echo second > /out/second; else "
        "echo first > /out/first; exit 1; fi"
    )
    spec = {"image": image, "command": ["sh", "-c", command], "retries": 1}
    if user:
        spec["user"] = user
    job = agent.call("job.submit", spec=spec)
    done = agent.call("job.wait", id=job["id"], timeout=120)
    assert (done["state"], done["attempt"]) == ("succeeded", 2), done
    members = _members(done["artifacts"]["path"])
    assert members["first"][3] == b"first\n" and members["second"][3] == b"second\n"
    wait_until(
        lambda: not (agent.state_dir / "out" / job["id"]).exists() and not out_volumes(agent),
        what="the job's /out removed",
    )

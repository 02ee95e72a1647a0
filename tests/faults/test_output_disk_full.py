"""Job output on a disk that fills while the job runs, with the real conmon.

The attempts' logs live on a small tmpfs. A tmpfs needs a mount namespace, and
conmon must see the same one as the agent: so the tmpfs is mounted in rootless
Podman's own namespace (``podman unshare``, where conmon runs), and the agent,
outside it, reaches it through ``/proc/<Podman's pause process>/root``, which
its state directory's ``logs`` is a symlink to. conmon is given the agent's
path, which resolves to the same tmpfs inside the namespace.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness import podman, wait_until

pytestmark = pytest.mark.podman

#: Waits for a signal, then prints SEQ lines and exits 0.
ON_SIGNAL = 'echo ready; trap "seq 1 $SEQ; exit 0" USR1; while :; do sleep 0.1; done'


@pytest.fixture
def small_disk(image, tmp_path):
    """A 24 MiB tmpfs in Podman's namespace: (its path there, its path as the agent sees it)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    podman("unshare", "mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk))
    pause = Path(os.environ["XDG_RUNTIME_DIR"], "libpod/tmp/pause.pid").read_text().strip()
    yield disk, Path(f"/proc/{pause}/root{disk}")
    podman("unshare", "umount", str(disk), check=False)


def fill(disk: Path) -> None:
    """Fill the tmpfs to the last byte (from inside Podman's namespace)."""
    podman("unshare", "sh", "-c", f"cat /dev/zero > {disk}/fill", check=False)


def free(seen: Path) -> int:
    status = os.statvfs(seen)
    return status.f_bavail * status.f_frsize


def started(agent, image, lines: int) -> str:
    """A job that printed ``ready`` and waits for SIGUSR1 to print ``lines`` lines."""
    spec = {"image": image, "command": ["sh", "-c", ON_SIGNAL], "env": {"SEQ": str(lines)}}
    job = agent.call("job.submit", spec=spec)["id"]
    wait_until(lambda: agent.output_lines(job)[:1] == ["ready"], 60, "the job's first line")
    return job


def test_a_disk_that_fills_while_jobs_run_loses_no_output_silently(make_agent, image, small_disk):
    disk, seen = small_disk
    agent = make_agent()
    agent.state_dir.mkdir()
    (agent.state_dir / "logs").symlink_to(seen)
    agent.start()

    # Within the 8 MiB reserve: a full disk takes nothing.
    job = started(agent, image, 100_000)
    fill(disk)
    assert free(seen) < 16384
    podman("kill", "--signal", "USR1", f"choo-{job}")
    record = agent.wait_state(job, "succeeded", timeout=120)
    expected = "".join(f"{n}\n" for n in range(1, 100_001)).encode()
    assert agent.output(job)["stdout"] == b"ready\n" + expected
    assert not record["log_lost"]

    # A job cannot start blind on a full disk: it fails before it runs.
    spec = {"image": image, "command": ["echo", "never"]}
    blind = agent.call("job.submit", spec=spec)["id"]
    record = agent.wait_state(blind, "failed", timeout=60)
    assert record["reason"] == "create" and "No space left" in (record["log_tail"] or "")

    # Past its reserve on a disk that stays full, the loss is on the record.
    (seen / "fill").unlink()
    chatty = started(agent, image, 400_000)  # ~20 MiB of records: more than its reserve
    fill(disk)
    podman("kill", "--signal", "USR1", f"choo-{chatty}")
    # The loss is found when the copy to the journal reaches the cut record.
    agent.wait_job(chatty, lambda j: j["state"] == "succeeded" and j["log_lost"], "loss", 300)
    events = [e for e in agent.call("job.get", id=chatty)["events"] if e["kind"] == "output-lost"]
    assert len(events) == 1 and "disk was full" in events[0]["detail"]["message"]
    ps = agent.chooctl("ps", "-a")
    assert "output lost" in ps.stdout
    assert "cannot reserve space for the output of job " + chatty in agent.log()


#: As ON_SIGNAL, but it goes on after SIGUSR1's lines: SIGUSR2 prints one more and exits 0.
THEN_AFTER = (
    'echo ready; trap "seq 1 $SEQ" USR1; trap "echo after; exit 0" USR2;'
    " while :; do sleep 0.1; done"
)


def test_once_space_returns_the_next_line_starts_cleanly_after_the_cut_one(
    make_agent, image, small_disk
):
    disk, seen = small_disk
    agent = make_agent()
    agent.state_dir.mkdir()
    (agent.state_dir / "logs").symlink_to(seen)
    agent.start()
    spec = {"image": image, "command": ["sh", "-c", THEN_AFTER], "env": {"SEQ": "400000"}}
    job = agent.call("job.submit", spec=spec)["id"]
    wait_until(lambda: agent.output_lines(job)[:1] == ["ready"], 60, "the job's first line")
    fill(disk)
    podman("kill", "--signal", "USR1", f"choo-{job}")
    # Past its reserve, conmon cuts a record short; the shipper records it.
    agent.wait_job(job, lambda j: j["log_lost"], "the loss recorded while the job runs", 300)
    record = agent.call("job.get", id=job)
    assert record["state"] == "running"
    assert [
        e["detail"].get("offset") is not None
        for e in record["events"]
        if e["kind"] == "output-lost"
    ] == [True]  # a record cut short, not a log cut
    (seen / "fill").unlink()
    podman("kill", "--signal", "USR2", f"choo-{job}")
    agent.wait_state(job, "succeeded", timeout=120)
    out = agent.output(job)["stdout"]
    assert out.startswith(b"ready\n1\n2\n") and out.endswith(b"\nafter\n"), out[-200:]
    logs = agent.chooctl("logs", job).stdout
    assert logs.endswith("\nafter\n")

"""A full disk under the state directory: submits fail clearly, reads go on, ends wait.

The agent runs with a 4 MiB tmpfs over its state directory, mounted in a user
and mount namespace of its own by tests/faults/smallfs.py, so the test needs
no root and leaves nothing mounted behind (a root-prepared mount would be
shared between runs and could be left full). The test fills the tmpfs through
/proc/PID/root, which shows the agent's view of the file system.

A job that ends while the disk is full is not recorded until there is room
for its archive and its end: its container stays, the end is retried with
backoff, and once space returns it is recorded with its exit code and the
whole of its /out. Podman, outside the namespace, does not see the tmpfs: the
agent tells so at start and gives every job a volume at /out.
"""

from __future__ import annotations

import errno
import hashlib
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from agent.protocol.errors import StorageError
from tests.harness import HOLD, podman, release, volumes_of, wait_until

pytestmark = pytest.mark.podman

SMALLFS = Path(__file__).with_name("smallfs.py")


@pytest.fixture
def wrapper(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    done = subprocess.run(
        [sys.executable, str(SMALLFS), str(probe), "1m", "true"], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()}")
    # Job output stays on the host's file system: conmon, outside the
    # namespace, writes it (and sees no tmpfs).
    return lambda directory, size="4m": [
        sys.executable,
        str(SMALLFS),
        str(directory),
        size,
        "--keep",
        "logs",
    ]


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def _integrity(db: Path, scratch: Path) -> str:
    """PRAGMA integrity_check of a copy (database and WAL, taken while the agent
    is idle): SQLite resolves the /proc/PID/root link, so it cannot open the
    agent's own file from outside the namespace."""
    scratch.mkdir(exist_ok=True)
    for suffix in ("", "-wal"):
        source = db.with_name(db.name + suffix)
        if source.exists():
            (scratch / f"choo.db{suffix}").write_bytes(source.read_bytes())
    conn = sqlite3.connect(scratch / "choo.db", timeout=10)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_disk_full_refuses_submits_clearly_and_keeps_reads_working(
    make_agent, image, wrapper, tmp_path
):
    # socket_group: in the namespace, no group but the user's own is mapped.
    agent = make_agent(socket_group="")
    agent.state_dir.mkdir()
    agent.start(wrapper=wrapper(agent.state_dir))
    seen = Path(f"/proc/{agent.process.pid}/root") / agent.state_dir.relative_to("/")
    assert (seen / "choo.db").exists(), "the agent's state is not on the small tmpfs"

    done = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert agent.call("job.wait", id=done["id"], timeout=60)["state"] == "succeeded"

    filler = _fill(seen)
    big_env = {f"V{i}": "x" * 30000 for i in range(8)}  # needs fresh pages in the WAL
    with pytest.raises(StorageError) as excinfo:
        agent.call("job.submit", spec={"image": image, "command": ["true"], "env": big_env})
    assert "full" in excinfo.value.message
    assert excinfo.value.code == -32007
    # Reads keep working, and nothing half-written shows up.
    assert agent.call("agent.ping") == "pong"
    jobs = agent.call("job.list", all=True)["jobs"]
    assert [j["id"] for j in jobs] == [done["id"]]
    assert agent.call("job.get", id=done["id"])["state"] == "succeeded"
    assert agent.call("agent.info")["jobs"]["succeeded"] == 1
    assert _integrity(seen / "choo.db", tmp_path / "copy1") == "ok"

    # Space again: the agent carries on without a restart.
    filler.unlink()
    job = agent.call("job.submit", spec={"image": image, "command": ["true"], "env": big_env})
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    assert _integrity(seen / "choo.db", tmp_path / "copy2") == "ok"
    assert agent.process.poll() is None


def test_a_job_that_ends_while_the_disk_is_full_is_recorded_once_space_returns(
    make_agent, image, wrapper
):
    agent = make_agent(socket_group="")
    agent.state_dir.mkdir()
    # Room for the database's write-ahead log to grow while the job runs.
    agent.start(wrapper=wrapper(agent.state_dir, "16m"))
    seen = Path(f"/proc/{agent.process.pid}/root") / agent.state_dir.relative_to("/")
    # Random bytes do not compress: the archive needs room the full disk lacks.
    command = f"head -c 300000 /dev/urandom > /out/r; sha256sum /out/r > /out/sum; {HOLD}; exit 7"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", command]})
    agent.wait_state(job["id"], "running")
    # Podman, outside the namespace, cannot see the tmpfs: even a job running
    # as root gets a volume, not a directory under state_dir/out.
    out = agent.call("agent.info")["podman"]["out"]
    assert out["mode"] == "volume", out
    assert "another directory" in out["reason"] or "cannot see" in out["reason"], out
    assert "/out of a job running as root: a volume" in agent.log()
    assert f"choo-out-{job['id']}" in volumes_of(agent)
    assert not (seen / "out" / job["id"]).exists()
    filler = _fill(seen)
    release(agent.podman_url, job["id"])

    wait_until(
        lambda: "cannot be recorded yet" in agent.log(), 60, "the end put off for want of space"
    )
    assert agent.call("job.get", id=job["id"])["state"] == "running"
    name = f"choo-{job['id']}"
    kept = podman("--url", agent.podman_url, "container", "exists", name, check=False)
    assert kept.returncode == 0, "the container went before its end was recorded"
    assert not list((seen / "jobs" / job["id"]).glob("*.partial")), "a partial archive was left"

    filler.unlink()
    done = agent.call("job.wait", id=job["id"], timeout=120)
    assert (done["state"], done["exit_code"]) == ("failed", 7)
    assert done["artifacts"]["state"] == "packed", done["artifacts"]
    archive = Path(f"/proc/{agent.process.pid}/root") / done["artifacts"]["path"].lstrip("/")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == done["artifacts"]["sha256"]
    with tarfile.open(archive) as tar:
        data = tar.extractfile("r").read()
        recorded = tar.extractfile("sum").read().split()[0].decode()
    assert len(data) == 300000 and hashlib.sha256(data).hexdigest() == recorded
    wait_until(
        lambda: (
            podman("--url", agent.podman_url, "container", "exists", name, check=False).returncode
            != 0
        ),
        30,
        "the container removed once its end was recorded",
    )
    assert agent.log().count("cannot be recorded yet") == 1, "logged once, not every try"
    assert agent.process.poll() is None

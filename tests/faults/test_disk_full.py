"""A full disk under the state directory: submits fail clearly, reads go on.

The agent runs with a 4 MiB tmpfs over its state directory, mounted in a user
and mount namespace of its own by tests/faults/smallfs.py, so the test needs
no root and leaves nothing mounted behind (a root-prepared mount would be
shared between runs and could be left full). The test fills the tmpfs through
/proc/PID/root, which shows the agent's view of the file system.
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.protocol.errors import StorageError

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
    return lambda directory: [sys.executable, str(SMALLFS), str(directory), "4m", "--keep", "logs"]


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

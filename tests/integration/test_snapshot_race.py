"""A submitter racing the workspace snapshot never gets in files it should not see.

The attack (issue 14): while the agent copies a workspace, swap one of its
directories for a symbolic link to somewhere private, and a file for a link
to the agent's database, in a tight rename loop in another process. A copy
that walks by name follows the link and copies the target. The targets here
hold a marker: the agent's database (a job's env holds it) and another job's
workspace snapshot (a file holds it). Everything runs as one uid, so only the
walk by file descriptor stands between the marker and the snapshot.

200 snapshots are taken through the real socket; the jobs stay queued behind
one that holds the only slot, so no container runs per snapshot.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from agent.protocol.errors import InvalidParams
from tests.harness import HOLD, release

pytestmark = pytest.mark.podman

SNAPSHOTS = 200


def _race(ws: Path, stop) -> None:
    """Swap ws/d between a real directory and a link to a private one, and ws/f
    between a file and a link to a private file, until ``stop`` is set."""
    while not stop.is_set():
        os.rename(ws / "d", ws / "d.real")
        os.rename(ws / "d.link", ws / "d")
        os.rename(ws / "f", ws / "f.real")
        os.rename(ws / "f.link", ws / "f")
        os.rename(ws / "d", ws / "d.link")
        os.rename(ws / "d.real", ws / "d")
        os.rename(ws / "f", ws / "f.link")
        os.rename(ws / "f.real", ws / "f")


def _contents(root: Path) -> bytes:
    """All bytes of the regular files below ``root`` (never following a link)."""
    data = b""
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            if stat.S_ISREG(path.lstat().st_mode):
                data += path.read_bytes()
    return data


def _swapped(snapshot: Path) -> bool:
    """Whether the snapshot caught ws/d or ws/f while it was a link."""
    return any((snapshot / name).is_symlink() for name in ("d", "f"))


def test_a_rename_loop_never_gets_a_private_file_into_a_snapshot(make_agent, image, tmp_path):
    agent = make_agent(workspace_roots=[str(tmp_path)], max_concurrent=1).start()
    marker = f"PRIVATE-MARKER-{os.getpid()}"
    other = tmp_path / "other"
    other.mkdir()
    (other / "loot").write_text(marker)
    holder = agent.call(
        "job.submit",
        spec={
            "image": image,
            "command": ["sh", "-c", HOLD],
            "workspace": str(other),
            "env": {"M": marker},  # so the database holds the marker too
        },
    )
    agent.wait_state(holder["id"], "running")
    private_dir = agent.state_dir / "jobs" / holder["id"] / "workspace"
    assert (private_dir / "loot").read_text() == marker
    # The database (or its write-ahead log, until a checkpoint) holds the env.
    database = agent.state_dir / "choo.db"
    private_file = next(
        p for p in (database, Path(f"{database}-wal")) if marker.encode() in p.read_bytes()
    )

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "d").mkdir()
    (ws / "d" / "plain").write_text("plain")
    os.symlink(private_dir, ws / "d.link")
    (ws / "f").write_text("file")
    os.symlink(private_file, ws / "f.link")
    # Copying this takes a while: a copy that walks by name has listed ws/d
    # as a directory by then and enters whatever ws/d is when it gets there.
    # (Measured with shutil.copytree in this loop: 7-8 of 200 snapshots held
    # the marker.)
    (ws / "big").write_bytes(os.urandom(512 * 1024))

    stop = multiprocessing.Event()
    racer = multiprocessing.Process(target=_race, args=(ws, stop))
    racer.start()
    taken, refused = [], []
    try:
        for _ in range(SNAPSHOTS):
            spec = {"image": image, "command": ["true"], "workspace": str(ws)}
            try:
                taken.append(agent.call("job.submit", spec=spec)["id"])
            except InvalidParams as exc:
                assert "changed" in exc.message or "removed" in exc.message, exc.message
                refused.append(exc.message)
    finally:
        stop.set()
        racer.join(30)
    assert racer.exitcode == 0, "the rename loop itself failed"
    snapshots = [agent.state_dir / "jobs" / job_id / "workspace" for job_id in taken]
    for job_id, snapshot in zip(taken, snapshots, strict=True):
        assert marker.encode() not in _contents(snapshot), f"job {job_id} got a private file"
    assert taken, f"every snapshot was refused: {refused[:3]}"
    # The race was real: some snapshots caught the links (and copied them as links).
    assert any(_swapped(s) for s in snapshots)
    for job_id in taken:
        agent.call("job.cancel", id=job_id)
    release(agent.podman_url, holder["id"])
    assert agent.call("job.wait", id=holder["id"], timeout=60)["state"] == "succeeded"

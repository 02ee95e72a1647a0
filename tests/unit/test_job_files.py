"""Job files on disk: durable before recorded, snapshots by descriptor, removal, the disk cap.

Real files in a temp dir and a real SQLite store; only what a real host
cannot show on demand is faked: which fsync came first (recorded), a rename
racing the copy at one chosen instant, a removal that needs ``podman unshare``,
and a disk that fills while a job ends.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.adapters import files as files_module
from agent.adapters.files import JobFiles
from agent.adapters.snapshot import Reader
from agent.protocol.errors import InvalidParams, StorageError
from agent.protocol.methods import SubmitParams
from agent.runtime import finish as finish_module
from tests.unit.fakes import FakeFiles, FakePodman
from tests.unit.test_controller import build, submit
from tests.unit.test_controller import world as world  # a fixture

JOB = "01JD0000000000000000000001"
OTHER = "01JD0000000000000000000002"
STRANGER = Reader(uid=54321, gids=frozenset({54321}))


@pytest.fixture
def config(tmp_path):
    return SimpleNamespace(
        workspace_roots=[str(tmp_path / "ws")],
        workspace_max_bytes=1 << 20,
        artifacts_max_bytes=1 << 20,
        max_files_bytes=0,
    )


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def files(tmp_path, config, clock):
    return JobFiles(tmp_path / "state", config, clock=clock, unshare=lambda path: None)


@pytest.fixture
def ws(tmp_path):
    root = tmp_path / "ws" / "project"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("inner\n")
    (root / "top").write_text("top\n")
    return root


@pytest.fixture
def open_ws():
    """A workspace any uid may reach (pytest's own temp dirs are 0700), for
    checks of what a stranger may read."""
    top = Path(tempfile.mkdtemp(prefix="choo-ws-", dir="/tmp"))
    top.chmod(0o755)
    root = top / "project"
    (root / "sub").mkdir(parents=True, mode=0o755)
    (root / "sub" / "f").write_text("inner\n")
    (root / "top").write_text("top\n")
    root.chmod(0o755)
    yield root
    shutil.rmtree(top)


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync, as the path of what was fsynced, in order."""
    order: list[str] = []
    real = os.fsync

    def record(fd):
        order.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return order


# -- durable before recorded ---------------------------------------------------


def test_a_snapshot_is_fsynced_file_then_directory_then_the_row(
    feed_service, feed_store, unit_config, tmp_path, fsyncs, monkeypatch
):
    ws = tmp_path / "ws" / "p"
    (ws / "sub").mkdir(parents=True)
    (ws / "sub" / "f").write_text("x")
    (ws / "top").write_text("y")
    real_add = feed_store.add_job
    monkeypatch.setattr(
        feed_store, "add_job", lambda *a, **k: fsyncs.append("ROW") or real_add(*a, **k)
    )
    spec = {"image": "i", "command": ["x"], "workspace": str(ws)}
    job = feed_service.submit(SubmitParams(spec=spec))
    job_dir = unit_config.state_dir / "jobs" / job["id"]
    partial = job_dir / "workspace.partial"

    def at(path):
        return fsyncs.index(str(path))

    assert at(partial / "sub" / "f") < at(partial / "sub") < at(partial)
    assert at(partial / "top") < at(partial)
    # The rename into place is made durable (the job directory), then the row.
    assert at(partial) < at(job_dir) < fsyncs.index("ROW")
    assert fsyncs[-1] == "ROW"
    assert (job_dir / "workspace" / "sub" / "f").read_text() == "x"


class TarPodman(FakePodman):
    """A fake Podman whose /out holds one file."""

    def read_out(self, name_or_id):
        super().read_out(name_or_id)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            top = tarfile.TarInfo("")
            top.type = tarfile.DIRTYPE
            tar.addfile(top)
            info = tarfile.TarInfo("/result")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
        buf.seek(0)
        return _Closing(buf)


class _Closing:
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        return None


@pytest.fixture
def end_world(world):
    store, _podman, controller, clock = world
    podman = TarPodman(clock)
    job_files = JobFiles(controller.config.state_dir, controller.config)
    return store, podman, build(store, podman, controller.config, clock, files=job_files), clock


def test_an_archive_is_fsynced_then_its_directory_then_the_end_is_recorded(
    end_world, fsyncs, monkeypatch
):
    store, podman, controller, clock = end_world
    real_move = finish_module.move
    monkeypatch.setattr(
        finish_module, "move", lambda *a, **k: fsyncs.append("ROW") or real_move(*a, **k)
    )
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 0)
    fsyncs.clear()
    controller.reconcile()
    archive = controller.config.state_dir / "jobs" / job / "artifacts.tar.gz"
    assert fsyncs.index(str(archive) + ".partial") < fsyncs.index(str(archive.parent))
    assert fsyncs.index(str(archive.parent)) < fsyncs.index("ROW")
    assert store.get(job)["artifacts"]["state"] == "packed"


# -- an end put off while the disk is full ------------------------------------


class FullDisk(FakeFiles):
    """Job files whose pack fails for want of space ``failures`` times."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures
        self.tries = 0

    def pack(self, job_id, stream):
        self.tries += 1
        if self.tries <= self.failures:
            raise StorageError("no space left to pack /out: No space left on device")
        return {"artifacts_state": "packed", "artifacts_size": 2}


def test_an_end_without_space_is_put_off_with_backoff_then_recorded(world, caplog):
    store, podman, controller, clock = world
    disk = FullDisk(failures=2)
    controller = build(store, podman, controller.config, clock, files=disk)
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 3)
    with caplog.at_level(logging.WARNING):
        controller.reconcile()
        assert store.get(job)["state"] == "running"  # nothing recorded ...
        assert job in podman.containers  # ... and the container kept
        due = controller.finisher.due(job)
        assert due == clock.monotonic() + finish_module.DEFER_BACKOFF[0]
        # Not due yet: the pass does not try again, and comes back by then (the
        # pool's own backoff of the failed work may wake it sooner).
        assert controller.reconcile() <= due
        assert disk.tries == 1
        clock.sleep(due - clock.monotonic())
        controller.reconcile()
        assert disk.tries == 2
        due = controller.finisher.due(job)
        assert due == clock.monotonic() + 2 * finish_module.DEFER_BACKOFF[0]
        clock.sleep(due - clock.monotonic())
        controller.reconcile()
    record = store.get(job)
    assert (record["state"], record["exit_code"]) == ("failed", 3)
    assert record["artifacts"]["state"] == "packed"
    assert job not in podman.containers
    assert controller.finisher.due(job) is None
    put_off = [r for r in caplog.records if "cannot be recorded yet" in r.getMessage()]
    assert len(put_off) == 1, "logged once per job, not every pass"


def test_a_database_write_that_fails_for_want_of_space_is_put_off_too(world, monkeypatch):
    store, podman, controller, clock = world
    real_move = finish_module.move
    failures = []

    def full_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise StorageError("database or disk is full")
        return real_move(*args, **kwargs)

    monkeypatch.setattr(finish_module, "move", full_once)
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 0)
    controller.reconcile()
    assert store.get(job)["state"] == "running" and job in podman.containers
    clock.sleep(controller.finisher.due(job) - clock.monotonic())
    controller.reconcile()
    assert (store.get(job)["state"], store.get(job)["exit_code"]) == ("succeeded", 0)


# -- snapshots by descriptor ---------------------------------------------------


def test_links_are_copied_as_links_and_never_followed(files, ws, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("MARKER")
    os.symlink(secret, ws / "to-secret")
    os.symlink(tmp_path, ws / "to-dir")
    dest, size = files.snapshot(JOB, ws)
    assert os.readlink(dest / "to-secret") == str(secret)
    assert os.readlink(dest / "to-dir") == str(tmp_path)
    assert size == len("inner\n") + len("top\n")


def test_a_file_the_submitter_may_not_read_refuses_the_snapshot_naming_it(files, open_ws):
    (open_ws / "sub" / "private").write_text("no")
    (open_ws / "sub" / "private").chmod(0o600)
    with pytest.raises(InvalidParams) as excinfo:
        files.snapshot(JOB, open_ws, STRANGER)
    assert f"{open_ws}/sub/private may not be read by uid 54321" in excinfo.value.message
    assert not files.job_dir(JOB).exists(), "nothing of a refused snapshot is kept"


def test_a_workspace_behind_a_directory_the_submitter_may_not_enter_is_refused(files, ws):
    # pytest's temp dirs are 0700: a stranger could not reach this workspace.
    with pytest.raises(InvalidParams, match="uid 54321 may not enter /"):
        files.snapshot(JOB, ws, STRANGER)


def test_group_and_other_read_bits_are_what_counts(files, open_ws):
    (open_ws / "grouped").write_text("g")
    (open_ws / "grouped").chmod(0o640)
    gid = os.stat(open_ws / "grouped").st_gid
    dest, _ = files.snapshot(JOB, open_ws, Reader(uid=54321, gids=frozenset({gid})))
    assert (dest / "grouped").read_text() == "g"
    with pytest.raises(InvalidParams, match="grouped may not be read"):
        files.snapshot(OTHER, open_ws, Reader(uid=54321, gids=frozenset()))


def test_special_files_are_left_out_or_refused_when_unreadable(files, open_ws):
    os.mkfifo(open_ws / "pipe", 0o644)
    dest, _ = files.snapshot(JOB, open_ws, STRANGER)
    assert not os.path.lexists(dest / "pipe")
    (open_ws / "pipe").chmod(0o600)
    with pytest.raises(InvalidParams, match="pipe may not be read by uid 54321"):
        files.snapshot(OTHER, open_ws, STRANGER)


def test_a_hard_link_to_a_file_the_submitter_may_not_read_is_refused(files, open_ws):
    private = open_ws.parent / "private"
    private.write_text("MARKER")
    private.chmod(0o600)
    os.link(private, open_ws / "linked")
    with pytest.raises(InvalidParams, match="linked may not be read"):
        files.snapshot(JOB, open_ws, STRANGER)


def test_a_directory_swapped_for_a_link_during_the_copy_is_refused(
    files, ws, tmp_path, monkeypatch
):
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    (secret / "loot").write_text("MARKER")
    real_open = os.open
    swapped = []

    def racing_open(path, flags, mode=0o777, *, dir_fd=None):
        if path == "sub" and dir_fd is not None and not swapped:
            swapped.append(1)  # between the listing and the open: the classic race
            os.rename(ws / "sub", ws / "sub.old")
            os.symlink(secret, ws / "sub")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", racing_open)
    with pytest.raises(InvalidParams, match="sub changed while it was copied; submit again"):
        files.snapshot(JOB, ws)
    monkeypatch.setattr(os, "open", real_open)
    assert swapped and not files.job_dir(JOB).exists()


def test_a_workspace_reached_through_a_link_that_changed_is_refused(files, ws, tmp_path):
    # check_workspace resolved the path; by the time of the copy a component is a link.
    resolved = files.check_workspace(str(ws), None)
    os.rename(ws, tmp_path / "ws" / "moved")
    os.symlink(tmp_path / "ws" / "moved", ws)
    with pytest.raises(InvalidParams, match="changed"):
        files.snapshot(JOB, resolved)


# -- packing /out ----------------------------------------------------------------


def test_pack_dir_packs_links_as_links_never_their_targets(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("MARKER")
    os.symlink(secret, out / "shadow")
    os.symlink(tmp_path, out / "host")
    (out / "real").write_text("data")
    record = files.pack_dir(JOB, out)
    with tarfile.open(record["artifacts_path"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"shadow", "host", "real"}
        assert members["shadow"].issym() and members["shadow"].linkname == str(secret)
        assert tar.extractfile("real").read() == b"data"
    assert b"MARKER" not in _gunzip(record["artifacts_path"])


def test_pack_drops_devices_and_hard_links_out_of_out(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo("")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, kind, link in (
            ("/dev", tarfile.CHRTYPE, ""),
            ("/fifo", tarfile.FIFOTYPE, ""),
            ("/escape", tarfile.LNKTYPE, "../etc/shadow"),
            ("/sym", tarfile.SYMTYPE, "/etc/shadow"),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            tar.addfile(info)
        info = tarfile.TarInfo("/f")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    record = files.pack(JOB, buf)
    with tarfile.open(record["artifacts_path"]) as tar:
        assert sorted(m.name for m in tar.getmembers()) == ["f", "sym"]


def _gunzip(path) -> bytes:
    with gzip.open(path) as f:
        return f.read()


# -- removal ---------------------------------------------------------------------


def test_read_only_and_unreadable_directories_are_removed(files, ws):
    dest, _ = files.snapshot(JOB, ws)
    (dest / "locked").mkdir()
    (dest / "locked" / "f").write_text("x")
    (dest / "locked" / "f").chmod(0)
    (dest / "locked").chmod(0)
    (dest / "sub").chmod(0o555)
    dest.chmod(0o555)
    assert files.remove(JOB)
    assert not files.job_dir(JOB).exists()


def test_what_only_unshare_can_remove_is_retried_with_backoff_and_logged_once(
    tmp_path, config, clock, monkeypatch, caplog
):
    calls = []
    outcome = [OSError("podman unshare rm -rf failed: permission denied")]
    job_files = JobFiles(
        tmp_path / "state",
        config,
        clock=clock,
        unshare=lambda path: calls.append(path) or outcome[0],
    )
    job_files.job_dir(JOB).mkdir(parents=True)
    monkeypatch.setattr(
        files_module, "remove_tree", lambda path: OSError(f"{path}/u: permission denied")
    )
    with caplog.at_level(logging.INFO):
        assert not job_files.remove(JOB)
        assert job_files.pending_removals() == {JOB}
        assert job_files.retry_removals() == []  # not due yet
        assert len(calls) == 1
        clock.now += files_module.REMOVE_RETRY[0]
        assert job_files.retry_removals() == []  # due: tried, failed again
        assert len(calls) == 2
        clock.now += files_module.REMOVE_RETRY[0]
        assert job_files.retry_removals() == []  # backoff doubled: not due yet
        assert len(calls) == 2
        clock.now += files_module.REMOVE_RETRY[0]
        outcome[0] = None
        assert job_files.retry_removals() == [JOB]
    assert job_files.pending_removals() == set()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "will try again later" in warnings[0].getMessage()
    assert any("at last" in r.getMessage() for r in caplog.records)


# -- the disk cap ----------------------------------------------------------------


def test_the_cap_refuses_a_snapshot_that_would_pass_it_keeping_nothing(files, config, ws):
    config.max_files_bytes = 15
    files.snapshot(JOB, ws)  # 10 bytes
    assert files.used() == 10
    with pytest.raises(StorageError) as excinfo:
        files.snapshot(OTHER, ws)
    message = excinfo.value.message
    assert "max_files_bytes (15 bytes)" in message and "already use 10 bytes" in message
    assert "chooctl prune" in message
    assert not files.job_dir(OTHER).exists()
    assert files.used() == 10
    files.check_room()  # below the cap: a job without a workspace may come
    config.max_files_bytes = 10
    with pytest.raises(StorageError, match="already use 10 bytes"):
        files.check_room()
    assert files.remove(JOB)
    assert files.used() == 0
    files.check_room()


def test_the_total_is_measured_once_then_counted(files, tmp_path, config, ws):
    files.snapshot(JOB, ws)
    record = files.pack(OTHER, _tar_of({"r": b"12345"}))
    again = JobFiles(tmp_path / "state", config)
    assert again.used() == files.used() == 10 + record["artifacts_size"]


def _tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo("")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, data in entries.items():
            info = tarfile.TarInfo(f"/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_modes_survive_the_copy_without_set_id_bits(files, ws):
    (ws / "tool").write_text("#!/bin/sh\n")
    (ws / "tool").chmod(0o4755)
    dest, _ = files.snapshot(JOB, ws)
    assert stat.S_IMODE(os.stat(dest / "tool").st_mode) == 0o755

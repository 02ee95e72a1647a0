"""agent.adapters.files: workspace checks and snapshots, packing /out, reading, sweeping."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from types import SimpleNamespace

import pytest

from agent.adapters.files import JobFiles
from agent.protocol.errors import InvalidParams

JOB = "01JD0000000000000000000001"


@pytest.fixture
def config(tmp_path):
    return SimpleNamespace(
        workspace_roots=[str(tmp_path / "home")],
        workspace_max_bytes=1 << 20,
        artifacts_max_bytes=1 << 20,
        max_files_bytes=0,
    )


@pytest.fixture
def files(tmp_path, config):
    return JobFiles(tmp_path / "state", config)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "home" / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (root / "README").write_text("hello\n")
    os.symlink("README", root / "link")
    return root


def podman_tar(entries: dict[str, bytes | None], root: str = "") -> io.BytesIO:
    """A tar like Podman's copy of /out: the directory itself first, then its content."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        top = tarfile.TarInfo(root)
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        for name, data in entries.items():
            info = tarfile.TarInfo(f"{root}/{name}" if root else f"/{name}")
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


# -- workspaces ----------------------------------------------------------------------


def test_workspace_inside_a_root_is_accepted(files, project):
    assert files.check_workspace(str(project), os.getuid()) == project.resolve()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("relative/dir", "absolute"),
        ("/nonexistent/choo", "does not exist"),
        ("/etc", "outside the allowed roots"),
    ],
)
def test_bad_workspaces_are_refused_with_the_reason(files, path, message):
    with pytest.raises(InvalidParams, match=message):
        files.check_workspace(path, os.getuid())


def test_a_file_is_not_a_workspace(files, project):
    with pytest.raises(InvalidParams, match="not a directory"):
        files.check_workspace(str(project / "README"), os.getuid())


def test_a_symlink_out_of_the_roots_is_refused(files, tmp_path):
    (tmp_path / "home").mkdir(exist_ok=True)
    os.symlink("/etc", tmp_path / "home" / "etc")
    with pytest.raises(InvalidParams, match="outside the allowed roots"):
        files.check_workspace(str(tmp_path / "home" / "etc"), os.getuid())


def test_the_agents_state_is_never_a_workspace(files, config, tmp_path):
    config.workspace_roots = [str(tmp_path)]
    files.state_dir.mkdir()
    for path in (files.state_dir, tmp_path):
        with pytest.raises(InvalidParams, match="agent's own state"):
            files.check_workspace(str(path), os.getuid())


@pytest.mark.skipif(os.getuid() == 0, reason="root reads everything")
def test_an_unreadable_workspace_is_refused(files, project):
    project.chmod(0)
    try:
        with pytest.raises(InvalidParams, match="cannot read"):
            files.check_workspace(str(project), os.getuid())
    finally:
        project.chmod(0o755)


def test_another_users_workspace_is_refused(files, project):
    other = os.getuid() + 4242
    with pytest.raises(InvalidParams, match="does not belong to you"):
        files.check_workspace(str(project), other)


def test_snapshot_copies_files_and_links_and_later_edits_do_not_show(files, project):
    dest, size = files.snapshot(JOB, project)
    (project / "README").write_text("changed\n")
    assert (dest / "README").read_text() == "hello\n"
    assert (dest / "src" / "main.c").exists()
    assert os.readlink(dest / "link") == "README"
    assert size == len("hello\n") + len("int main(void) { return 0; }\n")
    assert files.workspace_dir(JOB) == dest


def test_snapshot_over_the_limit_is_refused_and_leaves_nothing(files, config, project):
    config.workspace_max_bytes = 10
    with pytest.raises(InvalidParams, match="workspace_max_bytes"):
        files.snapshot(JOB, project)
    assert not files.job_dir(JOB).exists()


# -- packing -------------------------------------------------------------------------


def test_pack_strips_the_out_prefix_and_records_size_and_digest(files):
    payload = os.urandom(5000)
    record = files.pack(JOB, podman_tar({"a.bin": payload, "d": None, "d/b.txt": b"b"}))
    assert record["artifacts_state"] == "packed"
    path = files.archive_path(JOB)
    assert record["artifacts_path"] == str(path)
    assert record["artifacts_size"] == path.stat().st_size
    assert record["artifacts_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["a.bin", "d", "d/b.txt"]
        assert tar.extractfile("a.bin").read() == payload


def test_pack_understands_the_docker_style_root_name(files):
    record = files.pack(JOB, podman_tar({"x": b"1"}, root="out"))
    with tarfile.open(record["artifacts_path"]) as tar:
        assert tar.getnames() == ["x"]


def test_an_empty_out_records_no_artifacts(files):
    record = files.pack(JOB, podman_tar({}))
    assert record["artifacts_state"] == "none"
    assert "no artifacts" in record["artifacts_message"]
    assert not files.archive_path(JOB).exists()


def test_too_much_output_is_recorded_not_raised(files, config):
    config.artifacts_max_bytes = 100
    record = files.pack(JOB, podman_tar({"big": b"x" * 101}))
    assert record["artifacts_state"] == "too_large"
    assert "artifacts_max_bytes" in record["artifacts_message"]
    assert not files.archive_path(JOB).exists()
    assert list(files.job_dir(JOB).iterdir()) == []


def test_a_broken_stream_is_recorded_as_an_error(files):
    record = files.pack(JOB, io.BytesIO(b"this is not a tar archive" * 40))
    assert record["artifacts_state"] == "error"


def test_read_returns_chunks_of_the_archive(files):
    record = files.pack(JOB, podman_tar({"a": os.urandom(3000)}))
    path = record["artifacts_path"]
    data = files.read(JOB, path, 0, 100) + files.read(JOB, path, 100, 10**6)
    assert data == files.archive_path(JOB).read_bytes()


# -- removal -------------------------------------------------------------------------


def test_remove_deletes_the_job_directory(files, project):
    files.snapshot(JOB, project)
    files.pack(JOB, podman_tar({"a": b"1"}))
    files.remove(JOB)
    assert not files.job_dir(JOB).exists()
    files.remove(JOB)  # a second time is fine


def test_sweep_removes_old_directories_of_unknown_jobs_only(files, project):
    files.snapshot(JOB, project)
    files.snapshot("01JD0000000000000000000002", project)
    files.snapshot("01JD0000000000000000000003", project)
    later = time.time() + 2 * 3600
    assert files.sweep({JOB}, now=time.time()) == []  # young: may be being submitted
    assert sorted(files.sweep({JOB}, now=later)) == [
        "01JD0000000000000000000002",
        "01JD0000000000000000000003",
    ]
    assert files.job_dir(JOB).exists()


# -- packing straight from the volume's directory --------------------------------------


def test_pack_dir_packs_what_the_directory_holds(files, tmp_path):
    out = tmp_path / "volume"
    (out / "d").mkdir(parents=True)
    payload = os.urandom(4000)
    (out / "a.bin").write_bytes(payload)
    (out / "d" / "b").write_text("b")
    os.symlink("a.bin", out / "link")
    os.mkfifo(out / "fifo")
    record = files.pack_dir(JOB, out)
    assert record["artifacts_state"] == "packed"
    path = files.archive_path(JOB)
    assert record["artifacts_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with tarfile.open(path) as tar:
        assert sorted(tar.getnames()) == ["a.bin", "d", "d/b", "link"]
        assert tar.extractfile("a.bin").read() == payload
        assert tar.getmember("link").issym()


def test_pack_dir_of_an_empty_directory_records_no_artifacts(files, tmp_path):
    (tmp_path / "volume").mkdir()
    assert files.pack_dir(JOB, tmp_path / "volume")["artifacts_state"] == "none"


def test_pack_dir_over_the_limit_is_too_large(files, config, tmp_path):
    config.artifacts_max_bytes = 10
    (tmp_path / "volume").mkdir()
    (tmp_path / "volume" / "big").write_bytes(b"x" * 11)
    assert files.pack_dir(JOB, tmp_path / "volume")["artifacts_state"] == "too_large"
    assert not files.archive_path(JOB).exists()


@pytest.mark.skipif(os.getuid() == 0, reason="root reads everything")
def test_pack_dir_leaves_unreadable_content_to_podman(files, tmp_path):
    out = tmp_path / "volume"
    out.mkdir()
    (out / "secret").write_text("s")
    (out / "secret").chmod(0)
    assert files.pack_dir(JOB, out) is None
    assert files.pack_dir(JOB, tmp_path / "missing") is None

"""A job's /out: a host directory for a job running as root, else a Podman volume.

Which one a job gets (and keeps for all its attempts), when it goes, the
sweep of strays and the removal on the way out, over the fakes; the host
directories themselves (agent/adapters/out_dirs.py), the image-user cache and
the create request, each on its own.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat

import pytest

from agent.adapters.files import JobFiles
from agent.adapters.out_dirs import OutDirs
from agent.adapters.podman import Podman
from agent.adapters.podman.image_users import USER_TTL, is_root_user
from agent.adapters.podman.run import Hardening
from agent.protocol.errors import CreateError
from agent.runtime.shutdown import remove_ended_out_dirs
from tests.unit.fakes import FakeFiles
from tests.unit.test_controller import build, submit
from tests.unit.test_controller import world as world  # a fixture


@pytest.fixture
def files_world(world):
    store, podman, controller, clock = world
    files = FakeFiles()
    return store, podman, build(store, podman, controller.config, clock, files=files), files


def test_a_job_running_as_root_gets_a_directory_and_no_volume(files_world):
    store, podman, controller, files = files_world
    job = submit(store)
    controller.reconcile()
    assert podman.out_dirs == [f"/out-dirs/{job}"] and files.out == {job}
    assert podman.volumes == set()
    podman.exit(job, 0)
    controller.reconcile()
    assert store.get(job)["state"] == "succeeded"
    assert files.out == set() and podman.containers == {}


def test_a_job_running_as_another_user_gets_a_volume(files_world):
    store, podman, controller, files = files_world
    podman.root = False
    job = submit(store, user="1000")
    controller.reconcile()
    assert podman.out_dirs == [None] and podman.volumes == {job} and files.out == set()
    podman.exit(job, 0)
    controller.reconcile()
    assert podman.volumes == set()


def test_while_podman_is_not_known_to_see_the_state_directory_every_job_gets_a_volume(
    files_world,
):
    store, podman, controller, files = files_world
    files.out_enabled = False
    job = submit(store)
    controller.reconcile()
    assert podman.out_dirs == [None] and podman.volumes == {job} and files.out == set()
    podman.exit(job, 0)
    controller.reconcile()
    assert store.get(job)["state"] == "succeeded" and podman.volumes == set()


def test_a_create_that_cannot_find_the_directory_is_made_again_with_a_volume(files_world, caplog):
    """Once: the next jobs get volumes straight away, and the attempt is not a failed one."""
    store, podman, controller, files = files_world
    podman.unseen_out_dirs = True
    first = submit(store)
    controller.reconcile()
    assert podman.out_dirs == [f"/out-dirs/{first}", None]
    assert store.get(first)["state"] == "running" and store.get(first)["attempt"] == 1
    assert files.out == set() and podman.volumes == {first}
    assert not files.out_enabled and "statfs" in files.out_reason
    second = submit(store)
    controller.reconcile()
    assert podman.out_dirs[2:] == [None] and store.get(second)["state"] == "running"
    assert caplog.text.count("jobs get /out volumes from now on") == 1
    podman.exit(first, 0)
    controller.reconcile()
    assert store.get(first)["state"] == "succeeded" and podman.volumes == {second}


def test_an_other_create_error_with_a_directory_fails_the_job_as_before(files_world):
    store, podman, controller, files = files_world

    def refuse(*args, **kwargs):
        raise CreateError("create container for job x: invalid reference format")

    podman.run = refuse
    job = submit(store)
    controller.reconcile()
    done = store.get(job)
    assert (done["state"], done["reason"]) == ("failed", "create")
    assert files.out_enabled


@pytest.mark.parametrize("first_root", [True, False])
def test_a_retry_takes_what_the_first_attempt_took(files_world, first_root):
    """The attempts share /out, whatever the image's user says meanwhile."""
    store, podman, controller, files = files_world
    podman.root = first_root
    job = submit(store, retries=1)
    controller.reconcile()
    podman.exit(job, 1)
    controller.reconcile()
    assert store.get(job)["state"] == "queued"
    assert (job in files.out, job in podman.volumes) == (first_root, not first_root)
    podman.root = not first_root  # the tag now names an image with another user
    store.update(job, not_before=0)
    controller.reconcile()
    assert store.get(job)["attempt"] == 2
    assert podman.out_dirs[1] == podman.out_dirs[0]
    podman.exit(job, 0)
    controller.reconcile()
    assert files.out == set() and podman.volumes == set()


def test_a_start_stopped_before_the_command_ran_leaves_no_directory(files_world):
    store, podman, controller, files = files_world
    job = submit(store)
    controller.launcher.record_starting(store.get(job))
    files.make_out_dir(job)  # made, then the cancel came before the create
    store.update(job, cancel_requested=True)
    controller.launcher.create_and_start(store.get(job))
    assert store.get(job)["state"] == "cancelled"
    assert files.out == set() and podman.created == []


def test_stray_directories_are_swept_but_not_while_their_job_has_a_container(files_world):
    store, podman, controller, files = files_world
    controller.config.keep_containers = True
    kept = submit(store)
    controller.reconcile()
    podman.exit(kept, 0)
    controller.reconcile()
    assert store.get(kept)["state"] == "succeeded"
    assert kept in podman.containers and files.out == {kept}  # kept with its container
    queued = submit(store)
    store.update(queued, not_before=4e9)  # waits for a retry: keeps its /out
    files.out |= {queued, "GONE"}
    controller.sweeps._volumes_swept_at = float("-inf")
    controller.reconcile()
    assert files.out == {kept, queued}
    podman.containers.clear()  # someone removed the kept container
    controller.sweeps._volumes_swept_at = float("-inf")
    controller.reconcile()
    assert files.out == {queued}


def test_the_way_out_removes_the_directories_of_ended_jobs_only(world, tmp_path):
    store, podman, controller, clock = world
    files = JobFiles(tmp_path, controller.config)
    ended, running = submit(store), submit(store)
    controller.reconcile()
    podman.exit(ended, 0)
    controller.reconcile()
    for job in (ended, running, "01JUNKNOWNJOB0000000000000"):
        files.make_out_dir(job)
    assert remove_ended_out_dirs(store, files, controller.config) == 2
    assert files.out_dir_jobs() == [running]
    controller.config.keep_containers = True
    files.make_out_dir(ended)
    assert remove_ended_out_dirs(store, files, controller.config) == 0


# -- the directories ------------------------------------------------------------------------


def test_a_directory_is_made_once_as_a_volume_is_and_removed_whatever_it_holds(tmp_path):
    root = tmp_path / "out"
    calls = []

    def unshare(path):  # stands in for the scrub container, which may do anything
        calls.append(path)
        root.chmod(0o700)
        shutil.rmtree(path)

    dirs = OutDirs(root, lambda: unshare)
    old = os.umask(0o077)
    try:
        path = dirs.make("J")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    (path / "kept").write_text("an earlier attempt's")
    assert dirs.make("J") == path and (path / "kept").exists()
    assert dirs.exists("J") and dirs.job_ids() == ["J"]
    (path / "locked").mkdir()
    (path / "locked" / "f").write_text("x")
    os.chmod(path / "locked", 0)  # the agent's own: emptied without help
    assert dirs.remove("J") and calls == [] and not path.exists()
    if os.getuid() == 0:
        pytest.skip("root deletes everything")
    dirs.make("J")
    root.chmod(0o500)  # what the agent alone cannot delete goes to unshare ...
    assert not dirs.remove("J", helped=False) and calls == []  # ... unless on the way out
    assert dirs.remove("J") and calls == [path] and not path.exists()
    assert dirs.remove("J") and dirs.job_ids() == []


def test_a_directory_that_cannot_be_removed_is_logged_once(tmp_path, caplog):
    if os.getuid() == 0:
        pytest.skip("root deletes everything")
    caplog.set_level(logging.INFO)
    root = tmp_path / "out"
    dirs = OutDirs(root, lambda: None)
    path = dirs.make("J")
    root.chmod(0o500)
    try:
        assert not dirs.remove("J") and not dirs.remove("J")
        assert caplog.text.count("cannot remove") == 1
        assert "podman unshare rm -rf" in caplog.text
        assert path.exists()
    finally:
        root.chmod(0o700)
    assert dirs.remove("J") and "at last" in caplog.text


# -- the image's user -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "user, root",
    [("", True), ("0", True), ("root", True), ("0:1000", True), ("root:wheel", True)]
    + [("1000", False), ("nobody", False), ("1000:0", False)],
)
def test_root_is_uid_0_by_any_name(user, root):
    assert is_root_user(user) is root


class _Answer:
    def __init__(self, user):
        self.user = user

    def raise_for_status(self):
        if self.user is None:
            from podman.errors import NotFound

            raise NotFound("no such image")

    def json(self):
        return {"Config": {"User": self.user}}


def test_an_images_user_is_asked_once_a_minute(monkeypatch):
    now = [0.0]
    podman = Podman("unix:///nowhere", agent_id="A", timeout=1, clock=lambda: now[0])
    users = {"img": "", "app": "1000", "absent": None}
    asked = []

    def get(path, **_kwargs):
        image = path.split("/")[2]
        asked.append(image)
        return _Answer(users[image])

    monkeypatch.setattr(podman.client.api, "get", get)
    assert podman.runs_as_root({"image": "img"}) is True
    assert podman.runs_as_root({"image": "app"}) is False
    assert podman.runs_as_root({"image": "absent"}) is None  # pulled at the create
    assert podman.runs_as_root({"image": "app", "user": "0"}) is True  # the spec's wins
    now[0] += USER_TTL - 1
    assert podman.runs_as_root({"image": "img"}) is True
    assert asked == ["img", "app", "absent"]
    users["img"] = "1000"
    now[0] += 1
    assert podman.runs_as_root({"image": "img"}) is False
    assert podman.runs_as_root({"image": "absent"}) is None
    assert asked == ["img", "app", "absent", "img", "absent"]


# -- the create request ---------------------------------------------------------------------


def test_a_directory_is_bind_mounted_as_a_volume_would_be(tmp_path):
    podman = Podman("unix:///nowhere", agent_id="A", timeout=1)
    spec = {"image": "img", "command": ["true"]}

    def out_mount(out_dir, **more):
        kwargs = podman._create_kwargs("J", 1, {**spec, **more}, "/log", None, Hardening(), out_dir)
        payload = podman.client.containers._render_payload({"command": None, **kwargs})
        return payload["mounts"], payload["volumes"]

    mounts, volumes = out_mount(str(tmp_path))
    assert volumes == []
    assert mounts == [
        {
            "destination": "/out",
            "options": ["U", "nosuid", "nodev", "rw"],
            "source": str(tmp_path),
            "type": "bind",
        }
    ]
    assert out_mount(None) == ([], [{"Name": "choo-out-J", "Dest": "/out", "Options": ["rw"]}])
    assert out_mount(None, user="1000")[1][0]["Options"] == ["U", "rw"]

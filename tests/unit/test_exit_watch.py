"""Conmon's exit files: the real inotify watch on a directory, and the loop's
targeted finish of the job whose container ended (fakes for Podman)."""

from __future__ import annotations

import threading

from agent.adapters.podman.exits import ExitFiles
from tests.unit.fakes import FakeExits
from tests.unit.test_controller import submit, world  # noqa: F401 (the fixture)

CID = "ab" * 32


def test_an_exit_file_is_reported_by_its_container_id(tmp_path):
    exits = ExitFiles(tmp_path)
    assert exits.open() is None
    try:
        assert exits.read(0) == []
        (tmp_path / f"{CID}.tmp").write_text("0")  # a temporary file: not an ID
        (tmp_path / f"{CID}.tmp").rename(tmp_path / CID)  # renamed into place
        (tmp_path / ("cd" * 32)).write_text("1")  # written in place
        assert exits.read(5) == [CID, "cd" * 32]
    finally:
        exits.close()


def test_a_missing_directory_says_so_and_a_removed_one_breaks_the_watch(tmp_path):
    assert "does not exist" in ExitFiles(tmp_path / "nope").open()
    watched = tmp_path / "exits"
    watched.mkdir()
    exits = ExitFiles(watched)
    assert exits.open() is None
    watched.rmdir()
    try:
        raised = None
        try:
            for _ in range(3):
                exits.read(5)
        except OSError as exc:
            raised = exc
        assert raised is not None and "removed" in str(raised)
    finally:
        exits.close()


def _ended(controller, *container_ids):
    """Run the watch over these exit files until its fake source is done."""
    done = threading.Event()
    controller.exits.source = FakeExits(done, list(container_ids))
    controller.exits.stopped = done
    controller.exits.follow()


def test_an_exit_file_finishes_its_job_without_a_full_pass(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()  # launches it
    controller.reconcile()  # the pass its launch's end wakes: lists the container
    assert store.get(job)["state"] == "running"
    podman.exit(job, 0)
    listed = []
    podman.list_ours = lambda: listed.append(1) or list(podman.containers.values())
    _ended(controller, "0" * 64, podman.containers[job].id)  # another's, then ours
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "succeeded"
    assert listed == [], "the targeted finish lists no containers"
    assert job not in podman.containers, "removed after its end was recorded"


def test_an_exit_of_an_earlier_attempt_or_a_busy_job_is_left_to_the_full_pass(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    controller.reconcile()
    podman.exit(job, 0)
    cid = podman.containers[job].id
    controller.workers._busy.add(job)  # work in flight: its end wakes a full pass
    _ended(controller, cid)
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "running"
    controller.workers._busy.discard(job)
    store.update(job, attempt=2)  # the exit file of attempt 1 is not attempt 2's end
    _ended(controller, cid)
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "running"

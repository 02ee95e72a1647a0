"""Conmon's exit files: the real inotify watch on a directory, and the loop's
targeted finish of the job whose container ended (fakes for Podman)."""

from __future__ import annotations

import threading

from agent.adapters.podman.exits import ExitFiles, ExitStatus
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


def _ended(controller, *container_ids, statuses=None):
    """Run the watch over these exit files until its fake source is done."""
    done = threading.Event()
    controller.exits.source = FakeExits(done, list(container_ids), statuses=statuses)
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


def test_an_exit_of_an_earlier_attempt_is_not_the_end_of_a_later_one(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    controller.reconcile()
    podman.exit(job, 0)
    cid = podman.containers[job].id
    store.update(job, attempt=2)  # the exit file of attempt 1 is not attempt 2's end
    _ended(controller, cid)
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "running"


def test_an_exit_file_holds_the_exit_code_and_the_oom_flag_beside_the_bundle(tmp_path):
    exits_dir, storage = tmp_path / "tmp" / "exits", tmp_path / "storage"
    exits_dir.mkdir(parents=True)
    exits = ExitFiles(exits_dir, storage_roots=[storage])
    (exits_dir / CID).write_text("137")
    assert exits.status(CID) == ExitStatus(exit_code=137, oom=None)  # no bundle: ask Podman
    bundle = storage / "overlay-containers" / CID / "userdata"
    bundle.mkdir(parents=True)
    assert exits.status(CID) == ExitStatus(exit_code=137, oom=False)
    (bundle / "oom").write_text("")  # conmon's mark, as Podman 4 reads it
    assert exits.status(CID) == ExitStatus(exit_code=137, oom=True)
    (bundle / "oom").unlink()
    persist = tmp_path / "tmp" / "persist" / CID  # where Podman 5's conmon leaves it
    persist.mkdir(parents=True)
    (persist / "oom").write_text("")
    assert exits.status(CID) == ExitStatus(exit_code=137, oom=True)
    (exits_dir / CID).unlink()  # Podman's cleanup removed it
    assert exits.status(CID) is None
    (exits_dir / CID).write_text("not a number")
    assert exits.status(CID) is None
    assert exits.status("../../etc/passwd") is None


def test_an_end_told_by_the_exit_file_is_recorded_without_an_inspect(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    cid = podman.containers[job].id
    podman.exit(job, 3)
    inspected = []
    podman.inspect = lambda name: inspected.append(name)
    _ended(controller, cid, statuses={cid: ExitStatus(exit_code=3, oom=False)})
    noticed, clock.now = clock.now, clock.now + 0.5  # the loop and the pool come later
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    record = store.get(job)
    assert (record["state"], record["exit_code"]) == ("failed", 3)
    assert store.attempts(job)[0]["oom"] is False
    assert store.attempts(job)[0]["ended_at"] == noticed, "ended when the file was seen"
    assert inspected == []


def test_an_exit_file_that_cannot_tell_oom_asks_podman(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    cid = podman.containers[job].id
    podman.exit(job, 137, oom=True)
    _ended(controller, cid, statuses={cid: ExitStatus(exit_code=137, oom=None)})
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    record = store.get(job)
    assert (record["state"], record["reason"]) == ("failed", "oom")
    assert store.attempts(job)[0]["oom"] is True


def test_the_end_of_a_container_not_listed_yet_waits_for_its_launch(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.exits.known({})  # the listing of a pass before the launch
    cid = f"c-{job}-1"  # the fake's container ID
    _ended(controller, cid, statuses={cid: ExitStatus(exit_code=0, oom=False)})
    assert not controller.exits.pending(), "not known: kept aside, not queued"
    controller.reconcile()  # launches it: the launch tells the watch its container
    assert controller.exits.pending()
    podman.exit(job, 0)
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "succeeded"


def test_a_busy_jobs_end_stays_queued_until_its_work_is_done(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    podman.exit(job, 0)
    cid = podman.containers[job].id
    controller.workers._busy.add(job)
    _ended(controller, cid, statuses={cid: ExitStatus(exit_code=0, oom=False)})
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "running" and controller.exits.pending()
    controller.workers._busy.discard(job)
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert store.get(job)["state"] == "succeeded" and not controller.exits.pending()


def test_a_died_event_finishes_its_job_and_others_are_ignored(world):  # noqa: F811
    store, podman, controller, clock = world
    job = submit(store)
    controller.reconcile()
    cid = podman.containers[job].id
    podman.exit(job, 4)
    labels = {"io.choo.job": job, "io.choo.attempt": "1"}
    controller.exits.died({"Status": "start", "Actor": {"ID": cid, "Attributes": labels}})
    controller.exits.died({"Status": "died", "Actor": {"ID": "x" * 64, "Attributes": {}}})
    assert not controller.exits.pending()
    controller.exits.died({"Status": "died", "Actor": {"ID": cid, "Attributes": labels}})
    controller.exits.finish(controller.store, controller.workers, controller.finisher, None)
    assert (store.get(job)["state"], store.get(job)["exit_code"]) == ("failed", 4)


def test_a_full_pass_finishes_a_listed_exit_without_an_inspect_when_the_oom_mark_tells(
    world,  # noqa: F811
):
    store, podman, controller, clock = world
    told, untold = submit(store), submit(store)
    controller.reconcile()
    podman.exit(told, 0)
    podman.exit(untold, 137, oom=True)
    told_id, untold_id = podman.containers[told].id, podman.containers[untold].id
    controller.exits.source = FakeExits(
        threading.Event(), statuses={told_id: ExitStatus(exit_code=99, oom=False)}
    )
    inspected = []
    real_inspect = podman.inspect
    podman.inspect = lambda name: inspected.append(name) or real_inspect(name)
    controller.reconcile()
    assert store.get(told)["state"] == "succeeded", "the listing's exit code, not the file's"
    assert (store.get(untold)["state"], store.get(untold)["reason"]) == ("failed", "oom")
    assert inspected == [untold_id], "only the one whose OOM mark could not be found"

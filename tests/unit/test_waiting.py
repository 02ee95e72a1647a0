"""The loop's dependency handling (``after``): waiting, starting once met, the
cascade in one pass, and the store's side (pruning keeps what is waited on)."""

from __future__ import annotations

import time

import pytest

from agent.config import Config
from agent.protocol.errors import InvalidParams
from agent.protocol.methods import JobRef, SubmitParams
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store
from tests.unit.fakes import Clock, FakePodman
from tests.unit.test_controller import build, submit


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.open()
    podman = FakePodman(clock)
    config = Config(socket=tmp_path / "s", state_dir=tmp_path, max_concurrent=4)
    yield store, podman, build(store, podman, config, clock)
    store.close()


def after(*entries):
    return [{"id": job_id, "condition": condition} for job_id, condition in entries]


def state(store, job_id):
    record = store.get(job_id)
    return record["state"], record["reason"]


@pytest.mark.parametrize(
    ("condition", "code", "starts"),
    [("ok", 0, True), ("ok", 1, False), ("failed", 1, True), ("failed", 0, False)]
    + [("any", 0, True), ("any", 1, True)],
)
def test_a_waiter_waits_then_starts_or_is_cancelled(world, condition, code, starts):
    store, podman, controller = world
    first = submit(store)
    waiter = submit(store, after=after((first, condition)))
    controller.reconcile()
    assert state(store, first) == ("running", None)
    assert state(store, waiter) == ("queued", None)  # free capacity, yet it waits
    podman.exit(first, code)
    controller.reconcile()  # records the end
    controller.reconcile()  # the pass that end woke
    if starts:
        assert state(store, waiter) == ("running", None)
    else:
        assert state(store, waiter) == ("cancelled", "dependency")
        event = store.events(waiter)[-1]
        assert event["detail"] == {
            "reason": "dependency",
            "dependency": first,
            "condition": condition,
            "state": "succeeded" if code == 0 else "failed",
        }


def test_the_cascade_cancels_two_levels_in_one_pass(world):
    store, podman, controller = world
    first = submit(store)
    second = submit(store, after=after((first, "ok")))
    third = submit(store, after=after((second, "ok")))
    controller.reconcile()
    podman.exit(first, 3)
    controller.reconcile()
    controller.reconcile()
    assert state(store, second) == ("cancelled", "dependency")
    assert state(store, third) == ("cancelled", "dependency")
    assert store.events(third)[-1]["detail"]["dependency"] == second


def test_a_cancelled_queued_dependency_cascades(world):
    store, podman, controller = world
    blocker = submit(store, after=after(("NONE", "any")))  # waits on a removed job: ends
    waiter = submit(store, after=after((blocker, "ok")))
    controller.reconcile()
    assert state(store, blocker) == ("cancelled", "dependency")
    assert state(store, waiter) == ("cancelled", "dependency")


def test_a_waiter_is_held_without_the_admission_pass(world):
    store, podman, controller = world
    first = submit(store)
    controller.reconcile()
    podman.exit(first, 1)
    waiter = submit(store, after=after((first, "ok")))
    controller.reconcile(admit=False)  # the recovery pass records the end
    controller.reconcile(admit=False)  # and cancels without starting anything
    assert state(store, waiter) == ("cancelled", "dependency")


def test_a_job_waited_on_is_not_pruned_while_its_waiter_waits(world):
    store, podman, controller = world
    done = submit(store)
    store.transition(done, "cancelled")
    waiter = submit(store, after=after((done, "any")))
    later = time.time() + 10
    assert done not in store.prunable(ended_before=later)
    store.transition(waiter, "cancelled")
    assert set(store.prunable(ended_before=later)) == {done, waiter}


def test_summaries_and_states_name_the_dependencies(world):
    store, podman, controller = world
    first = submit(store)
    waiter = submit(store, after=after((first, "failed")))
    summary = store.summaries(limit=10)[0]
    assert summary["id"] == waiter and summary["after"] == [first]
    assert store.summaries(limit=10)[1]["after"] == []
    assert store.states_of([first, "GONE"]) == {first: "queued"}


# -- at submit (the service) ---------------------------------------------------


def submit_after(service, *entries):
    spec = {"image": "busybox", "command": ["true"], "after": list(entries)}
    return service.submit(SubmitParams(spec=spec))


def test_submit_resolves_prefixes_to_full_ids(feed_service):
    first = submit_after(feed_service)["id"]
    waiter = submit_after(feed_service, f"{first[:20].lower()}:failed")
    assert waiter["spec"]["after"] == [{"id": first, "condition": "failed"}]
    detail = feed_service.get(JobRef(id=waiter["id"]))
    assert detail["dependencies"] == [
        {"id": first, "condition": "failed", "state": "queued", "verdict": "wait"}
    ]


def test_submit_refuses_a_job_that_does_not_exist(feed_service):
    with pytest.raises(InvalidParams, match="after: no job matches '7ZZZZ'"):
        submit_after(feed_service, "7ZZZZ")
    assert feed_service.store.counts()["queued"] == 0


def test_submit_refuses_a_condition_already_impossible(feed_service):
    first = submit_after(feed_service)["id"]
    feed_service.store.transition(first, State.CANCELLED)
    with pytest.raises(InvalidParams, match="already ended cancelled, so 'ok' can never be met"):
        submit_after(feed_service, first)
    assert submit_after(feed_service, f"{first}:any")["spec"]["after"][0]["id"] == first


def test_submit_refuses_one_job_named_twice_by_two_prefixes(feed_service):
    first = submit_after(feed_service)["id"]
    with pytest.raises(InvalidParams, match="named twice"):
        submit_after(feed_service, first, first[:22])

"""Reruns through the service on a real database: the spec again, ``rerun_of``,
env on top, workspace snapshots, and ``rerun_failed`` once per failed job."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.protocol.errors import InvalidParams
from agent.protocol.methods import JobRef, RerunFailedParams, RerunParams, SubmitParams
from agent.protocol.states import State

SPEC = {"image": "busybox", "command": ["true"], "env": {"A": "1"}, "name": "nightly"}


def failed(service, spec=SPEC):
    job = service.submit(SubmitParams(spec=dict(spec)))
    service.store.transition(job["id"], State.CANCELLED)
    service.store.update(job["id"], state=State.FAILED)
    return job["id"]


def test_a_rerun_is_the_same_spec_with_env_on_top(feed_service):
    first = failed(feed_service)
    rerun = feed_service.rerun(RerunParams(id=first[:20], env={"B": "2", "A": "3"}))
    assert (rerun["trigger"], rerun["rerun_of"], rerun["state"]) == ("rerun", first, "queued")
    assert rerun["spec"]["env"] == {"A": "3", "B": "2"}
    assert rerun["spec"]["command"] == ["true"] and rerun["name"] == "nightly"
    assert feed_service.get(JobRef(id=rerun["id"]))["rerun_of"] == first


def test_a_rerun_waits_for_nothing_the_first_waited_for(feed_service):
    dep = failed(feed_service)
    waiter = feed_service.submit(SubmitParams(spec={**SPEC, "after": [f"{dep}:failed"]}))
    assert feed_service.rerun(RerunParams(id=waiter["id"]))["spec"]["after"] == []


def test_rerun_failed_reruns_each_failed_job_once(feed_service):
    first, second = failed(feed_service), failed(feed_service, {**SPEC, "name": "other"})
    feed_service.submit(SubmitParams(spec=dict(SPEC)))  # queued: not failed
    reruns = feed_service.rerun_failed(RerunFailedParams())["jobs"]
    assert [job["rerun_of"] for job in reruns] == [first, second]
    assert feed_service.rerun_failed(RerunFailedParams())["jobs"] == []
    third = failed(feed_service)
    only = feed_service.rerun_failed(RerunFailedParams(name="nightly", since="1h"))["jobs"]
    assert [job["rerun_of"] for job in only] == [third]


def test_a_bad_env_is_refused_naming_it(feed_service):
    first = failed(feed_service)
    with pytest.raises(InvalidParams, match="env"):
        feed_service.rerun(RerunParams(id=first, env={"1BAD": "x"}))


def test_a_workspace_is_the_first_jobs_snapshot_until_it_is_gone(feed_service, unit_config):
    source = unit_config.workspace_roots[0]
    Path(source).mkdir(parents=True)
    (Path(source) / "data.txt").write_text("first")
    first = feed_service.submit(SubmitParams(spec={**SPEC, "workspace": source}))
    (Path(source) / "data.txt").write_text("changed since")
    rerun = feed_service.rerun(RerunParams(id=first["id"]))
    copied = Path(rerun["workspace"]["snapshot"]) / "data.txt"
    assert copied.read_text() == "first"
    shutil.rmtree(first["workspace"]["snapshot"])
    with pytest.raises(InvalidParams, match="workspace snapshot no longer exists"):
        feed_service.rerun(RerunParams(id=first["id"]))

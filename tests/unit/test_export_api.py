"""job.export over a real SQLite store: by ID, by schedule and by spec, as a submit
would normalise it, storing nothing (agent/api/export.py)."""

from __future__ import annotations

import pytest

from agent.api.export import export
from agent.protocol.errors import InvalidParams, NoSuchJob, NoSuchSchedule
from agent.protocol.methods import ExportParams, SubmitParams

IMAGE = "registry.example.com/tool:1"


def test_a_spec_is_normalised_as_a_submit_would_and_not_stored(feed_service, unit_config):
    unit_config.default_timeout = 120.0
    unit_config.default_stop_timeout = 4.0
    params = ExportParams(to="kubernetes", spec={"image": IMAGE, "command": ["true"]})
    result = export(feed_service, params)
    pod = result["documents"][0]["spec"]["template"]["spec"]
    assert pod["activeDeadlineSeconds"] == 120
    assert pod["terminationGracePeriodSeconds"] == 4
    assert sum(feed_service.store.counts().values()) == 0


def test_a_bad_spec_is_refused_as_by_submit(feed_service):
    with pytest.raises(InvalidParams, match="image: required"):
        export(feed_service, ExportParams(to="nomad", spec={}))


def test_a_job_by_id_prefix(feed_service):
    job = feed_service.submit(SubmitParams(spec={"image": IMAGE, "name": "build"}))
    result = export(feed_service, ExportParams(to="nomad", id=job["id"][:20]))
    meta = result["documents"][0]["Job"]["Meta"]
    assert meta["io.choo.job"] == job["id"] and meta["io.choo.name"] == "build"
    assert result["name"] == "build-" + job["id"][-8:].lower()


def test_a_schedule_by_name(feed_service, feed_store):
    feed_store.add_schedule(
        name="nightly",
        cron="0 3 * * *",
        timezone=None,
        spec={"image": IMAGE},
        concurrency="replace",
        catch_up=True,
        history_limit=3,
        created_at=0.0,
        created_by=None,
        last_fire=0.0,
    )
    result = export(feed_service, ExportParams(to="kubernetes", schedule="nightly"))
    assert result["kind"] == "CronJob"
    assert result["documents"][0]["spec"]["concurrencyPolicy"] == "Replace"
    with pytest.raises(InvalidParams, match="catch_up: .*concurrency: |concurrency: .*catch_up: "):
        export(feed_service, ExportParams(to="nomad", schedule="nightly"))


def test_unknown_ids_and_names(feed_service):
    with pytest.raises(NoSuchJob):
        export(feed_service, ExportParams(to="nomad", id="01JDQ8Z6X3K7M9N2P4R5T6V7W8"))
    with pytest.raises(NoSuchSchedule):
        export(feed_service, ExportParams(to="nomad", schedule="nope"))


@pytest.mark.parametrize(
    "params",
    [
        ExportParams(to="nomad"),
        ExportParams(to="nomad", id="01JD", spec={"image": IMAGE}),
        ExportParams(to="nomad", schedule="x", id="01JD"),
    ],
)
def test_exactly_one_source(feed_service, params):
    with pytest.raises(InvalidParams, match="exactly one of id, schedule or spec"):
        export(feed_service, params)


def test_another_uids_job_or_schedule_is_not_theirs_to_export(feed_service, monkeypatch):
    """A manifest holds the job's env values: exporting it is a read, the owner's and
    the admins' (as job.get's env values and job.logs are)."""
    from agent.api.peers import Peer
    from agent.protocol.errors import Unauthorized

    monkeypatch.setattr("agent.api.peers.pwd.getpwuid", lambda uid: (_ for _ in ()).throw(KeyError))
    alice, bob = Peer(pid=11, uid=5001, gid=5001), Peer(pid=12, uid=5002, gid=5002)
    spec = {"image": IMAGE, "env": {"TOKEN": "s3cret"}}
    job = feed_service.submit(SubmitParams(spec=spec), peer=alice)
    assert export(feed_service, ExportParams(to="nomad", id=job["id"]), peer=alice)
    with pytest.raises(Unauthorized, match="belongs to uid 5001"):
        export(feed_service, ExportParams(to="nomad", id=job["id"]), peer=bob)
    feed_service.store.add_schedule(
        name="n",
        cron="0 3 * * *",
        timezone=None,
        spec=spec,
        concurrency="allow",
        catch_up=False,
        history_limit=3,
        created_at=0.0,
        created_by=alice.uid,
        last_fire=0.0,
    )
    assert export(feed_service, ExportParams(to="kubernetes", schedule="n"), peer=alice)
    with pytest.raises(Unauthorized, match="belongs to uid 5001"):
        export(feed_service, ExportParams(to="kubernetes", schedule="n"), peer=bob)

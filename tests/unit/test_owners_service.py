"""The ownership policy applied by the use cases, on a real database, with peers of other uids.

The peers here are built by hand (no socket): the socket-level proof, with
real other uids, is tests/integration/test_ownership.py.
"""

from __future__ import annotations

import grp
import threading

import pytest

from agent.api.peers import Peer
from agent.api.schedules import Schedules
from agent.protocol.errors import InvalidTransition, Unauthorized
from agent.protocol.methods import (
    ArtifactsParams,
    JobRef,
    ListParams,
    LogsParams,
    PruneParams,
    ScheduleAddParams,
    ScheduleListParams,
    ScheduleRef,
    ScheduleTriggerParams,
    SubmitParams,
    SubscribeParams,
)
from agent.protocol.states import State
from agent.runtime.scheduler import Scheduler

ALICE = Peer(pid=11, uid=5001, gid=5001)
BOB = Peer(pid=12, uid=5002, gid=5002)
ADMIN = Peer(pid=13, uid=5003, gid=5003, groups=(7003,))  # in group "ops"
SPEC = {"image": "busybox", "command": ["true"], "env": {"TOKEN": "s3cret"}}


@pytest.fixture(autouse=True)
def groups(monkeypatch):
    table = {
        "ops": grp.struct_group(("ops", "x", 7003, [])),
        "ci": grp.struct_group(("ci", "x", 7001, ["bob"])),
    }

    def getgrnam(name):
        if name not in table:
            raise KeyError(name)
        return table[name]

    monkeypatch.setattr("agent.api.peers.grp.getgrnam", getgrnam)
    monkeypatch.setattr("agent.api.peers.pwd.getpwuid", lambda uid: _no_account(uid))


def _no_account(uid):
    raise KeyError(uid)


@pytest.fixture
def service(feed_service, unit_config):
    unit_config.admin_groups = ["ops"]
    return feed_service


def submit(service, peer, spec=SPEC):
    return service.submit(SubmitParams(spec=dict(spec)), peer=peer)


def ended(service, job_id):
    service.store.transition(job_id, State.CANCELLED)


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(Unauthorized) as excinfo:
        call(*args, **kwargs)
    assert excinfo.value.code == -32006
    return excinfo.value.message


def test_another_member_may_not_cancel_and_the_refusal_is_logged(service, caplog):
    job = submit(service, ALICE)
    message = refused(service.cancel, JobRef(job["id"]), peer=BOB)
    assert message == (
        f"job {job['id']} belongs to uid 5001; only its owner, root, the agent's user or "
        "members of admin_groups may cancel it"
    )
    assert f"refused uid 5002 (pid 12): {message}" in caplog.text
    assert service.store.get(job["id"])["state"] == "queued"


@pytest.mark.parametrize("who", [ALICE, ADMIN, None])
def test_the_owner_an_admin_and_the_agent_may_cancel_and_the_event_names_them(service, who):
    job = submit(service, ALICE)
    assert service.cancel(JobRef(job["id"]), peer=who)["state"] == "cancelled"
    last = service.store.events(job["id"])[-1]
    assert last["state"] == "cancelled" and last["detail"] == {"by": who.uid if who else None}


def test_a_running_jobs_cancel_request_names_who_asked(service):
    job = submit(service, ALICE)
    service.store.transition(job["id"], State.STARTING, new_attempt="submit")
    service.cancel(JobRef(job["id"]), peer=ADMIN)
    last = service.store.events(job["id"])[-1]
    assert (last["kind"], last["detail"]) == ("cancel-requested", {"by": ADMIN.uid})


def test_others_see_a_job_without_its_env_values_or_output(service):
    job = submit(service, ALICE)
    service.store.update(job["id"], log_tail="s3cret printed")
    theirs = service.get(JobRef(job["id"]), peer=BOB)
    assert theirs["spec"]["env"] == {"TOKEN": None} and theirs["log_tail"] is None
    assert theirs["withheld"] is True and theirs["state"] == "queued"
    assert theirs["spec"]["image"] == "busybox"
    own = service.get(JobRef(job["id"]), peer=ALICE)
    assert own["spec"]["env"] == {"TOKEN": "s3cret"} and own["log_tail"] == "s3cret printed"
    assert "withheld" not in own
    listed = service.list(ListParams(), peer=BOB)["jobs"]  # summaries: no env at all
    assert [(j["id"], j["withheld"], "spec" in j) for j in listed] == [(job["id"], True, False)]


def test_a_page_looks_the_caller_up_once(service, monkeypatch):
    for who in (ALICE, BOB, ALICE):
        submit(service, who)
    looked_up = []
    monkeypatch.setattr(
        "agent.api.peers.pwd.getpwuid", lambda uid: looked_up.append(uid) or _no_account(uid)
    )
    service.owners.actor(BOB)
    once = list(looked_up)
    looked_up.clear()
    listed = service.list(ListParams(), peer=BOB)["jobs"]
    assert [j.get("withheld", False) for j in listed] == [True, False, True]
    assert looked_up == once


def test_list_others_false_hides_others_jobs_and_fills_the_page(service, unit_config):
    unit_config.list_others = False
    mine = [submit(service, BOB)["id"] for _ in range(2)]
    for _ in range(5):
        submit(service, ALICE)
    mine.append(submit(service, BOB)["id"])
    page = service.list(ListParams(limit=2), peer=BOB)
    assert [j["id"] for j in page["jobs"]] == mine[::-1][:2]
    rest = service.list(ListParams(limit=2, cursor=page["cursor"]), peer=BOB)
    assert [j["id"] for j in rest["jobs"]] == [mine[0]]
    assert len(service.list(ListParams(), peer=ADMIN)["jobs"]) == 8
    alices = service.list(ListParams(), peer=ALICE)["jobs"][0]["id"]
    assert "see it (list_others = false)" in refused(service.get, JobRef(alices), peer=BOB)


def test_logs_and_artifacts_are_the_owners(service):
    job = submit(service, ALICE)
    ended(service, job["id"])
    assert "read its output" in refused(service.logs, LogsParams(job["id"]), peer=BOB)
    assert "read its artifacts" in refused(service.artifacts, ArtifactsParams(job["id"]), peer=BOB)
    assert service.logs(LogsParams(job["id"]), peer=ALICE)["entries"] == []
    assert service.artifacts(ArtifactsParams(job["id"]), peer=ADMIN)["id"] == job["id"]


def test_remove_is_the_owners_and_prune_by_a_member_touches_only_theirs(service):
    alices, bobs = submit(service, ALICE)["id"], submit(service, BOB)["id"]
    for job_id in (alices, bobs):
        ended(service, job_id)
    assert "remove it" in refused(service.remove, JobRef(alices), peer=BOB)
    assert service.prune(PruneParams(older_than=0), peer=BOB)["removed"] == [bobs]
    assert service.store.job_ids() == {alices}
    assert service.prune(PruneParams(older_than=0), peer=ADMIN)["removed"] == [alices]


def test_a_job_with_no_owner_is_the_admins_alone(service):
    job = submit(service, None)
    ended(service, job["id"])
    assert "has no owner" in refused(service.remove, JobRef(job["id"]), peer=ALICE)
    assert service.remove(JobRef(job["id"]), peer=ADMIN)["id"] == job["id"]


def test_a_secret_not_granted_is_refused_naming_it_with_nothing_stored(service, unit_config):
    unit_config.secret_access = {"GITHUB_TOKEN": ["ci"]}
    spec = {"image": "busybox", "secrets": ["GITHUB_TOKEN", "NPM_TOKEN"]}
    message = refused(submit, service, ALICE, spec)
    assert "may not use GITHUB_TOKEN, NPM_TOKEN" in message and "secret_access" in message
    assert service.store.job_ids() == set()
    bob = Peer(pid=1, uid=5002, gid=5002, groups=(7001,))  # in group ci
    assert "NPM_TOKEN" in refused(submit, service, bob, spec)
    assert submit(service, bob, {**spec, "secrets": ["GITHUB_TOKEN"]})["state"] == "queued"
    assert submit(service, ADMIN, spec)["state"] == "queued"  # the admins may use any


def test_list_others_off_keeps_others_events_from_a_subscriber(service, unit_config):
    unit_config.list_others = False
    seen: list[dict] = []
    done = threading.Event()

    def subscribe():
        service.subscribe(SubscribeParams(count=2, timeout=60), emit=seen.append, peer=BOB)
        done.set()

    threading.Thread(target=subscribe, daemon=True).start()
    bobs = set()
    # The stream starts at an unknown moment: once it has passed one of Bob's
    # events, the next round's Alice event comes after its start for sure.
    while not done.is_set():
        submit(service, ALICE)
        bobs.add(submit(service, BOB)["id"])
        done.wait(0.05)
    assert len(seen) == 2 and {e["job_id"] for e in seen} <= bobs


def test_schedules_belong_to_their_adder(service, unit_config):
    scheduler = Scheduler(service.store, service, unit_config, files=service.files)
    schedules = Schedules(service.store, scheduler, service)
    spec = {"image": "busybox", "env": {"TOKEN": "s3cret"}}
    schedules.add(ScheduleAddParams("nightly", "0 3 * * *", spec), peer=ALICE)
    theirs = schedules.list(ScheduleListParams("nightly"), peer=BOB)
    assert theirs["spec"]["env"] == {"TOKEN": None} and theirs["created_by"] == ALICE.uid
    assert "trigger it" in refused(schedules.trigger, ScheduleTriggerParams("nightly"), peer=BOB)
    assert "remove it" in refused(schedules.remove, ScheduleRef("nightly"), peer=BOB)
    run = schedules.trigger(ScheduleTriggerParams("nightly"), peer=ADMIN)["job"]
    assert run["submitter_uid"] == ALICE.uid  # the run is the schedule owner's
    assert service.store.events(run["id"])[-1]["detail"] == {"by": ADMIN.uid}
    assert schedules.remove(ScheduleRef("nightly"), peer=ALICE)["name"] == "nightly"
    with pytest.raises(InvalidTransition):
        service.remove(JobRef(run["id"]), peer=ALICE)  # still queued: not removable


def test_a_schedules_runs_use_its_owners_credentials(service, unit_config):
    unit_config.secret_access = {"GITHUB_TOKEN": ["5001"]}
    scheduler = Scheduler(service.store, service, unit_config, files=service.files)
    schedules = Schedules(service.store, scheduler, service)
    spec = {"image": "busybox", "secrets": ["GITHUB_TOKEN"]}
    assert "GITHUB_TOKEN" in refused(
        schedules.add, ScheduleAddParams("s", "0 3 * * *", spec), peer=BOB
    )
    schedules.add(ScheduleAddParams("s", "0 3 * * *", spec), peer=ALICE)
    unit_config.secret_access = {}  # taken away: the next run is refused, even by an admin's hand
    assert "GITHUB_TOKEN" in refused(schedules.trigger, ScheduleTriggerParams("s"), peer=ADMIN)

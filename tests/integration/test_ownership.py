"""Who may do what to whose jobs: two members and an admin, real uids, real agent and chooctl.

The users are the test user's subordinate uids (tests/other_uids.py): Alice
and Bob are plain members (allowed_users), the admin a member of
``admin_groups`` by a supplementary group the kernel reports. Every refusal is
seen through chooctl (exit 125 and the agent's message) and over the raw
socket (-32006), and every allowance does what it says.
"""

from __future__ import annotations

import json

import pytest

from tests import other_uids
from tests.other_uids import ADMIN, ADMIN_GROUP, ALICE, BOB, chooctl, host_uid, start_open

pytestmark = pytest.mark.podman
open_socket_dir = other_uids.open_socket_dir

TOKEN = "tok-3f9a1c"
RULE = "only its owner, root, the agent's user or members of admin_groups may"


@pytest.fixture
def users():
    return {who: host_uid(who) for who in (ALICE, BOB, ADMIN)}


@pytest.fixture
def shared(make_agent, open_socket_dir, users):
    """An agent for the three users; GITHUB_TOKEN is in its environment, for Alice alone."""
    return start_open(
        make_agent,
        open_socket_dir,
        env={"GITHUB_TOKEN": TOKEN},
        allowed_users=[str(uid) for uid in users.values()],
        admin_groups=[ADMIN_GROUP],
        secret_env=["GITHUB_TOKEN"],
        secret_access={"GITHUB_TOKEN": [str(users[ALICE])]},
    )


def ok(done) -> str:
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    return done.stdout


def refused(done, *words: str) -> str:
    assert done.returncode == 125, f"exit {done.returncode}: {done.stdout}{done.stderr}"
    for word in words:
        assert word in done.stderr, done.stderr
    return done.stderr


def rpc(who: int, agent, method: str, **params) -> dict:
    return other_uids.call(who, agent.socket, method, **params)


def test_members_and_an_admin_over_chooctl_and_the_socket(shared, image, users):
    agent, alice = shared, users[ALICE]
    # Alice's finished job, with an env value, output and an artifact.
    script = "echo out-of-alice; echo art > /out/a.txt"
    submit = ["submit", "-q", "-e", f"MODE={TOKEN}", image, "sh", "-c", script]
    job_id = ok(chooctl(ALICE, agent.socket, *submit)).strip()
    assert agent.call("job.wait", id=job_id, timeout=60)["state"] == "succeeded"
    assert agent.call("job.get", id=job_id)["submitter_uid"] == alice
    whose = f"job {job_id} belongs to uid {alice}; {RULE}"

    # Bob, a member too: sees it, never what it holds.
    assert job_id in ok(chooctl(BOB, agent.socket, "ps", "-a", "-q")).split()
    shown = json.loads(ok(chooctl(BOB, agent.socket, "inspect", job_id)))[0]
    assert shown["spec"]["env"] == {"MODE": None} and shown["withheld"] is True
    assert TOKEN not in json.dumps(shown) and shown["state"] == "succeeded"
    refused(chooctl(BOB, agent.socket, "logs", job_id), whose, "read its output")
    refused(chooctl(BOB, agent.socket, "artifacts", "-o", "-", job_id), "read its artifacts")
    refused(chooctl(BOB, agent.socket, "rm", job_id), whose, "remove it")
    answer = rpc(BOB, agent, "job.logs", id=job_id)
    assert answer["error"]["code"] == -32006 and whose in answer["error"]["message"]
    assert rpc(BOB, agent, "job.artifacts", id=job_id)["error"]["code"] == -32006
    # Bob's prune removes Bob's finished jobs only.
    bobs = ok(chooctl(BOB, agent.socket, "submit", "-q", image, "true")).strip()
    agent.call("job.wait", id=bobs, timeout=60)
    ok(chooctl(BOB, agent.socket, "prune", "--older-than", "0"))
    ids = {j["id"] for j in agent.call("job.list", all=True)["jobs"]}
    assert job_id in ids and bobs not in ids

    # The admin may read and change it.
    assert "out-of-alice" in ok(chooctl(ADMIN, agent.socket, "logs", job_id))
    full = json.loads(ok(chooctl(ADMIN, agent.socket, "inspect", job_id)))[0]
    assert full["spec"]["env"] == {"MODE": TOKEN}
    assert "withheld" not in full
    packed = rpc(ADMIN, agent, "job.artifacts", id=job_id)["result"]
    assert packed["state"] == "packed"
    # And the owner removes her own.
    ok(chooctl(ALICE, agent.socket, "rm", job_id))

    # A running job: Bob may not cancel it, the admin may, and the event says who.
    running = ok(chooctl(ALICE, agent.socket, "submit", "-q", image, "sleep", "300")).strip()
    agent.wait_state(running, "running", timeout=60)
    refused(chooctl(BOB, agent.socket, "cancel", running), f"job {running} belongs to", "cancel it")
    assert agent.call("job.get", id=running)["state"] == "running"
    ok(chooctl(ADMIN, agent.socket, "cancel", running))
    ended = agent.call("job.wait", id=running, timeout=60)
    assert ended["state"] == "cancelled"
    asked = [
        e for e in agent.call("job.get", id=running)["events"] if e["kind"] == "cancel-requested"
    ]
    assert asked[0]["detail"] == {"by": users[ADMIN]}

    log = agent.log()
    assert f"refused uid {users[BOB]}" in log and "may cancel it" in log


def test_schedules_belong_to_their_adder_and_run_with_the_owners_rights(shared, image, users):
    agent, alice = shared, users[ALICE]
    ok(
        chooctl(
            ALICE,
            agent.socket,
            "schedule",
            "add",
            "--secret",
            "GITHUB_TOKEN",
            "nightly",
            "0 3 * * *",
            image,
            "sh",
            "-c",
            "echo token=$GITHUB_TOKEN",
        )
    )
    whose = f"schedule nightly belongs to uid {alice}; {RULE}"
    refused(chooctl(BOB, agent.socket, "schedule", "rm", "nightly"), whose, "remove it")
    refused(chooctl(BOB, agent.socket, "schedule", "run", "nightly"), whose, "trigger it")
    # The admin triggers it: the run is Alice's, with Alice's credential.
    run = json.loads(ok(chooctl(ADMIN, agent.socket, "schedule", "run", "--json", "nightly")))
    job = agent.call("job.wait", id=run["job"]["id"], timeout=60)
    assert job["submitter_uid"] == alice and job["state"] == "succeeded"
    assert agent.output_lines(job["id"]) == ["token=" + TOKEN]
    triggered = [
        e for e in agent.call("job.get", id=job["id"])["events"] if e["kind"] == "triggered"
    ]
    assert triggered[0]["detail"] == {"by": users[ADMIN]}
    ok(chooctl(ALICE, agent.socket, "schedule", "rm", "nightly"))
    assert agent.call("schedule.list") == []


def test_a_credential_refused_by_policy_stores_nothing(shared, image, users):
    agent = shared
    before = agent.call("job.list", all=True)["jobs"]
    refused(
        chooctl(BOB, agent.socket, "submit", "--secret", "GITHUB_TOKEN", image, "true"),
        f"uid {users[BOB]} may not use GITHUB_TOKEN",
        "secret_access",
    )
    answer = rpc(BOB, agent, "job.submit", spec={"image": image, "secrets": ["GITHUB_TOKEN"]})
    assert answer["error"]["code"] == -32006 and answer["error"]["data"] == {
        "secrets": ["GITHUB_TOKEN"]
    }
    assert agent.call("job.list", all=True)["jobs"] == before  # nothing stored
    # Alice is listed: her job gets the value.
    out = ok(
        chooctl(
            ALICE,
            agent.socket,
            "run",
            "--secret",
            "GITHUB_TOKEN",
            image,
            "sh",
            "-c",
            "echo token=$GITHUB_TOKEN",
        )
    )
    assert f"token={TOKEN}" in out


def test_list_others_false_hides_others_jobs_entirely(make_agent, open_socket_dir, image, users):
    agent = start_open(
        make_agent,
        open_socket_dir,
        allowed_users=[str(uid) for uid in users.values()],
        admin_groups=[ADMIN_GROUP],
        list_others=False,
    )
    alices = ok(chooctl(ALICE, agent.socket, "submit", "-q", image, "true")).strip()
    bobs = ok(chooctl(BOB, agent.socket, "submit", "-q", image, "true")).strip()
    for job_id in (alices, bobs):
        agent.call("job.wait", id=job_id, timeout=60)
    assert ok(chooctl(BOB, agent.socket, "ps", "-a", "-q")).split() == [bobs]
    refused(chooctl(BOB, agent.socket, "inspect", alices), f"job {alices} belongs to uid")
    refused(chooctl(BOB, agent.socket, "wait", alices), "list_others = false")
    assert set(ok(chooctl(ADMIN, agent.socket, "ps", "-a", "-q")).split()) == {alices, bobs}

"""agent/rules/ownership.py and agent/rules/fairness.py: the pure access and slot policies."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.rules import fairness
from agent.rules import ownership as rules
from agent.rules.ownership import Actor

AGENT = 1001
ALICE = Actor(uid=2001, user="alice", groups=frozenset({"choo"}))
BOB = Actor(uid=2002, user="bob", groups=frozenset({"choo", "ci"}))
CAROL = Actor(uid=2003, user="carol", groups=frozenset({"choo", "ops"}))
NAMELESS = Actor(uid=100999)


def admin(actor: Actor, groups=("ops",)) -> bool:
    return rules.is_admin(actor, agent_uid=AGENT, admin_groups=groups)


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        (Actor(uid=None), True),  # the agent itself (scheduler, retention)
        (Actor(uid=0), True),  # root
        (Actor(uid=AGENT), True),  # the agent's own user
        (CAROL, True),  # a member of an admin group
        (ALICE, False),
        (BOB, False),  # in groups, none of them an admin group
        (NAMELESS, False),
    ],
)
def test_who_is_an_admin(actor, expected):
    assert admin(actor) is expected


def test_no_admin_groups_means_only_root_and_the_agent():
    assert not admin(CAROL, groups=())
    assert admin(Actor(uid=0), groups=())


@pytest.mark.parametrize(
    ("actor", "owner", "expected"),
    [
        (ALICE, ALICE.uid, True),  # the owner
        (BOB, ALICE.uid, False),  # another member of the same group
        (CAROL, ALICE.uid, True),  # an admin
        (Actor(uid=0), ALICE.uid, True),
        (ALICE, None, False),  # nobody's: the admins' alone
        (CAROL, None, True),
        (NAMELESS, NAMELESS.uid, True),
    ],
)
def test_may_touch(actor, owner, expected):
    assert rules.may_touch(actor, owner, admin=admin(actor)) is expected


def test_the_refusal_names_the_owner_rule():
    message = rules.refusal("job 01J", 2001, "cancel it")
    assert message == (
        "job 01J belongs to uid 2001; only its owner, root, the agent's user or "
        "members of admin_groups may cancel it"
    )
    assert "has no owner" in rules.refusal("schedule s", None, "remove it")


ACCESS = {"GITHUB_TOKEN": ["ci", "alice"], "NPM_TOKEN": ["2003"], "OPEN": ["*"]}


@pytest.mark.parametrize(
    ("actor", "name", "access", "expected"),
    [
        (ALICE, "GITHUB_TOKEN", ACCESS, True),  # by user name
        (BOB, "GITHUB_TOKEN", ACCESS, True),  # by group
        (CAROL, "NPM_TOKEN", ACCESS, True),  # by uid
        (ALICE, "NPM_TOKEN", ACCESS, False),
        (NAMELESS, "OPEN", ACCESS, True),  # "*": anyone on the socket
        (ALICE, "UNLISTED", ACCESS, False),  # unlisted: the admins' alone
        (ALICE, "UNLISTED", {**ACCESS, "*": ["choo"]}, True),  # the "*" key covers it
        (NAMELESS, "UNLISTED", {"*": ["choo"]}, False),
        (ALICE, "GITHUB_TOKEN", {"GITHUB_TOKEN": [], "*": ["*"]}, False),  # listed wins
        (ALICE, "X", {}, False),
    ],
)
def test_may_use_secret(actor, name, access, expected):
    assert rules.may_use_secret(actor, name, access, admin=False) is expected


def test_admins_may_use_every_secret_and_refusals_keep_their_order():
    assert rules.may_use_secret(ALICE, "UNLISTED", {}, admin=True)
    names = ["NPM_TOKEN", "GITHUB_TOKEN", "UNLISTED"]
    assert rules.refused_secrets(ALICE, names, ACCESS, admin=False) == ["NPM_TOKEN", "UNLISTED"]


def test_withheld_blanks_env_values_and_output_but_keeps_the_rest():
    job = {
        "id": "01J",
        "state": "failed",
        "spec": {"image": "busybox", "env": {"TOKEN": "s3cret", "MODE": "x"}},
        "log_tail": "s3cret printed here",
    }
    shown = rules.withheld(job)
    assert shown["spec"] == {"image": "busybox", "env": {"TOKEN": None, "MODE": None}}
    assert shown["log_tail"] is None and shown["withheld"] is True
    assert shown["state"] == "failed" and shown["id"] == "01J"
    assert job["spec"]["env"]["TOKEN"] == "s3cret"  # the record itself is untouched


def test_names_of_interest_are_groups_not_uids_or_the_wildcard():
    names = rules.names_of_interest(["ops"], ACCESS)
    assert names == {"ops", "ci", "alice"}


# -- fairness --------------------------------------------------------------


@dataclass
class Slot:
    uid: int
    busy: bool = False
    last_active: float = 0.0


def choose(slots, uid, *, per_uid=3, total=6):
    return fairness.victim(slots, uid, privileged=(0, AGENT), per_uid=per_uid, total=total)


def test_room_left_admits_without_closing_anything():
    assert choose([Slot(2001), Slot(2002)], 2003) is None


def test_a_uid_at_its_cap_gives_up_its_own_longest_idle():
    mine = [Slot(2001, last_active=t) for t in (3.0, 1.0, 2.0)]
    assert choose(mine, 2001) is mine[1]


def test_a_uid_at_its_cap_with_every_call_busy_is_refused():
    mine = [Slot(2001, busy=True) for _ in range(3)]
    reason = choose(mine, 2001)
    assert isinstance(reason, str) and "max_connections_per_uid (3)" in reason


def test_the_privileged_are_not_capped_per_uid():
    assert choose([Slot(AGENT, busy=True) for _ in range(3)], AGENT) is None


def test_when_full_the_uid_holding_the_most_gives_way_even_inside_calls():
    hog = [Slot(2001, busy=True, last_active=t) for t in (5.0, 4.0, 6.0)]
    other = [Slot(2002, last_active=0.0), Slot(2002), Slot(2003)]
    assert choose(hog + other, 2004) is hog[1]  # longest in its call; not 2002's idle one


def test_when_full_an_idle_connection_of_the_heaviest_goes_first():
    hog = [Slot(2001, busy=True), Slot(2001, last_active=9.0), Slot(2001, busy=True)]
    assert choose(hog + [Slot(2002)] * 3, 2004) is hog[1]


def test_a_newcomer_holding_as_many_as_anyone_uses_its_own_idle_or_is_refused():
    slots = [Slot(2001, busy=True)] * 3 + [Slot(2002, busy=True)] * 3
    reason = choose(slots, 2002, per_uid=4)
    assert isinstance(reason, str) and "max_connections (6)" in reason
    idle = Slot(2002, last_active=1.0)
    slots = [Slot(2001, busy=True)] * 3 + [Slot(2002, busy=True)] * 2 + [idle]
    assert choose(slots, 2002, per_uid=4) is idle


@pytest.mark.parametrize("uid", [0, AGENT])
def test_root_and_the_agents_user_always_get_in(uid):
    slots = [Slot(2001, busy=True)] * 4 + [Slot(uid, busy=True)] * 2
    assert choose(slots, uid).uid == 2001
    # Even when the unprivileged uid holds fewer than they do.
    slots = [Slot(2001, busy=True)] + [Slot(uid, busy=True)] * 5
    assert choose(slots, uid).uid == 2001


def test_the_agents_user_holding_the_most_gives_way_to_others():
    slots = [Slot(AGENT, busy=True)] * 5 + [Slot(2001)]
    assert choose(slots, 2002).uid == AGENT

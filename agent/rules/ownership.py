"""Who may read or change a job, a schedule or a credential: the ownership policy.

Pure: it decides from an ``Actor`` (who is asking, already resolved by the api
from the peer's credentials and the account databases) and the settings; it
never looks an account up, reads a job or raises. The api applies it
(agent/api/owners.py) and turns a refusal into error -32006.

The rule: a job or schedule belongs to the uid that submitted or added it.
Its owner and the admins (root, the agent's own user, members of
``admin_groups``) may read what it holds and change it; everyone else allowed
on the socket may only see that it exists. A credential may be asked for by
those ``secret_access`` lists for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: The key of ``secret_access`` whose list applies to every credential not
#: listed by name; in a list, the entry that matches anyone allowed on the socket.
ANY = "*"

#: Fields of a job record that carry what the job holds, withheld from
#: others: the tail of its output (error text, anything the job printed).
PRIVATE_FIELDS = ("log_tail",)


@dataclass(frozen=True)
class Actor:
    """Who is asking.

    ``uid`` None is the agent itself (its scheduler and housekeeping), which
    may do anything. ``groups`` holds the names of the groups the actor is a
    member of, as far as the settings name them.
    """

    uid: int | None
    user: str | None = None
    groups: frozenset[str] = frozenset()


def is_admin(actor: Actor, *, agent_uid: int, admin_groups: Iterable[str]) -> bool:
    """True for the agent itself, root, the agent's own user and members of ``admin_groups``."""
    if actor.uid is None or actor.uid in (0, agent_uid):
        return True
    return not actor.groups.isdisjoint(admin_groups)


def may_touch(actor: Actor, owner: int | None, *, admin: bool) -> bool:
    """True if ``actor`` may read what a thing owned by uid ``owner`` holds, or change it.

    A thing with no recorded owner (made by the agent itself, or before owners
    were recorded) is the admins' alone.
    """
    return admin or (owner is not None and owner == actor.uid)


def refusal(what: str, owner: int | None, action: str) -> str:
    """The message of a refusal: which rule it is, and whom it lets through.

    Args:
        what: the thing, e.g. "job 01J..." or "schedule nightly".
        owner: its owner's uid (None: nobody's).
        action: what was refused, e.g. "cancel it".
    """
    whose = f"belongs to uid {owner}" if owner is not None else "has no owner"
    return (
        f"{what} {whose}; only its owner, root, the agent's user or members of "
        f"admin_groups may {action}"
    )


def matches(actor: Actor, entries: Iterable[str]) -> bool:
    """True if one of ``entries`` names the actor: ``*``, its user name, its uid
    (as digits) or one of its groups."""
    for entry in entries:
        if entry == ANY or entry in actor.groups:
            return True
        if actor.user is not None and entry == actor.user:
            return True
        if actor.uid is not None and entry == str(actor.uid):
            return True
    return False


def may_use_secret(
    actor: Actor, name: str, access: Mapping[str, list[str]], *, admin: bool
) -> bool:
    """True if ``actor`` may have credential ``name`` handed to its job.

    ``access`` is the ``secret_access`` setting: credential name to who may
    ask for it. A credential it does not list follows the ``*`` entry if there
    is one; without one it is the admins' alone (a credential is the agent's,
    not every socket member's). Admins may always ask.
    """
    if admin:
        return True
    entries = access.get(name, access.get(ANY, []))
    return matches(actor, entries)


def refused_secrets(
    actor: Actor, names: Iterable[str], access: Mapping[str, list[str]], *, admin: bool
) -> list[str]:
    """Those of ``names`` that ``actor`` may not ask for, in order."""
    return [n for n in names if not may_use_secret(actor, n, access, admin=admin)]


def withheld(job: dict) -> dict:
    """A copy of a job record with what it holds left out: env values and the log tail.

    The variable names stay (they say what the job is configured with, not the
    values); each value becomes None.
    """
    out = {**job, "withheld": True}
    if "spec" in job:  # a job.list summary has none
        spec = out["spec"] = dict(job["spec"] or {})
        if spec.get("env"):
            spec["env"] = dict.fromkeys(spec["env"])
    for key in PRIVATE_FIELDS:
        if key in out:
            out[key] = None
    return out


def names_of_interest(admin_groups: Iterable[str], access: Mapping[str, list[str]]) -> set[str]:
    """The group names the policy may ask about (the api resolves membership of these only)."""
    names = set(admin_groups)
    for entries in access.values():
        names.update(e for e in entries if e != ANY and not e.isdigit())
    return names

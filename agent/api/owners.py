"""The ownership policy applied: who the caller is, and refusing what is not theirs.

The use cases (service.py, schedules.py) ask this module before they read
what a job or schedule holds, change it, or hand a credential to a job. The
decisions are agent/rules/ownership.py's; this module resolves the caller (a
``Peer``, or None for the agent itself) to an ``Actor``, logs each refusal and
raises it as ``Unauthorized`` (-32006). It never reads or writes the store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from agent.api.peers import Peer, account, memberships
from agent.config import Config
from agent.protocol.errors import Unauthorized
from agent.rules import ownership as rules

log = logging.getLogger(__name__)

#: The job record's owner: the uid that submitted it (a schedule's run: the schedule's owner).
OWNER = "submitter_uid"


class Owners:
    """The ownership checks, over the live configuration (a reload applies at once)."""

    def __init__(self, config: Config, *, agent_uid: int | None = None):
        self.config = config
        self.agent_uid = os.getuid() if agent_uid is None else agent_uid

    def actor(self, peer: Peer | None) -> rules.Actor:
        """Who ``peer`` is, as the policy needs it (None, or a uid of None: the agent)."""
        if peer is None or peer.uid is None:
            return rules.Actor(uid=None)
        user = account(peer.uid)
        names = rules.names_of_interest(self.config.admin_groups, self.config.secret_access)
        return rules.Actor(
            uid=peer.uid,
            user=user.pw_name if user else None,
            groups=memberships(peer, names) if names else frozenset(),
        )

    def is_admin(self, peer: Peer | None) -> bool:
        """True for the agent itself, root, the agent's user and members of ``admin_groups``."""
        return self._admin(self.actor(peer))

    def _admin(self, actor: rules.Actor) -> bool:
        return rules.is_admin(
            actor, agent_uid=self.agent_uid, admin_groups=self.config.admin_groups
        )

    def may_touch(self, peer: Peer | None, owner: int | None) -> bool:
        """True if ``peer`` may read what a thing of ``owner`` holds, or change it."""
        if peer is None:
            return True
        actor = self.actor(peer)
        return rules.may_touch(actor, owner, admin=self._admin(actor))

    def may_see(self, peer: Peer | None, owner: int | None) -> bool:
        """True if a thing of ``owner`` appears in ``peer``'s listings and event streams."""
        return self.config.list_others or self.may_touch(peer, owner)

    def visible(self, peer: Peer | None, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Those of ``records`` (jobs) that appear in ``peer``'s listings, each as
        ``shown`` gives it; who ``peer`` is is looked up once for them all."""
        if peer is None:
            return records
        actor = self.actor(peer)
        admin = self._admin(actor)
        out = []
        for record in records:
            whole = rules.may_touch(actor, record.get(OWNER), admin=admin)
            if whole:
                out.append(record)
            elif self.config.list_others:
                out.append(rules.withheld(record))
        return out

    def require(self, peer: Peer | None, what: str, owner: int | None, action: str) -> None:
        """Return if ``peer`` may do ``action`` to ``what`` (owned by uid ``owner``).

        Raises:
            Unauthorized: naming the owner rule; the refusal is logged.
        """
        if self.may_touch(peer, owner):
            return
        message = rules.refusal(what, owner, action)
        log.warning("refused uid %d (pid %s): %s", peer.uid, peer.pid, message)
        raise Unauthorized(message, {"owner": owner})

    def shown(
        self, peer: Peer | None, record: dict[str, Any], owner_key: str = OWNER
    ) -> dict[str, Any]:
        """``record`` as ``peer`` may see it: whole for its owner and the admins,
        without env values and output for others."""
        if self.may_touch(peer, record.get(owner_key)):
            return record
        return rules.withheld(record)

    def require_secrets(self, peer: Peer | None, names: Iterable[str]) -> None:
        """Return if ``peer`` may ask for every credential in ``names``.

        Raises:
            Unauthorized: naming the credentials refused; the refusal is logged.
        """
        names = list(names)
        if peer is None or not names:
            return
        actor = self.actor(peer)
        refused = rules.refused_secrets(
            actor, names, self.config.secret_access, admin=self._admin(actor)
        )
        if not refused:
            return
        listed = ", ".join(refused)
        message = (
            f"secrets: uid {peer.uid} may not use {listed}; secret_access in the agent's "
            "configuration says who may ask for each credential (unlisted ones: only root, "
            "the agent's user and members of admin_groups); ask an admin, or leave "
            f"{listed} out of the spec"
        )
        log.warning("refused uid %d (pid %s): %s", peer.uid, peer.pid, message)
        raise Unauthorized(message, {"secrets": refused})

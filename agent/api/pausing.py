"""``queue.pause``, ``queue.resume``, ``queue.limit`` and ``queue.state`` (part of the service).

An admin's alone (root, the agent's user, members of ``admin_groups``): a
pause or a limit holds back every user's jobs. Each is stored
(agent/storage/queue.py), so it outlives a restart, and wakes the controller;
what it means at admission is agent/rules/admission.py's. Showing a limit or
the queue's state is anyone's, as ``agent.info`` is. Running jobs are never touched.
"""

from __future__ import annotations

import logging
import time

from agent.api.peers import Peer
from agent.protocol import pausing
from agent.protocol.errors import InvalidParams, Unauthorized
from agent.protocol.spec import NAME_RE

log = logging.getLogger(__name__)


def _name(value: object, what: str) -> str:
    """A job name as the spec allows one (so a pause or limit can match jobs)."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise InvalidParams(
            f"{what}: expected a job name (letters, digits, '_', '.', '-'; max 64), got {value!r}"
        )
    return value


class Pausing:
    """``queue.*``, as a part of ``Service`` (whose store, config, owners and wake it uses)."""

    def queue_state(self) -> pausing.QueueState:
        """What is paused and limited now (``queue.state``, and ``agent.info``'s ``queue``)."""
        control = self.store.queue_control()
        return {
            "paused": control.paused,
            "pauses": self.store.pauses(),
            "name_limits": control.name_limits(self.config.name_limits),
            "runtime_limits": dict(control.limits),
        }

    def pause(self, params: pausing.QueueRef, *, peer: Peer | None = None) -> pausing.QueueChange:
        """Admit no new job (of ``name``, or none at all); running jobs go on.

        Raises:
            InvalidParams: ``name`` is not a job name; Unauthorized: not an admin.
        """
        return self._set_paused(params, True, peer)

    def resume(self, params: pausing.QueueRef, *, peer: Peer | None = None) -> pausing.QueueChange:
        """Undo a pause; ``changed`` is False when it was not paused.

        Raises:
            InvalidParams: ``name`` is not a job name; Unauthorized: not an admin.
        """
        return self._set_paused(params, False, peer)

    def _set_paused(
        self, params: pausing.QueueRef, paused: bool, peer: Peer | None
    ) -> pausing.QueueChange:
        name = None if params.name is None else _name(params.name, "name")
        what = "the queue" if name is None else f"jobs named {name}"
        self._require_admin(peer, ("pause " if paused else "resume ") + what)
        by = peer.uid if peer else None
        changed = self.store.set_paused(name, paused, at=time.time(), by=by)
        if changed:
            log.info("%s %s by uid %s", what, "paused" if paused else "resumed", by)
            self.wake()
        return {"changed": changed, "queue": self.queue_state()}

    def limit(self, params: pausing.LimitParams, *, peer: Peer | None = None) -> pausing.NameLimit:
        """Show, set or clear (``default``) the runtime limit of jobs named ``name``.

        A name no job has yet may be limited ahead of time. Jobs already
        running above a lowered limit go on; no more start until below it.

        Raises:
            InvalidParams: a bad name, a limit that is no whole number from 0 to
                ``MAX_LIMIT``, or both ``limit`` and ``default``;
            Unauthorized: setting or clearing, and not an admin.
        """
        name = _name(params.name, "name")
        if not isinstance(params.default, bool):
            raise InvalidParams(f"default: expected true or false, got {params.default!r}")
        limit = params.limit
        if limit is not None and params.default:
            raise InvalidParams(
                "limit and default: give a limit or default (to clear it), not both"
            )
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 0 <= limit <= pausing.MAX_LIMIT
        ):
            raise InvalidParams(
                f"limit: expected a whole number from 0 to {pausing.MAX_LIMIT} "
                f"(0: no job named {name} starts), got {limit!r}"
            )
        changed = False
        if limit is not None or params.default:
            self._require_admin(peer, f"limit jobs named {name}")
            changed = self.store.set_limit(name, limit)
            if changed:
                log.info("limit of %s set to %s by uid %s", name, limit, peer.uid if peer else None)
                self.wake()
        runtime = self.store.queue_control().limits.get(name)
        default = self.config.name_limits.get(name)
        in_force = runtime if runtime is not None else default
        source = "runtime" if runtime is not None else ("config" if default is not None else None)
        return {
            "name": name,
            "limit": in_force,
            "source": source,
            "default": default,
            "changed": changed,
        }

    def _require_admin(self, peer: Peer | None, action: str) -> None:
        """Return if ``peer`` is an admin.

        Raises:
            Unauthorized: naming who may; the refusal is logged.
        """
        if self.owners.is_admin(peer):
            return
        message = (
            f"only an admin (root, the agent's user or a member of admin_groups) may {action}: "
            "it holds back every user's jobs"
        )
        log.warning("refused uid %d (pid %s): %s", peer.uid, peer.pid, message)
        raise Unauthorized(message)

"""Holding and delaying jobs at submit (``hold``, ``not_before``, ``delay``) and
``job.release`` (part of the service).

A held job is queued but never admitted until released; a delayed one is
admitted no earlier than its ``not_before`` (the column a retry's backoff also
uses, so admission and the loop's wake-ups treat both alike). Only checks and
records: admission is agent/rules/admission.py's.
"""

from __future__ import annotations

import math
from typing import Any

from agent.api.peers import Peer
from agent.protocol import methods, types
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams


def submit_fields(params: methods.SubmitParams, now: float) -> dict[str, Any]:
    """The job columns a submit's ``hold``, ``not_before`` and ``delay`` set.

    Args:
        params: the submit's params.
        now: the time of the submit.

    Returns:
        ``held`` and ``not_before``, for those given.

    Raises:
        InvalidParams: a value is not one, both ``not_before`` and ``delay``
            are given, or ``not_before`` is more than a year ahead.
    """
    fields: dict[str, Any] = {}
    if not isinstance(params.hold, bool):
        raise InvalidParams(f"hold: expected true or false, got {params.hold!r}")
    if params.hold:
        fields["held"] = True
    if params.not_before is not None and params.delay is not None:
        raise InvalidParams("not_before and delay: give one of them, not both")
    if params.delay is not None:
        fields["not_before"] = now + specs.parse_duration(params.delay, "delay")
    if params.not_before is not None:
        when = params.not_before
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
            raise InvalidParams(
                f"not_before: expected a time in seconds since the epoch, got {when!r}"
            )
        if when > now + specs.MAX_SECONDS:
            raise InvalidParams("not_before: at most 366 days ahead")
        fields["not_before"] = float(when)
    return fields


class Holding:
    """``job.release``, as a part of ``Service`` (whose store, owners and wake it uses)."""

    def release(self, params: methods.JobRef, *, peer: Peer | None = None) -> types.Job:
        """Let a held job be admitted. The event records who released it.

        Raises:
            Unauthorized: ``peer`` may not change the job;
            InvalidTransition: it is not held (or no longer queued).
        """
        full = self.store.resolve(params.id)
        self._owned(full, peer, "release it")
        job = self.store.release(full, {"by": peer.uid if peer else None})
        self.wake()
        return job

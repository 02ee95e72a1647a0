"""``schedule.suspend`` and ``schedule.resume``: a schedule's fires stopped and started.

A suspended schedule keeps its record and its runs; the scheduler thread
(agent/runtime/scheduler.py) skips each fire due while it is suspended and
records it as a skip (``last_skip``), and a resume never catches those up: it
moves ``last_fire`` to now. A run by hand (``schedule.trigger``) still works.
Suspending and resuming is the schedule's owner's and the admins' (owners.py).
"""

from __future__ import annotations

import logging

from agent.api.checks import schedule_name
from agent.api.peers import Peer
from agent.api.schedules import OWNER, Schedules
from agent.protocol.methods import ScheduleListParams, ScheduleRef
from agent.protocol.pausing import ScheduleChange

log = logging.getLogger(__name__)


def suspend(
    schedules: Schedules, params: ScheduleRef, *, peer: Peer | None = None
) -> ScheduleChange:
    """Stop a schedule's fires until resumed; ``changed`` False: it already was.

    Raises:
        NoSuchSchedule; Unauthorized: ``peer`` is not its owner or an admin.
    """
    return _set(schedules, params, True, peer)


def resume(
    schedules: Schedules, params: ScheduleRef, *, peer: Peer | None = None
) -> ScheduleChange:
    """Let a suspended schedule fire again, from its next match after now
    (fires skipped while suspended are not caught up); ``changed`` False: it
    was not suspended.

    Raises:
        NoSuchSchedule; Unauthorized: ``peer`` is not its owner or an admin.
    """
    return _set(schedules, params, False, peer)


def _set(
    schedules: Schedules, params: ScheduleRef, suspended: bool, peer: Peer | None
) -> ScheduleChange:
    name = schedule_name(params.name)
    row = schedules.store.get_schedule(name)
    action = "suspend it" if suspended else "resume it"
    schedules.service.owners.require(peer, f"schedule {name}", row[OWNER], action)
    changed = (row["suspended_at"] is not None) != suspended
    if changed:
        now = schedules.scheduler.clock()
        by = peer.uid if peer else None
        if suspended:
            schedules.store.update_schedule(name, suspended_at=now, suspended_by=by)
        else:  # from now on: what fell due while suspended stays skipped
            last_fire = max(row["last_fire"], now)
            schedules.store.update_schedule(
                name, suspended_at=None, suspended_by=None, last_fire=last_fire
            )
        log.info("schedule %s %s by uid %s", name, "suspended" if suspended else "resumed", by)
        schedules.scheduler.wake()
    state = schedules.list(ScheduleListParams(name=name), peer=peer)
    return {"changed": changed, "schedule": state}

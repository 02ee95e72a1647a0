"""The schedule use cases: schedule.add, .list, .remove and .trigger.

They validate and store schedules and describe them; firing them is the
scheduler thread's (agent/runtime/scheduler.py), which a trigger asks to run
one now, under the same lock and policy as a fire. A schedule is its adder's:
removing or triggering it is its owner's and the admins' (owners.py). Never
touches Podman.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.api.checks import schedule_name
from agent.api.peers import Peer
from agent.api.service import Service
from agent.protocol import spec as specs
from agent.protocol import types
from agent.protocol.errors import InvalidParams
from agent.protocol.methods import (
    TRIGGERS,
    ScheduleAddParams,
    ScheduleListParams,
    ScheduleRef,
    ScheduleTriggerParams,
)
from agent.rules import schedule as rules
from agent.runtime.scheduler import UNFINISHED, Scheduler
from agent.storage.store import Store

log = logging.getLogger(__name__)
#: A schedule's owner: the uid that added it; its runs are submitted as that uid's.
OWNER = "created_by"


class Schedules:
    """schedule.*, over the store, the scheduler thread and its clock."""

    def __init__(self, store: Store, scheduler: Scheduler, service: Service):
        self.store = store
        self.scheduler = scheduler
        self.service = service

    def add(self, params: ScheduleAddParams, *, peer: Peer | None = None) -> types.ScheduleState:
        """Register a schedule; it first fires at the first match after now.

        Raises:
            InvalidParams: a bad setting, cron expression or spec template, or a
                workspace ``peer`` may not use.
        """
        rules.check_options(
            name=params.name,
            concurrency=params.concurrency,
            catch_up=params.catch_up,
            history_limit=params.history_limit,
            timezone=params.timezone,
        )
        cron = rules.check_cron(params.cron)
        spec = params.spec
        if isinstance(spec, dict) and spec.get("after"):
            # Each fire is a new job: a dependency on one job would be the same
            # for every run, and fail every fire once that job is pruned.
            raise InvalidParams(
                "spec.after: a schedule's runs cannot wait on a job; use the schedule's"
                " concurrency policy to order its runs, or chooctl run --after for a chain"
            )
        # Refuse a bad template, or a credential the owner may not use, now, not at 3 a.m.
        self.service.owners.require_secrets(peer, specs.normalize(spec)["secrets"])
        if spec.get("workspace"):
            self.service.check_workspace(spec["workspace"], peer)
        now = self.scheduler.clock()
        row = self.store.add_schedule(
            name=params.name,
            cron=cron,
            timezone=params.timezone,
            spec=spec,
            concurrency=params.concurrency,
            catch_up=params.catch_up,
            history_limit=params.history_limit,
            created_at=now,
            created_by=peer.uid if peer else None,
            last_fire=now,
        )
        self.scheduler.wake()
        return self._describe(row, now)

    def list(
        self, params: ScheduleListParams, *, peer: Peer | None = None
    ) -> list[types.ScheduleState] | types.ScheduleState:
        """Every schedule ``peer`` may see, or (with ``name``) the one so named;
        others' come without their template's env values (``list_others`` off:
        not at all).

        Raises:
            NoSuchSchedule: no schedule has that name; Unauthorized: it is
                another's and ``list_others`` is off.
        """
        owners, now = self.service.owners, self.scheduler.clock()
        if params.name is None:
            rows = [r for r in self.store.schedules() if owners.may_see(peer, r[OWNER])]
            return [self._describe(row, now, peer) for row in rows]
        row = self.store.get_schedule(schedule_name(params.name))
        if not owners.may_see(peer, row[OWNER]):
            owners.require(peer, f"schedule {row['name']}", row[OWNER], "see it")
        return self._describe(row, now, peer)

    def remove(self, params: ScheduleRef, *, peer: Peer | None = None) -> types.Schedule:
        """Delete a schedule; the runs it made are left as they are.

        Raises:
            Unauthorized: ``peer`` is not its owner or an admin.
        """
        name = schedule_name(params.name)
        self._owned(name, peer, "remove it")
        row = self.store.remove_schedule(name)
        log.info("schedule %s removed by uid %s", name, peer.uid if peer else "of the agent")
        self.scheduler.wake()
        return row

    def trigger(
        self, params: ScheduleTriggerParams, *, peer: Peer | None = None
    ) -> types.Triggered:
        """Run a schedule now, under its concurrency policy; its cron timing is
        unchanged. The run is the schedule owner's, with the owner's rights;
        its ``triggered`` event records who asked.

        Returns:
            ``job`` (the new run, or None), ``skipped`` (why not, or None) and
            ``cancelled`` (runs stopped by the ``replace`` policy).

        Raises:
            Unauthorized: ``peer`` is not the schedule's owner or an admin.
        """
        trigger = params.trigger
        if trigger not in TRIGGERS:
            raise InvalidParams(f"trigger: expected {' or '.join(TRIGGERS)}, got {trigger!r}")
        row = self._owned(schedule_name(params.name), peer, "trigger it")
        result = self.scheduler.run_now(row, trigger=trigger)
        if result["job"] is not None:
            self.store.note(result["job"]["id"], "triggered", {"by": peer.uid if peer else None})
        return result

    def _owned(self, name: str, peer: Peer | None, action: str) -> dict[str, Any]:
        """The schedule's row, if ``peer`` may do ``action`` to it.

        Raises:
            NoSuchSchedule; Unauthorized: naming the owner rule.
        """
        row = self.store.get_schedule(name)
        self.service.owners.require(peer, f"schedule {name}", row[OWNER], action)
        return row

    def _describe(
        self, row: dict[str, Any], now: float, peer: Peer | None = None
    ) -> types.ScheduleState:
        active = self.store.schedule_runs(row["name"], states=UNFINISHED)
        return {
            **self.service.owners.shown(peer, row, OWNER),
            "next_fire": rules.next_fire(row["cron"], max(now, row["last_fire"]), row["timezone"]),
            "active": [job["id"] for job in active],
        }

"""The schedule use cases: schedule.add, .list, .remove and .trigger.

They validate and store schedules and describe them; firing them is the
scheduler thread's (agent/runtime/scheduler.py), which a trigger asks to run
one now, under the same lock and policy as a fire. Never touches Podman.
"""

from __future__ import annotations

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
        specs.normalize(spec)  # refuse a bad template now, not at 3 a.m.
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

    def list(self, params: ScheduleListParams) -> list[types.ScheduleState] | types.ScheduleState:
        """Every schedule, or (with ``name``) the one so named.

        Raises:
            NoSuchSchedule: no schedule has that name.
        """
        now = self.scheduler.clock()
        if params.name is None:
            return [self._describe(row, now) for row in self.store.schedules()]
        return self._describe(self.store.get_schedule(schedule_name(params.name)), now)

    def remove(self, params: ScheduleRef) -> types.Schedule:
        """Delete a schedule; the runs it made are left as they are."""
        row = self.store.remove_schedule(schedule_name(params.name))
        self.scheduler.wake()
        return row

    def trigger(self, params: ScheduleTriggerParams) -> types.Triggered:
        """Run a schedule now, under its concurrency policy; its cron timing is unchanged.

        Returns:
            ``job`` (the new run, or None), ``skipped`` (why not, or None) and
            ``cancelled`` (runs stopped by the ``replace`` policy).
        """
        trigger = params.trigger
        if trigger not in TRIGGERS:
            raise InvalidParams(f"trigger: expected {' or '.join(TRIGGERS)}, got {trigger!r}")
        row = self.store.get_schedule(schedule_name(params.name))
        return self.scheduler.run_now(row, trigger=trigger)

    def _describe(self, row: dict[str, Any], now: float) -> types.ScheduleState:
        active = self.store.schedule_runs(row["name"], states=UNFINISHED)
        return {
            **row,
            "next_fire": rules.next_fire(row["cron"], max(now, row["last_fire"]), row["timezone"]),
            "active": [job["id"] for job in active],
        }

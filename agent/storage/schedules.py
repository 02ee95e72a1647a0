"""Cron schedules on disk: storing, reading and removing them, and the jobs each made.

When a schedule fires is agent/rules/schedule.py's question and acting on it
the runtime scheduler's; this module only keeps the records (a fire and the
job it makes are written together by ``Jobs.add_job``). It never talks to
Podman.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from agent.protocol.errors import InvalidParams, NoSuchSchedule
from agent.storage.database import Database
from agent.storage.records import job_dict, schedule_dict


class Schedules(Database):
    """The schedule queries of ``Store``."""

    def add_schedule(self, **columns: Any) -> dict[str, Any]:
        """Store a new schedule (columns of the schedule table; ``spec`` a dict).

        Returns:
            The new schedule's record.

        Raises:
            InvalidParams: a schedule of that name exists.
        """
        Schedule = self.models.Schedule
        columns["spec"] = json.dumps(columns["spec"])
        with self.writing():
            if Schedule.get_or_none(Schedule.name == columns["name"]) is not None:
                raise InvalidParams(
                    f"name: a schedule named {columns['name']!r} exists; remove it first"
                )
            row = Schedule.create(**columns)
        return schedule_dict(row)

    def get_schedule(self, name: str) -> dict[str, Any]:
        """The record of one schedule.

        Raises:
            NoSuchSchedule
        """
        return schedule_dict(self._schedule_row(name))

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        Schedule = self.models.Schedule
        return [schedule_dict(row) for row in Schedule.select().order_by(Schedule.name)]

    def update_schedule(self, name: str, **columns: Any) -> None:
        """Change columns of a schedule (``last_fire``, ``last_skip``...); none is fine."""
        Schedule = self.models.Schedule
        with self.writing():
            Schedule.update(**columns).where(Schedule.name == name).execute()

    def remove_schedule(self, name: str) -> dict[str, Any]:
        """Delete a schedule; the jobs it made stay (they keep its name).

        Returns:
            The record of the schedule removed.

        Raises:
            NoSuchSchedule
        """
        with self.writing():
            row = self._schedule_row(name)
            record = schedule_dict(row)
            row.delete_instance()
        return record

    def schedule_runs(
        self, name: str, *, states: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """The jobs a schedule made (in ``states``, if given), newest first."""
        Job = self.models.Job
        query = Job.select().where(Job.schedule == name).order_by(Job.id.desc())
        if states is not None:
            query = query.where(Job.state.in_(list(states)))
        return [job_dict(job) for job in query]

    def _schedule_row(self, name: str):
        row = self.models.Schedule.get_or_none(self.models.Schedule.name == name)
        if row is None:
            raise NoSuchSchedule(f"no schedule named {name!r}; see 'chooctl schedule ls'")
        return row

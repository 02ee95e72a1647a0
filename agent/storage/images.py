"""What the image collector needs of the database: the images jobs and schedules refer to.

Read-only. Images are as specs name them (``alpine``, ``localhost/app:1``):
resolving a name to a local image is the collector's (it asks Podman).
"""

from __future__ import annotations

import json

import peewee as pw

from agent.protocol.states import ACTIVE, State
from agent.storage.database import Database


class ImageRefs(Database):
    """The image queries of ``Store``."""

    def images_in_use(self) -> set[str]:
        """The images of queued and running jobs and of every schedule."""
        Job, Schedule = self.models.Job, self.models.Schedule
        live = [State.QUEUED.value, *(s.value for s in ACTIVE)]
        image = pw.fn.json_extract(Job.spec, "$.image")
        refs = {row[0] for row in Job.select(image).where(Job.state.in_(live)).distinct().tuples()}
        refs |= {json.loads(spec)["image"] for (spec,) in Schedule.select(Schedule.spec).tuples()}
        return refs

    def images_last_used(self) -> dict[str, float]:
        """Image name -> the latest time a job of it was submitted or ended."""
        Job = self.models.Job
        image = pw.fn.json_extract(Job.spec, "$.image")
        when = pw.fn.MAX(pw.fn.MAX(Job.submitted_at, pw.fn.COALESCE(Job.ended_at, 0)))
        return dict(Job.select(image, when).group_by(image).tuples())

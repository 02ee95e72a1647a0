"""The job.export use case: find what is exported, then map it (agent/export/).

A job by ID, a schedule by name, or a spec sent with the call, which is
normalised exactly as job.submit would (the agent's defaults filled in) and
stored nowhere. A manifest holds what a job holds (its env values, its
command), so exporting a job or schedule is for those who may read it: its
owner and the admins (owners.py). Reads the store only; never touches Podman
or the files.
"""

from __future__ import annotations

from agent import export as exporter
from agent.api.checks import job_spec, schedule_name
from agent.api.peers import Peer
from agent.api.schedules import OWNER as SCHEDULE_OWNER
from agent.api.service import OWNER, Service
from agent.protocol import spec as specs
from agent.protocol import types
from agent.protocol.errors import InvalidParams
from agent.protocol.methods import ExportParams


def export(service: Service, params: ExportParams, *, peer: Peer | None = None) -> types.Exported:
    """The manifests of a job, schedule or spec for Kubernetes or Nomad.

    Raises:
        Unauthorized: the job or schedule is not ``peer``'s to read.
        InvalidParams: not exactly one of ``id``, ``schedule``, ``spec``; a bad
            spec; or (without ``lossy``) what the target cannot express.
        NoSuchJob, NoSuchSchedule: nothing has that ID or name.
    """
    given = [key for key in ("id", "schedule", "spec") if getattr(params, key) is not None]
    if len(given) != 1:
        raise InvalidParams(
            "export: name exactly one of id, schedule or spec"
            + (f" (got {', '.join(given)})" if given else "")
        )
    return exporter.export(
        _source(service, params, peer),
        to=params.to,
        hardening=exporter.Hardening.of(service.config),
        kind=params.kind,
        lossy=params.lossy,
    )


def _source(service: Service, params: ExportParams, peer: Peer | None) -> exporter.Source:
    store = service.store
    if params.id is not None:
        job = store.get(store.resolve(params.id))
        service.owners.require(peer, f"job {job['id']}", job[OWNER], "export it")
        # Stored normalised; normalised again so a record older than a field has it too.
        return exporter.Source(
            spec=specs.normalize(job["spec"]),
            job_id=job["id"],
            archived=job["artifacts"]["state"] == "packed",
        )
    if params.schedule is not None:
        row = store.get_schedule(schedule_name(params.schedule))
        owner = row[SCHEDULE_OWNER]
        service.owners.require(peer, f"schedule {row['name']}", owner, "export it")
        return exporter.Source(spec=job_spec(row["spec"], service.config), schedule=row)
    return exporter.Source(spec=job_spec(params.spec, service.config))

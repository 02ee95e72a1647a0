"""``job.rerun`` and ``job.rerun_failed``: the same spec again, as a new job
(part of the service).

A rerun is submitted like any job (checks, owner, queue limit) with trigger
``rerun`` and ``rerun_of`` naming the job it reruns. It does not wait for what
the first one waited for (``after`` is dropped), and a workspace is the first
job's snapshot, copied while it still exists. ``rerun_failed`` reruns each
failed job no job reruns yet, so running it twice reruns nothing twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent.api.owners import OWNER
from agent.api.peers import Peer
from agent.protocol import methods, types
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams

#: The trigger of a rerun (the agent sets it; clients cannot name it).
RERUN_TRIGGER = "rerun"
#: The most jobs one ``job.rerun_failed`` reruns.
MAX_RERUNS = 1000


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    return specs.normalize({"image": "x", "env": value})["env"]


class Reruns:
    """The rerun use cases, as a part of ``Service`` (its store, owners and submit)."""

    def rerun(self, params: methods.RerunParams, *, peer: Peer | None = None) -> types.Job:
        """Submit a job's spec again, with ``env`` set on top of its own.

        Raises:
            Unauthorized: ``peer`` may not change the job; InvalidParams: a bad
            ``env``, or its workspace snapshot no longer exists (removed with
            its files); QueueFull.
        """
        full = self.store.resolve(params.id)
        job = self._owned(full, peer, "rerun it")
        return self._rerun(job, _env(params.env), peer)

    def rerun_failed(
        self, params: methods.RerunFailedParams, *, peer: Peer | None = None
    ) -> types.Reruns:
        """Rerun every failed job (``since``, ``name``) of ``peer``'s (all, for an
        admin) that no job reruns yet; a job whose rerun is refused stops it.

        Raises:
            InvalidParams: a bad ``since``, ``name`` or ``env``; as ``rerun``.
        """
        env = _env(params.env)
        since = params.since
        if since is not None:
            since = time.time() - specs.parse_duration(since, "since")
        if params.name is not None and not isinstance(params.name, str):
            raise InvalidParams("name: expected a string")
        failed = self.store.unrerun_failures(since=since, name=params.name, limit=MAX_RERUNS)
        mine = [job for job in failed if self.owners.may_touch(peer, job[OWNER])]
        return {"jobs": [self._rerun(job, env, peer) for job in mine]}

    def _rerun(self, job: dict[str, Any], env: dict[str, str], peer: Peer | None) -> types.Job:
        spec = {**job["spec"], "env": {**job["spec"]["env"], **env}, "after": []}
        origin: dict[str, Any] = {"rerun_of": job["id"]}
        if spec.get("workspace"):
            snapshot = (job["workspace"] or {}).get("snapshot")
            if not snapshot or not Path(snapshot).is_dir():
                raise InvalidParams(
                    f"job {job['id']}: its workspace snapshot no longer exists (removed "
                    f"with the job's files); submit the spec again with --workspace "
                    f"{spec['workspace']} to snapshot the directory anew"
                )
            origin["workspace_from"] = snapshot
        return self.submit(
            methods.SubmitParams(spec=spec, trigger=RERUN_TRIGGER), peer=peer, origin=origin
        )

"""The removal use cases (job.remove, job.prune) and retention's removal of old jobs.

A part of ``Service`` (agent/api/service.py), which it is mixed into: a job's
record goes from the store and its files (output, workspace, archive) after
it. Only finished jobs are ever removed; who may remove which is the
ownership policy's (owners.py). Never talks to Podman.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.adapters.files import JobFiles
from agent.adapters.joblogs import JobLogs
from agent.api.checks import string_list
from agent.api.owners import Owners
from agent.api.peers import Peer
from agent.config import Config
from agent.protocol import methods, types
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams
from agent.protocol.states import TERMINAL
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: What ``job.prune`` removes without ``older_than`` when ``retention`` is 0.
DEFAULT_PRUNE_AGE = 7 * 86400.0


class Removal:
    """job.remove and job.prune, over the service's store, files and owners."""

    store: Store
    files: JobFiles | None
    job_logs: JobLogs
    config: Config
    owners: Owners
    _owned: Callable[[str, Peer | None, str], dict[str, Any]]

    def remove(self, params: methods.JobRef, *, peer: Peer | None = None) -> types.Job:
        """Delete a finished job: its record, attempts, events, output, workspace and archive.

        Raises:
            Unauthorized: ``peer`` may not remove it (not its owner or an admin).
            InvalidTransition: the job has not ended.
        """
        full = self.store.resolve(params.id)
        self._owned(full, peer, "remove it")
        record = self.store.remove_job(full)
        self._remove_files([full])
        # The job's events go with it: the agent's log keeps who removed it.
        log.info("job %s removed by uid %s", full, peer.uid if peer else "of the agent")
        return record

    def prune(self, params: methods.PruneParams, *, peer: Peer | None = None) -> types.Pruned:
        """Remove finished jobs that ended more than ``older_than`` ago (default:
        the ``retention`` setting, or 7 days when it is 0), optionally only
        those in ``state``. A job that has not ended is never touched, and a
        caller who is not an admin prunes only their own jobs."""
        older_than = params.older_than
        states = string_list(params.state, "state")
        terminal = sorted(s.value for s in TERMINAL)
        for s in states:
            if s not in terminal:
                raise InvalidParams(
                    f"state: only finished jobs are pruned; expected {', '.join(terminal)}, "
                    f"got {s!r}"
                )
        if older_than is None:
            seconds = self.config.retention or DEFAULT_PRUNE_AGE
        else:
            seconds = specs.parse_duration(older_than, "older_than")
        owner = None if self.owners.is_admin(peer) else peer.uid
        return self.prune_before(time.time() - seconds, states or None, owner=owner)

    def prune_before(
        self, ended_before: float, states: list[str] | None = None, *, owner: int | None = None
    ) -> types.Pruned:
        """Remove the finished jobs (in ``states``, of uid ``owner`` if given)
        that ended before ``ended_before``."""
        candidates = self.store.prunable(ended_before=ended_before, states=states, submitter=owner)
        removed = self.remove_many(candidates)
        if removed and owner is not None:
            log.info("uid %d pruned %d of their jobs", owner, len(removed))
        return {"removed": removed, "count": len(removed)}

    def remove_many(self, job_ids: list[str]) -> list[str]:
        """Remove those of ``job_ids`` that have ended; returns the IDs removed."""
        removed = [job["id"] for job in self.store.remove_jobs(job_ids)]
        self._remove_files(removed)
        return removed

    def _remove_files(self, job_ids: list[str]) -> None:
        """A removed job's files go with it: its output, workspace and archive.

        For many jobs, only those with a directory are visited (each folder is
        listed once): most jobs of a big prune left nothing there, and a visit
        each would cost more than removing their rows.
        """
        for job_id in _on_disk(self.job_logs.root, job_ids):
            self.job_logs.remove(job_id)
        if self.files is not None:
            # A directory a removal failed on is retried too (it may be gone now).
            retried = self.files.pending_removals().intersection(job_ids)
            for job_id in set(_on_disk(self.files.root, job_ids)) | retried:
                self.files.remove(job_id)


#: Above this many jobs, their folders are found by listing the parent once.
_LIST_ABOVE = 64


def _on_disk(root: Path, job_ids: list[str]) -> list[str]:
    """Those of ``job_ids`` that may have a folder in ``root`` (all of them for a few)."""
    if len(job_ids) <= _LIST_ABOVE:
        return job_ids
    try:
        present = set(os.listdir(root))
    except FileNotFoundError:
        return []
    return [job_id for job_id in job_ids if job_id in present]

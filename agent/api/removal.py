"""The removal use cases (job.remove, job.prune) and retention's removal of old jobs.

A part of ``Service`` (agent/api/service.py), which it is mixed into: a job's
record goes from the store and its files (output, workspace, archive) after
it. Only finished jobs are ever removed; who may remove which is the
ownership policy's (owners.py). At start-up it also sweeps the folders a
removal left behind (the agent died between the rows and the files), never
one of a job that has a record. Never talks to Podman.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ulid import ULID

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

    def start_leftover_sweep(self) -> threading.Thread:
        """Sweep the folders of jobs without a record in a thread of its own
        (``sweep_leftovers``), off the way to READY; only folders made before
        now are candidates, so none a job submitted from now on makes.

        Returns:
            The thread, started.
        """
        thread = threading.Thread(
            target=self._sweep_safely, args=(time.time(),), name="leftovers", daemon=True
        )
        thread.start()
        return thread

    def _sweep_safely(self, made_before: float) -> None:
        try:
            self.sweep_leftovers(made_before)
        except Exception:  # the agent runs on without it: the next start sweeps again
            log.exception("the sweep of folders of removed jobs failed")
        finally:
            self.store.release_thread()

    def sweep_leftovers(self, made_before: float) -> int:
        """Remove the log and file folders, last changed before ``made_before``, of
        jobs that have no record (the agent died between removing a job's rows and
        its folders). Each folder is listed once; which IDs have no record is one
        query per ``_SWEEP_BATCH`` of them. A folder of a job that exists, or not
        named as a job ID, is never touched.

        Returns:
            How many folders were removed.
        """
        roots = [(self.job_logs.root, self.job_logs.remove)]
        if self.files is not None:
            roots.append((self.files.root, self.files.remove))
        removed = 0
        for root, remove in roots:
            names = sorted(_job_folders(root))
            gone = 0
            for start in range(0, len(names), _SWEEP_BATCH):
                batch = names[start : start + _SWEEP_BATCH]
                known = self.store.states_of(batch)
                for name in batch:
                    if name not in known and _changed_before(root / name, made_before):
                        log.debug("removing %s (no such job)", root / name)
                        remove(name)
                        gone += 1
            if gone:
                log.info("removed %d folders of jobs that have no record from %s", gone, root)
            removed += gone
        return removed


#: How many folders' job IDs one look-up in the database checks.
_SWEEP_BATCH = 5000


def _job_folders(root: Path) -> list[str]:
    """The names in ``root`` written as job IDs (ULIDs, upper case)."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [name for name in names if _is_job_id(name)]


def _is_job_id(name: str) -> bool:
    if len(name) != 26 or name != name.upper():
        return False
    try:
        ULID.from_str(name)
    except ValueError:
        return False
    return True


def _changed_before(path: Path, when: float) -> bool:
    try:
        return path.lstat().st_mtime < when
    except FileNotFoundError:  # gone meanwhile
        return False


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

"""Sweeps: remove containers, /out volumes and directories, and secrets of ours that no
live job needs.

Run from the loop's pass; the removals themselves go to the worker pool.
Everything labelled as this agent's without a live job is a stray: an orphan
(no such job; spared until it is ``orphan_grace`` old), the leftovers of an
ended job, or the container of an earlier attempt of a live job (its removal
failed before the next attempt began). So are the Podman secrets of an ended
or unknown job (the agent died before removing them, or Podman did not
answer the removal): they go with its stray container, or else at the next
volume sweep, which also removes the /out host directories
(agent/adapters/out_dirs.py) of jobs that ended or are unknown and have no
container (an agent killed between a job's end and its cleanup). The first
sweep comes with the loop's first pass after a start. Never touches a job's
state.
"""

from __future__ import annotations

import logging

from agent.adapters.podman import ContainerState
from agent.config import Config
from agent.protocol.errors import NoSuchJob
from agent.protocol.states import TERMINAL
from agent.runtime.ports import ArtifactFiles, PodmanPort
from agent.runtime.steps import remove_out
from agent.runtime.workers import Workers
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: How often a pass also looks for /out volumes and directories, and secrets, no
#: live job needs.
VOLUME_SWEEP_INTERVAL = 60.0


class Sweeps:
    """Finds strays and hands their removal to the pool.

    Args:
        store: the job store (to tell an ended job from an unknown one).
        podman: the Podman connection of the loop and its workers.
        config: ``orphan_grace`` and ``keep_containers``, read at each use.
        workers: the pool that removes.
        files: the jobs' /out directories (None: none).
    """

    def __init__(
        self,
        store: Store,
        podman: PodmanPort,
        config: Config,
        workers: Workers,
        files: ArtifactFiles | None = None,
    ):
        self.store = store
        self.podman = podman
        self.config = config
        self.workers = workers
        self.files = files
        self._volumes_swept_at = float("-inf")

    def containers(self, containers: dict[str, ContainerState], live: set[str], now: float) -> None:
        """Remove containers of ours that no starting or running job owns.

        Args:
            containers: our containers, by job ID.
            live: the IDs of the jobs that may own a container (active or busy).
            now: the wall-clock time (Podman's ``created_at`` is wall-clock too).
        """
        for job_id, container in containers.items():
            if job_id in live:
                continue
            try:
                known = self.store.get(job_id)
            except NoSuchJob:  # not a database error: that must not make an orphan
                known = None
            if known is None:
                created = container.created_at
                if created is not None and now - created < self.config.orphan_grace:
                    continue
                log.warning("removing orphan container %s (no such job)", container.name)
            elif known["state"] in TERMINAL and self.config.keep_containers:
                continue
            # An ended or unknown job's volume and secrets go in the same task:
            # the pool runs one task per job at a time, so the volume sweep's
            # own would be dropped while this one runs, and wait an interval.
            if known is None or known["state"] in TERMINAL:
                handed = self.workers.submit(job_id, self._remove_ended, container.id, job_id)
            else:
                handed = self.workers.submit(job_id, self.podman.remove, container.id)
            if handed:
                log.info("removing stray container %s", container.name)

    def _remove_ended(self, container_id: str, job_id: str) -> None:
        """Remove the container of an ended or unknown job, then its /out and secrets."""
        self.podman.remove(container_id)
        remove_out(self.podman, self.files, job_id)
        self.podman.remove_secrets(job_id)

    def earlier_attempt(self, job: dict, container: ContainerState) -> None:
        """Remove the container of an earlier attempt of a live job.

        Args:
            job: the job, now at a later attempt.
            container: the container, labelled with another attempt.
        """
        if self.workers.submit(job["id"], self.podman.remove, container.id):
            log.warning(
                "removing container %s of attempt %s: job %s is at attempt %s",
                container.name,
                container.attempt,
                job["id"],
                job["attempt"],
            )

    def volumes_if_due(self, live: set[str], now: float) -> None:
        """Every ``VOLUME_SWEEP_INTERVAL``: remove /out volumes and directories,
        and Podman secrets, whose job has ended or is unknown.

        A volume still used by a kept container (``keep_containers``) stays;
        Podman refuses to remove it until the container is gone. A directory
        stays while its job has a container (``live`` says so).

        Args:
            live: the IDs of the jobs whose /out stays (every non-terminal
                job, and every job with a container).
            now: the current monotonic time.
        """
        if now - self._volumes_swept_at < VOLUME_SWEEP_INTERVAL:
            return
        self._volumes_swept_at = now
        if self.files is not None:
            for job_id in self.files.out_dir_jobs():
                if job_id not in live and self.workers.submit(
                    job_id, self.files.remove_out_dir, job_id
                ):
                    log.info("removing the /out directory of job %s (ended or unknown)", job_id)
        for _name, job_id in self.podman.list_out_volumes():
            if job_id not in live:
                self.workers.submit(job_id, self.podman.remove_out_volume, job_id)
        for job_id in dict.fromkeys(job for _name, job in self.podman.list_job_secrets()):
            if job_id not in live:
                self.workers.submit(job_id, self.podman.remove_secrets, job_id)

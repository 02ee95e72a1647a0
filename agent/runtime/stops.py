"""The stop signals of a cancel, a timeout or a stop another part asked for.

The loop decides when (``controller``); this sends the signal on the worker
pool and records it: SIGTERM with why and when (the stop grace counts from
then), SIGKILL after the grace (repeated until the container exits). Never
decides whether or when to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.runtime.deadlines import Deadlines
from agent.runtime.ports import PodmanPort
from agent.storage.store import Store

log = logging.getLogger(__name__)


class Stops:
    """Sends and records a job's stop signals.

    Args:
        store: the job store (``stop_reason``, ``stop_sent_at``).
        podman: the Podman connection of the workers.
        deadlines: where the loop's monotonic marks of each signal are kept.
        clock: the wall-clock time, in seconds (what the database records).
    """

    def __init__(
        self,
        store: Store,
        podman: PodmanPort,
        deadlines: Deadlines,
        clock: Callable[[], float],
    ):
        self.store = store
        self.podman = podman
        self.deadlines = deadlines
        self.clock = clock

    def term(self, job: dict, container_id: str, stop_reason: str) -> None:
        """SIGTERM, then record why and when (the grace counts from here)."""
        log.info("stopping job %s (%s)", job["id"], stop_reason)
        self.podman.signal(container_id, "SIGTERM")
        self.deadlines.mark(job["id"], ("stop", job["attempt"]))
        self.store.update(job["id"], stop_reason=stop_reason, stop_sent_at=self.clock())

    def kill(self, job: dict, container_id: str) -> None:
        """SIGKILL after the stop grace (repeated until the container exits)."""
        self.podman.signal(container_id, "SIGKILL")
        self.deadlines.mark(job["id"], ("kill", job["attempt"]))

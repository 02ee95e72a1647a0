"""The usage sampler: a thread of its own that looks at every running job's
container each ``usage_interval`` and keeps each attempt's figures so far.

The finisher takes an attempt's figures (``take``) while its container still
exists, so they are recorded with the attempt's end (forgotten once the job
is no longer running); ``live`` gives the running
jobs' current CPU % and memory. Only this agent's containers are sampled (the
``running`` callable names their jobs). Never decides anything about a job,
never writes the database, never talks to Podman, never runs on the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.adapters.proc_usage import ProcReader
from agent.protocol.spec import container_name
from agent.protocol.states import State
from agent.rules.usage import Totals
from agent.storage.store import Store

log = logging.getLogger(__name__)


def running_job_ids(store: Store) -> list[str]:
    """The jobs whose containers the sampler looks at: those starting or running."""
    return [
        job["id"] for job in store.nonterminal() if job["state"] in (State.STARTING, State.RUNNING)
    ]


class UsageSampler:
    """Samples the containers of running jobs.

    Args:
        reader: reads /proc and the cgroups.
        running: the IDs of the jobs this agent has starting or running.
        interval: seconds between samples, read at each pass (a reload may
            change it); 0 turns sampling off.
        clock: a monotonic time, in seconds.
    """

    def __init__(
        self,
        reader: ProcReader,
        running: Callable[[], Iterable[str]],
        interval: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.reader = reader
        self.running = running
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        #: container ID -> (job ID, its figures so far)
        self._totals: dict[str, tuple[str, Totals]] = {}
        #: container name -> job ID, of the jobs running at the last question.
        self._wanted: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the sampling thread."""
        self._thread = threading.Thread(target=self._run, name="usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def sample_once(self) -> None:
        """Sample every running job's container once (the thread's pass).

        Which jobs run is asked only when it matters: at a look that can find
        new containers, and when a container was left without a process (to
        tell whether its job still runs); in between, the last answer names
        the containers already found."""
        if self._wanted is None or self.reader.full_next:
            self._wanted = self._running()
        wanted = self._wanted
        snapshot = self.reader.snapshot(wanted.keys())
        now = self.clock()
        seen = set()
        for container_id, monitor in snapshot.monitors.items():
            job_id = wanted.get(monitor.name)
            if job_id is None:
                continue
            sample = self.reader.sample(snapshot, monitor)
            if sample is None:
                continue
            seen.add(container_id)
            with self._lock:
                entry = self._totals.setdefault(container_id, (job_id, Totals()))
                entry[1].add(sample, now)
        with self._lock:
            gone = set(self._totals) - seen
        if gone:
            wanted = self._wanted = self._running()
        with self._lock:
            # A container with no process left is kept for the finisher while
            # its job runs, until a later attempt's container replaces it.
            live_jobs = {self._totals[container_id][0] for container_id in seen}
            for container_id in gone:
                job_id = self._totals[container_id][0]
                if job_id not in wanted.values() or job_id in live_jobs:
                    del self._totals[container_id]

    def _running(self) -> dict[str, str]:
        return {container_name(job_id): job_id for job_id in self.running()}

    def take(self, container_id: str) -> dict[str, Any]:
        """The usage columns of the attempt that ran in a container.

        Kept until the job is no longer running (the next pass forgets it), so
        a finish that is retried (Podman did not answer) records them too.

        Args:
            container_id: the exited container, still present.

        Returns:
            The columns (empty when it was never sampled: too short-lived, or
            sampling is off).
        """
        with self._lock:
            entry = self._totals.get(container_id)
            return entry[1].columns() if entry else {}

    def live(self) -> dict[str, dict[str, Any]]:
        """The running jobs' current figures, by job ID: ``cpu_percent`` (of one
        core, over the last interval; None after one sample), ``memory``,
        ``memory_peak``, ``cpu_seconds``, ``pids`` (the peak) and ``sampled``."""
        with self._lock:
            return {
                job_id: {
                    "cpu_percent": totals.cpu_percent,
                    "memory": totals.memory,
                    **totals.columns(),
                }
                for job_id, totals in self._totals.values()
            }

    def _run(self) -> None:
        while not self._stop.is_set():
            interval = self.interval()
            if interval > 0:
                try:
                    self.sample_once()
                except Exception:
                    # A bad pass loses one sample; the next one starts afresh.
                    log.exception("usage sampling failed")
            self._stop.wait(interval if interval > 0 else 1.0)

"""Queued jobs: a requested cancel, a retry's backoff, and admission of those that may start.

Both the full pass and the light one (``controller``) end here: queued jobs
need only the database, never Podman's listing, so a submit or a freed slot
is acted on without one. Deadlines are the controller's monotonic ones
(``deadlines``); admission itself is the pure ``agent.rules.admission``.
Never starts a container itself: the launch is handed back (``launch``).
"""

from __future__ import annotations

from collections.abc import Callable

from agent.config import Config
from agent.protocol.states import State
from agent.rules import admission
from agent.runtime.deadlines import Deadlines
from agent.runtime.steps import move
from agent.runtime.waiting import settle
from agent.storage.store import Store


class Admitting:
    """Moves queued jobs along: cancelled, waiting for a retry, or launched.

    Args:
        store: the job store.
        config: ``max_concurrent`` and ``name_limits``, read at each use.
        deadlines: the monotonic anchors of retry times.
        launch: records ``starting`` and hands the create to the pool.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        deadlines: Deadlines,
        launch: Callable[[dict], None],
    ):
        self.store = store
        self.config = config
        self.deadlines = deadlines
        self.launch = launch

    def queued(self, job: dict, mono: float) -> float | None:
        """Cancel a queued job whose cancel was asked for.

        Returns:
            When (monotonic) its retry may start, if that is still ahead; else None.
        """
        if job["cancel_requested"]:
            move(self.store, job, State.CANCELLED, expect=[State.QUEUED])
        elif job["not_before"] is not None:
            due = self.retry_at(job)
            if due > mono:
                return due
        return None

    def admit(self, now: float, mono: float, *, start: bool = True) -> None:
        """Launch the queued jobs admission lets start now.

        Read afresh (a job submitted during the pass waits like the rest): a
        job whose dependency ended badly is cancelled, its waiters with it,
        even when nothing is to start (``start`` False: the recovery pass).
        """
        fresh = self.store.nonterminal()
        held = settle(self.store, fresh)
        if not start:
            return
        for job in admission.admit(
            [self._in_wall_frame(job, now, mono) for job in fresh],
            max_concurrent=self.config.max_concurrent,
            name_limits=self.config.name_limits,
            now=now,
            held=held,
            control=self.store.queue_control(),
        ):
            self.launch(job)

    def retry_at(self, job: dict) -> float:
        """When (monotonic) a queued job waiting for a retry may start."""
        return self.deadlines.anchor(
            job["id"], ("not_before", job["not_before"]), job["not_before"]
        )

    def _in_wall_frame(self, job: dict, now: float, mono: float) -> dict:
        """The job with ``not_before`` moved to where its monotonic anchor falls
        on today's wall clock (admission compares it with the wall-clock now)."""
        if job["not_before"] is None:
            return job
        return {**job, "not_before": now + (self.retry_at(job) - mono)}

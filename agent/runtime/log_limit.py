"""Holding each attempt's log to its job's ``max_log_bytes`` (the shipper calls it).

Where an attempt's output is cut is the pure rule of agent/rules/output_cap.py;
this module does what follows from a cut, on the attempt's file and the job's
record: it truncates the file back to the cut whenever it is longer (the
container may go on writing; conmon appends, so its next record lands at the
new end), adds the output it removed to the job's ``log_dropped``, notes the
first cut of an attempt as an ``output-cut`` event, and with
``log_limit_action = "fail"`` asks the controller to stop the job
(``stop_reason = "log_limit"``; the controller sends the signals, the outcome
rule makes it ``failed``/``log_limit``). It never ships a record and never
signals a container.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.adapters.joblogs import records
from agent.config import Config
from agent.protocol.errors import ChooError
from agent.protocol.states import ACTIVE
from agent.rules.output_cap import Budget
from agent.storage.store import Store

log = logging.getLogger("choo-agent.shipper")

#: The event noting that an attempt's output passed its job's max_log_bytes.
CUT_EVENT = "output-cut"
#: The stop_reason of a job stopped for its output (log_limit_action = "fail").
STOP_REASON = "log_limit"


def budget_for(job: dict[str, Any]) -> Budget | None:
    """A fresh budget for an attempt of ``job``, or None when it has no cap."""
    cap = job["spec"].get("max_log_bytes") or 0
    return Budget(cap) if cap else None


class OutputCap:
    """Enforces the cut of attempts whose output passed their cap.

    Args:
        store: the jobs database (``log_dropped``, events, the stop request).
        config: read at each cut for ``log_limit_action`` (reloadable).
        wake: asks the controller for a pass (it sends the stop).
    """

    def __init__(self, store: Store, config: Config, wake: Callable[[], None]):
        self.store = store
        self.config = config
        self.wake = wake
        self._noted: set[tuple[str, int]] = set()

    def enforce(self, job_id: str, attempt: int, path: Path, budget: Budget) -> int:
        """Drop what the attempt's log holds at or past its cut (``budget.cut`` is set).

        Returns:
            The file's size afterwards: the cut, or what it was if it is gone.
        """
        assert budget.cut is not None
        try:
            dropped, end = 0, budget.cut
            for record in records(path, budget.cut):
                dropped += len(record.data)
                end = record.end
            size = os.stat(path).st_size
            if size > budget.cut:
                os.truncate(path, budget.cut)
        except FileNotFoundError:
            return 0
        if size > budget.cut:
            # An unfinished last record counts as its file bytes: its data is not parsed yet.
            self._add_dropped(job_id, dropped + max(0, size - end))
        # Noted after the count: a client woken by the event finds log_dropped set.
        if (job_id, attempt) not in self._noted:
            self._noted.add((job_id, attempt))
            self._first_cut(job_id, attempt, budget)
        return min(size, budget.cut)

    def _first_cut(self, job_id: str, attempt: int, budget: Budget) -> None:
        try:
            cut_before = any(
                e["kind"] == CUT_EVENT and (e["detail"] or {}).get("attempt") == attempt
                for e in self.store.events(job_id)
            )
            if not cut_before:  # a restarted agent finds the same cut again
                log.info(
                    "job %s attempt %d: output passed max_log_bytes (%d); the rest is dropped",
                    job_id,
                    attempt,
                    budget.cap,
                )
                self.store.note(
                    job_id,
                    CUT_EVENT,
                    {"attempt": attempt, "max_log_bytes": budget.cap, "kept": budget.kept},
                )
            if self.config.log_limit_action == "fail":
                self._ask_stop(self.store.get(job_id), attempt)
        except ChooError as exc:
            log.warning("cannot record the output cut of job %s: %s", job_id, exc.message)

    def _ask_stop(self, job: dict[str, Any], attempt: int) -> None:
        """Have the controller stop the attempt, unless it is over or already stopping."""
        if job["state"] in ACTIVE and job["attempt"] == attempt and job["stop_reason"] is None:
            self.store.update(job["id"], stop_reason=STOP_REASON)
            self.wake()

    def _add_dropped(self, job_id: str, dropped: int) -> None:
        if dropped <= 0:
            return
        try:
            total = self.store.get(job_id).get("log_dropped") or 0
            self.store.update(job_id, log_dropped=total + dropped)
        except ChooError as exc:
            log.warning("cannot record the dropped output of job %s: %s", job_id, exc.message)

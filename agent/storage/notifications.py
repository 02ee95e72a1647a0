"""The notification outbox: rows a job's end adds, the notifier worker's reads and marks.

``Jobs.transition`` calls ``_enqueue_notifications`` inside the transaction
that records a job's end, so the end and its deliveries are committed
together or not at all; ``notify_plan`` (set by the composition root to the
rules of agent/rules/notify.py) says which. Everything else here is for the
worker (runtime/notifier.py): which deliveries are due, and what became of a
try. This module never delivers anything itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.rules.notify import idempotency_key
from agent.storage.database import Database
from agent.storage.records import job_dict

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: Longest last_error kept (a receiver's whole error page is not).
MAX_ERROR = 500


def _no_plan(job: dict[str, Any]) -> list[tuple[str, str]]:
    return []


def notification_dict(row) -> dict[str, Any]:
    """An outbox row as ``job.get`` shows it under ``notifications``."""
    return {
        "target": row.target,
        "event": row.event,
        "key": row.key,
        "status": row.status,
        "tries": row.tries,
        "created_at": row.created_at,
        "next_at": row.next_at if row.status == PENDING else None,
        "delivered_at": row.delivered_at,
        "last_error": row.last_error,
    }


class Notifications(Database):
    """The outbox methods of ``Store``."""

    #: ``job record -> [(target, event)]``: what a job's end notifies (none by default).
    notify_plan: Callable[[dict[str, Any]], list[tuple[str, str]]] = staticmethod(_no_plan)

    def _enqueue_notifications(self, job, now: float) -> None:
        """Add the deliveries of ``job``'s end (inside the caller's transaction)."""
        rows = [
            {
                "job": job.id,
                "target": target,
                "event": event,
                "key": idempotency_key(job.id, target),
                "created_at": now,
                "next_at": now,
            }
            for target, event in self.notify_plan(job_dict(job))
        ]
        if rows:
            self.models.Notification.insert_many(rows).on_conflict_ignore().execute()

    def notifications(self, job_id: str) -> list[dict[str, Any]]:
        """Every delivery of a job, oldest first."""
        N = self.models.Notification
        return [notification_dict(row) for row in N.select().where(N.job == job_id).order_by(N.id)]

    def due_notifications(self, now: float, limit: int = 50) -> list[dict[str, Any]]:
        """Pending deliveries whose time has come, with the job's record each (``job``)."""
        N = self.models.Notification
        rows = (
            N.select()
            .where((N.status == PENDING) & (N.next_at <= now))
            .order_by(N.next_at, N.id)
            .limit(limit)
        )
        due = []
        for row in rows:
            out = notification_dict(row)
            out.update(id=row.id, job=job_dict(row.job))
            due.append(out)
        return due

    def next_notification_at(self) -> float | None:
        """When the earliest pending delivery is due (None: none pending)."""
        N = self.models.Notification
        row = N.select(N.next_at).where(N.status == PENDING).order_by(N.next_at).first()
        return None if row is None else row.next_at

    def notification_tried(
        self, delivery_id: int, *, error: str | None, retry_at: float | None
    ) -> None:
        """Record one try of a delivery.

        Args:
            delivery_id: the outbox row.
            error: why the try failed; None: it was delivered.
            retry_at: when to try again after a failure; None: never (it is failed).
        """
        N = self.models.Notification
        columns: dict[str, Any] = {"tries": N.tries + 1}
        if error is None:
            columns.update(status=DELIVERED, delivered_at=time.time(), last_error=None)
        else:
            columns.update(last_error=error[:MAX_ERROR])
            if retry_at is None:
                columns.update(status=FAILED)
            else:
                columns.update(next_at=retry_at)
        with self.writing():
            N.update(**columns).where(N.id == delivery_id).execute()

"""The queue's run-time controls on disk: pauses and per-name limits (``queue_control``).

Admins set them (agent/api/pausing.py) and they outlive restarts; the
controller reads them on each pass as an ``admission.QueueControl``, whose
rule decides what they mean. One row per scope: ``ALL`` the whole queue, or a
job name; a row left with neither a pause nor a limit is deleted. It never
talks to Podman.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from agent.rules.admission import QueueControl
from agent.storage.database import Database

#: The scope of the whole queue (a job name never starts with "*").
ALL = "*"


class QueueControls(Database):
    """The queue-control queries of ``Store``."""

    def queue_control(self) -> QueueControl:
        """The pauses and runtime limits in force, as the admission rule takes them."""
        rows = list(self.models.QueueControl.select())
        return QueueControl(
            paused=any(r.name == ALL and r.paused_at is not None for r in rows),
            paused_names=frozenset(
                r.name for r in rows if r.name != ALL and r.paused_at is not None
            ),
            limits=MappingProxyType(
                {r.name: r.limit for r in rows if r.name != ALL and r.limit is not None}
            ),
        )

    def pauses(self) -> list[dict[str, Any]]:
        """Every pause in force, the whole queue's first: ``name`` (None: all),
        ``since`` and ``by``."""
        QC = self.models.QueueControl
        rows = QC.select().where(QC.paused_at.is_null(False)).order_by(QC.name)
        out = [
            {"name": None if r.name == ALL else r.name, "since": r.paused_at, "by": r.paused_by}
            for r in rows
        ]
        return sorted(out, key=lambda pause: pause["name"] is not None)

    def set_paused(self, name: str | None, paused: bool, *, at: float, by: int | None) -> bool:
        """Pause or resume the whole queue (``name`` None) or one name.

        Returns:
            False if it already was so (nothing is written then).
        """
        key = ALL if name is None else name
        with self.writing():
            row = self._control_row(key)
            if (row.paused_at is not None) == paused:
                return False
            row.paused_at, row.paused_by = (at, by) if paused else (None, None)
            self._keep(row)
        return True

    def set_limit(self, name: str, limit: int | None) -> bool:
        """Set the runtime limit of a job name (None: clear it, back to the config's).

        Returns:
            False if it already was so (nothing is written then).
        """
        with self.writing():
            row = self._control_row(name)
            if row.limit == limit:
                return False
            row.limit = limit
            self._keep(row)
        return True

    def _control_row(self, key: str):
        QC = self.models.QueueControl
        return QC.get_or_none(QC.name == key) or QC(name=key)

    def _keep(self, row) -> None:
        """Store ``row``, or delete it when it holds neither a pause nor a limit."""
        QC = self.models.QueueControl
        if row.paused_at is None and row.limit is None:
            QC.delete().where(QC.name == row.name).execute()
        else:
            QC.replace(
                name=row.name, paused_at=row.paused_at, paused_by=row.paused_by, limit=row.limit
            ).execute()

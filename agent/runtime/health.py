"""The loop's health: why the agent is degraded, and how long a failed pass waits.

The controller reports every failure here: a pass that raised, a worker's
error. Each is sorted by its cause, ``podman`` (it does not answer),
``database`` (SQLite could not read or write: locked past its busy timeout,
disk full, an I/O error) or ``loop`` (anything else), and the agent is
degraded with one reason per cause (``agent.info``'s ``degraded``, the
systemd ``STATUS=`` line) until a pass succeeds again. Podman counts only
once it failed ``PODMAN_STRIKES`` times in a row: one late reply (a busy
Podman) is logged, not shown as an outage, and the next pass's listing
that works forgets it. Failed passes back
off, doubling from ``RETRY_PASS_AFTER`` up to ``MAX_PASS_BACKOFF``. Never
retries anything itself, and never touches Podman or the database.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from agent.protocol.errors import ChooError, PodmanUnavailable, StorageError
from agent.rules.admission import backoff

log = logging.getLogger(__name__)

#: How soon a failed pass is tried again, doubled per failure in a row ...
RETRY_PASS_AFTER = 1.0
#: ... up to this many seconds.
MAX_PASS_BACKOFF = 10.0

#: Reports of Podman's trouble in a row (no answer in between) before the
#: agent shows itself degraded by it.
PODMAN_STRIKES = 3

PODMAN, DATABASE, LOOP = "podman", "database", "loop"


class Health:
    """The reasons the agent is degraded, by cause, and the failed passes in a row.

    Thread-safe: workers report their errors while the loop reads.
    """

    def __init__(self) -> None:
        self._trouble: dict[str, str] = {}
        #: Podman's failures since it last answered, while fewer than PODMAN_STRIKES.
        self._podman_strikes = 0
        self.failed_passes = 0
        self._lock = threading.Lock()

    @property
    def degraded(self) -> str | None:
        """Why work cannot proceed (each cause's reason, joined), or None."""
        with self._lock:
            return "; ".join(self._trouble.values()) or None

    def troubled(self, cause: str) -> bool:
        """True while ``cause`` (``PODMAN``, ``DATABASE``, ``LOOP``) degrades the agent."""
        with self._lock:
            return cause in self._trouble

    def set(self, cause: str, reason: str | None) -> None:
        """Record (and log, on a change) why ``cause`` degrades the agent; None: it no
        longer does. Podman's trouble counts from its ``PODMAN_STRIKES``-th report
        in a row."""
        with self._lock:
            if cause == PODMAN:
                reason = self._podman_strike(reason)
            before = self._trouble.get(cause)
            if reason == before:
                return
            if reason:
                self._trouble[cause] = reason
            else:
                del self._trouble[cause]
        if reason:
            log.warning("degraded: %s", reason)
        else:
            log.info("no longer degraded by %s", "Podman" if cause == PODMAN else f"the {cause}")

    def _podman_strike(self, reason: str | None) -> str | None:
        """Podman's reason as it counts: None until its ``PODMAN_STRIKES``-th
        report in a row (the lock is held)."""
        if reason is None:
            self._podman_strikes = 0
            return None
        self._podman_strikes += 1
        if self._podman_strikes < PODMAN_STRIKES and PODMAN not in self._trouble:
            log.info(
                "Podman failed %d time(s) in a row, not yet degraded (from %d on): %s",
                self._podman_strikes,
                PODMAN_STRIKES,
                reason,
            )
            return None
        return reason

    def pass_failed(self, exc: Exception) -> tuple[str, float]:
        """A pass (or the loop's tick) raised: degrade, log, and back off.

        Args:
            exc: what it raised.

        Returns:
            The cause, and the seconds to wait before the next pass.
        """
        self.failed_passes += 1
        delay = backoff(self.failed_passes, RETRY_PASS_AFTER, MAX_PASS_BACKOFF)
        cause, reason = trouble_of(exc)
        self.set(cause, reason)
        if self.failed_passes == 1 and cause == LOOP:
            log.error("reconcile pass failed; retrying in %.0fs", delay, exc_info=exc)
        elif self.failed_passes == 1:
            log.error("reconcile pass failed: %s; retrying in %.0fs", reason, delay)
        else:
            log.warning(
                "reconcile pass failed again (%d in a row): %s; retrying in %.0fs",
                self.failed_passes,
                reason,
                delay,
            )
        return cause, delay

    def pass_succeeded(self, *, database: bool) -> None:
        """A whole pass worked: the loop is fine again (Podman's trouble is cleared
        by the pass itself, once Podman answers its listing).

        Args:
            database: the pass began with a write, so the database is fine too.
        """
        if self.failed_passes:
            log.info("reconcile passes succeed again after %d failures", self.failed_passes)
        self.failed_passes = 0
        if database:
            self.set(DATABASE, None)
        self.set(LOOP, None)

    def work_failed(self, exc: Exception) -> None:
        """A worker's error: degrade the agent when Podman or the database caused it
        (any other error is the job's own: only that job backs off)."""
        cause, reason = trouble_of(exc)
        if cause != LOOP:
            self.set(cause, reason)


def trouble_of(exc: Exception) -> tuple[str, str]:
    """What an error says is wrong, and a reason to show for it.

    Returns:
        ``(cause, reason)``: the cause is ``PODMAN``, ``DATABASE`` or ``LOOP``.
    """
    if isinstance(exc, PodmanUnavailable):
        return PODMAN, exc.message
    text = exc.message if isinstance(exc, ChooError) else f"{type(exc).__name__}: {exc}"
    if _from_database(exc):
        return DATABASE, f"database: {text}"
    return LOOP, f"the reconcile loop failed: {text} (see the log)"


def _from_database(exc: BaseException | None) -> bool:
    """True for a ``StorageError`` or an error SQLite raised (peewee wraps
    SQLite's errors in its own, keeping the original as the context)."""
    for _ in range(10):  # a chain is short; a cycle must not hang the loop
        if exc is None:
            return False
        if isinstance(exc, StorageError | sqlite3.Error):
            return True
        exc = exc.__cause__ or exc.__context__
    return False

"""The agent's systemd glue: sd_notify messages and the watchdog cadence.

A no-op outside systemd (sdnotify ignores a missing ``$NOTIFY_SOCKET``). The
watchdog is petted from the controller loop itself, so a hung loop stops the
pets and systemd restarts the agent.
"""

from __future__ import annotations

import os
import threading
import time

import sdnotify

_CHILD_HIDDEN = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    def __init__(self) -> None:
        self._sd = sdnotify.SystemdNotifier()
        self.watchdog_interval = self._watchdog_interval()
        # Children (podman, journalctl) must not talk to our notify socket.
        for key in _CHILD_HIDDEN:
            os.environ.pop(key, None)
        self._last_pet = 0.0
        self._last_status: str | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _watchdog_interval() -> float | None:
        """Half the watchdog period systemd asked for, or None when it asked for none."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2e6
        except ValueError:
            return None

    def send(self, *lines: str) -> None:
        with self._lock:
            self._sd.notify("\n".join(lines))

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def extend_timeout(self, seconds: float) -> None:
        """Ask systemd for more time to finish starting or stopping."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    def pet(self) -> None:
        """Send WATCHDOG=1 if a quarter of the watchdog period has passed since the last one.

        A quarter, not the half sd_watchdog_enabled(3) asks for at least: the
        loop may be held up to one bounded wait (a Podman call, a locked
        database's) just after the pet fell due, and that must still land
        inside the period.
        """
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_pet >= self.watchdog_interval * 0.5:
            self._last_pet = now
            self.send("WATCHDOG=1")

"""How long an agent's start took, step by step, from the moment its process began.

The READY log line says where the time went (interpreter and imports,
database, Podman, the recovery pass ...), so an operator whose agent is slow
to come up sees which step to look at. The process's own start comes from
``/proc/self/stat``, so the interpreter's start and the imports count too.
Never decides anything.
"""

from __future__ import annotations

import os
import time


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_started() -> float:
    """When this process began, on the CLOCK_BOOTTIME clock (now, if /proc cannot say)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            # Field 22, counted after the command name, which may hold spaces.
            fields = stat.read().rpartition(b")")[2].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _now()


class StartClock:
    """Named steps of a start, each timed from the end of the one before."""

    def __init__(self, started: float | None = None):
        self.started = process_started() if started is None else started
        self._last = self.started
        self.steps: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        """Close ``step``: the time since the previous mark (or the process's start)."""
        now = _now()
        self.steps.append((step, now - self._last))
        self._last = now

    def summary(self) -> str:
        """``"0.84 s, 0.61 s of CPU (imports 0.41, database 0.02, ...)"``: the
        total, the process's CPU time so far (less swayed by a busy host), and
        each step."""
        total = self._last - self.started
        parts = ", ".join(f"{step} {seconds:.2f}" for step, seconds in self.steps)
        return f"{total:.2f} s, {time.process_time():.2f} s of CPU ({parts})"

"""The agent's schedule clock for tests: real time plus an offset kept in a
file the agent re-reads (``CHOO_CLOCK_OFFSET_FILE``, see agent/daemon.py).

Tests move it forward to just before a fire instead of waiting for one, and
leave a wide margin before any fire while they set up, so a slow machine
never lets a boundary pass early.
"""

from __future__ import annotations

import math
import time
from pathlib import Path


class OffsetClock:
    """What the agent's schedules take for now, moved by rewriting a file."""

    def __init__(self, path: Path):
        self.path = path
        self.set_offset(0.0)

    def set_offset(self, offset: float) -> None:
        self.offset = offset
        self.path.write_text(f"{offset}\n")

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.set_offset(self.offset + seconds)

    def before_next(self, period: float, seconds: float) -> float:
        """Move the clock to ``seconds`` before the next multiple of ``period``
        (60: a minute, 3600: an hour) that is more than ``seconds`` away.

        Returns:
            That boundary, in the clock's time.
        """
        now = self.now()
        boundary = math.ceil((now + seconds + 1) / period) * period
        self.advance((boundary - seconds) - now)
        return boundary

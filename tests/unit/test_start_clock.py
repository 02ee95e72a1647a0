"""The READY line's account of a start: steps timed from the process's own start."""

from __future__ import annotations

import re
import time

from agent.adapters.start_clock import StartClock, process_started


def test_the_process_started_before_now_and_not_long_ago():
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - process_started()
    assert 0 <= age < 3600  # a test process, not the boot


def test_each_step_is_timed_from_the_one_before():
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    clock = StartClock(started=now - 2.0)
    clock.mark("imports")
    clock.mark("database")
    (first, imports), (second, database) = clock.steps
    assert (first, second) == ("imports", "database")
    assert imports >= 2.0 and 0 <= database < imports
    assert re.fullmatch(
        r"\d+\.\d\d s, \d+\.\d\d s of CPU \(imports \d+\.\d\d, database \d+\.\d\d\)",
        clock.summary(),
    )

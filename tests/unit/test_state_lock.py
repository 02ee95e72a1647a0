"""agent.adapters.state_lock: one agent per state directory, with real flock and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from agent.adapters.state_lock import LOCK_NAME, StateDirBusy, StateLock

HOLD = """
import sys
from pathlib import Path
from agent.adapters.state_lock import StateLock
StateLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def _holder(state_dir) -> subprocess.Popen:
    """Another process holding the lock until its stdin closes (or it is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    holder = _holder(tmp_path / "state")
    try:
        with pytest.raises(StateDirBusy, match=rf"pid {holder.pid}\b") as refused:
            StateLock(tmp_path / "state").acquire()
        assert str(tmp_path / "state") in refused.value.message
        # The refused one changed nothing: the file still names the holder.
        assert (tmp_path / "state" / LOCK_NAME).read_text() == f"{holder.pid}\n"
    finally:
        holder.communicate("")


def test_the_lock_goes_with_a_killed_holder(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = StateLock(tmp_path)
    lock.acquire()
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    lock.release()


def test_released_it_can_be_taken_again_and_the_state_dir_is_made(tmp_path):
    state = tmp_path / "a" / "b"
    first = StateLock(state)
    first.acquire()
    assert oct(state.stat().st_mode & 0o777) == oct(0o750 & ~_umask())
    first.release()
    second = StateLock(state)
    second.acquire()
    second.release()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

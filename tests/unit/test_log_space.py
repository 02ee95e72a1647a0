"""The space kept ahead of a running attempt's log, on real file systems: the
test directory's, and a small tmpfs that really fills (tests/faults/smallfs.py
mounts one in a user and mount namespace of its own, no root needed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from agent.adapters import log_space
from agent.adapters.joblogs import JobLogs

SMALLFS = Path(__file__).parents[1] / "faults" / "smallfs.py"
REPO = Path(__file__).parents[2]


def test_a_prepared_log_is_empty_with_its_reserve_ahead(tmp_path):
    path = JobLogs(tmp_path / "logs").prepare("JOB", 1)
    assert path.read_bytes() == b""
    assert log_space.ahead(path) >= log_space.RESERVE


def test_the_reserve_is_topped_up_as_the_log_grows_and_given_back_at_the_end(tmp_path):
    path = JobLogs(tmp_path / "logs").prepare("JOB", 1)
    with open(path, "ab") as log:
        log.write(b"x" * (log_space.RESERVE - log_space.RESERVE_LOW // 2))
    assert log_space.ahead(path) < log_space.RESERVE_LOW
    assert log_space.top_up(path) >= log_space.RESERVE
    assert log_space.top_up(path) >= log_space.RESERVE  # enough ahead: nothing to do
    size = path.stat().st_size
    log_space.release(path)
    assert path.stat().st_size == size  # the output itself is untouched
    assert log_space.ahead(path) < 4096  # at most the slack of the last block
    assert not log_space.no_room(path)  # this disk has room


def test_a_log_that_is_gone_needs_no_top_up(tmp_path):
    assert log_space.top_up(tmp_path / "gone.log") == 0
    log_space.release(tmp_path / "gone.log")


def on_small_disk(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` with a 2 MiB tmpfs at ``tmp_path/disk``."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = textwrap.dedent(script)
    return subprocess.run(
        [sys.executable, str(SMALLFS), str(disk), "2m", sys.executable, "-c", code, str(disk)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


FILL = """
    import errno, os, sys
    from pathlib import Path
    from agent.adapters import log_space
    disk = Path(sys.argv[1])

    def fill():
        with open(disk / "other", "ab", buffering=0) as other:
            try:
                while True:
                    other.write(b"\\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def append(path, size):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            return os.write(fd, b"r" * size)
        finally:
            os.close(fd)
"""


def test_a_log_with_a_reserve_takes_its_output_while_the_disk_is_full(tmp_path):
    result = on_small_disk(
        tmp_path,
        FILL
        + """
    path = disk / "1.log"
    log_space.reserve(path, 1 << 20)
    fill()
    written = sum(append(path, 8192) for _ in range(100))  # 800 KiB into the reserve
    assert written == 819200, written
    assert not log_space.no_room(path)
    try:
        log_space.top_up(path)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    else:
        raise AssertionError("a top-up on a full disk succeeded")
    try:
        while append(path, 8192) == 8192:
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    assert log_space.no_room(path)  # the reserve is used up: conmon would lose output
    print("ok")
""",
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_without_a_reserve_a_full_disk_takes_the_output(tmp_path):
    """The reason for the reserve: the same writes on a full disk fail at once."""
    result = on_small_disk(
        tmp_path,
        FILL
        + """
    path = disk / "1.log"
    path.touch()
    fill()
    try:
        append(path, 8192)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        print("lost")
    assert log_space.no_room(path)
    try:
        log_space.reserve(path)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
        print("no reserve")
""",
    )
    assert result.stdout.splitlines() == ["lost", "no reserve"], result.stderr

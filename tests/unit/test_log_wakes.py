"""The shipper's wake-ups (agent/runtime/log_wakes.py), on a real inotify instance."""

from __future__ import annotations

import shutil

import pytest

from agent.runtime import log_wakes
from agent.runtime.log_wakes import LogWakes

JOB = "01JD0000000000000000000040"


@pytest.fixture
def wakes(tmp_path):
    wakes = LogWakes(tmp_path / "logs")
    assert wakes.open() and wakes.watching
    yield wakes
    wakes.close()


def wait_for(wakes, followed, test):
    """Wait (a few ticks at most) until ``test`` of what ``wait`` returned holds."""
    for _ in range(50):
        new = wakes.wait(0.2, followed)
        if test(new):
            return new
    raise AssertionError("no inotify event came")


def test_a_write_marks_its_followed_attempt_and_only_it(wakes, tmp_path):
    (tmp_path / "logs" / JOB).mkdir()
    wakes.watch(JOB)
    assert wakes.take() is None  # the first round looks at every file
    followed = {(JOB, 1)}
    (tmp_path / "logs" / JOB / "1.log").write_bytes(b"x")
    wait_for(wakes, followed, lambda new: (JOB, 1) in (wakes._dirty or ()))
    assert wakes.take() == {(JOB, 1)}
    assert wakes.take() == set()  # nothing written since


def test_a_new_attempt_s_log_and_a_new_job_s_directory_are_named(wakes, tmp_path):
    (tmp_path / "logs" / JOB).mkdir()
    wakes.watch(JOB)
    (tmp_path / "logs" / JOB / "2.log").write_bytes(b"")
    assert wait_for(wakes, {(JOB, 1)}, bool) == [JOB]
    other = "01JD0000000000000000000041"
    (tmp_path / "logs" / other).mkdir()
    assert wait_for(wakes, set(), bool) == [other]


def test_a_removed_job_s_watch_is_forgotten_and_every_file_is_looked_at_in_time(
    wakes, tmp_path, monkeypatch
):
    (tmp_path / "logs" / JOB).mkdir()
    wakes.watch(JOB)
    shutil.rmtree(tmp_path / "logs" / JOB)
    wait_for(wakes, set(), lambda new: JOB not in wakes._wds)
    wakes.take()
    monkeypatch.setattr(log_wakes, "FALLBACK", 0.0)
    assert wakes.take() is None


def test_without_inotify_every_round_looks_at_every_file(tmp_path):
    wakes = LogWakes(tmp_path / "logs")
    wakes.watch(JOB)
    wakes.mark((JOB, 1))
    assert not wakes.watching
    assert wakes.take() is None and wakes.take() is None
    assert wakes.wait(0.0, set()) == []

"""How chooctl writes usage: sizes, CPU times, the ps -a column, top's rows."""

from __future__ import annotations

from agent.cli.top import HEADER, rows
from agent.cli.usage_text import cpu_time, size, usage_column


def test_sizes_and_times():
    assert [size(v) for v in (None, 512, 2048, 64 << 20, 3 << 29, 5 << 40)] == [
        "-",
        "512B",
        "2.0K",
        "64M",
        "1.5G",
        "5.0T",
    ]
    assert [cpu_time(v) for v in (None, 2.04, 245, 10920)] == ["-", "2.0s", "4m05s", "3h02m"]


def test_usage_column():
    assert usage_column({"usage": {"cpu_seconds": None, "memory_peak": None}}) == "-"
    assert usage_column({}) == "-"
    assert usage_column({"usage": {"cpu_seconds": 2.0, "memory_peak": 64 << 20}}) == "2.0s/64M"


def test_top_rows_say_what_is_not_measured_yet():
    entry = {
        "id": "01JD",
        "name": None,
        "image": "alpine",
        "state": "starting",
        "started_at": None,
        "cpu_percent": None,
        "memory": None,
        "memory_peak": None,
        "cpu_seconds": None,
    }
    assert rows([entry], 100.0) == [["01JD", "-", "alpine", "-", "-", "-", "-", "-", "starting"]]
    entry.update(started_at=40.0, cpu_percent=99.5, memory=1 << 20, memory_peak=2 << 20)
    entry.update(cpu_seconds=59.0, state="running")
    (row,) = rows([entry], 100.0)
    assert row[3:] == ["99.5", "1.0M", "2.0M", "59.0s", "1m00s", "running"]
    assert len(row) == len(HEADER)

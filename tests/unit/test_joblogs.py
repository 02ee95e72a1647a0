"""agent.adapters.joblogs: k8s-file records back to the job's exact bytes."""

from __future__ import annotations

import errno
import random

import pytest

from agent.adapters import joblogs

STAMP = b"2026-12-01T22:23:30.410197384+00:00"


def record(stream: str, data: bytes, partial: bool) -> bytes:
    return STAMP + b" " + stream.encode() + (b" P " if partial else b" F ") + data + b"\n"


def write_like_conmon(path, chunks):
    """Write (stream, bytes) reads as conmon does: a record per line, P for a
    piece that does not end a line (and pieces of at most 8 KiB)."""
    with open(path, "wb") as out:
        for stream, data in chunks:
            while data:
                newline = data.find(b"\n")
                piece = data if newline < 0 else data[:newline]
                piece, rest = piece[:8192], piece[8192:]
                if rest or newline < 0:
                    out.write(record(stream, piece, True))
                    data = data[len(piece) :]
                else:
                    out.write(record(stream, piece, False))
                    data = data[newline + 1 :]


def joined(path, offset=0):
    out = {"stdout": b"", "stderr": b""}
    for rec in joblogs.records(path, offset):
        out[rec.stream] += rec.data
    return out


@pytest.mark.parametrize(
    "data",
    [
        b"abc",
        b"a\r\nb\n",
        b"\n\n\n",
        b"\xff\xfe\x00\x1b\n",
        b"y" * 100_000 + b"\n",
        b"x" * 30_000,
        b"".join(b"%d\n" % i for i in range(5000)),
    ],
    ids=["no-newline", "crlf", "empty-lines", "binary", "100k-line", "long-unterminated", "many"],
)
def test_records_give_back_the_exact_bytes(tmp_path, data):
    path = tmp_path / "1.log"
    write_like_conmon(path, [("stdout", data), ("stderr", b"err\n")])
    assert joined(path) == {"stdout": data, "stderr": b"err\n"}


def test_an_unfinished_record_is_left_for_the_next_read(tmp_path):
    path = tmp_path / "1.log"
    path.write_bytes(record("stdout", b"one", False) + STAMP + b" stdout F tw")
    got = list(joblogs.records(path))
    assert [r.data for r in got] == [b"one\n"]
    with open(path, "ab") as out:
        out.write(b"o\n")
    assert [r.data for r in joblogs.records(path, got[-1].end)] == [b"two\n"]


def test_record_fields(tmp_path):
    path = tmp_path / "1.log"
    path.write_bytes(record("stderr", b"x", True) + record("stdout", b"", False))
    first, second = joblogs.records(path)
    assert (first.stream, first.partial, first.data, first.offset) == ("stderr", True, b"x", 0)
    assert (second.data, second.partial, second.offset) == (b"\n", False, first.end)
    assert first.time == pytest.approx(1796163810.410197)
    assert list(joblogs.records(tmp_path / "missing.log")) == []


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


@pytest.mark.parametrize("ending", [b"\n", b"unfinished"])
@pytest.mark.parametrize("wanted", [0, 1, 2, 7, 500, 10_000])
def test_tail_offset_starts_the_last_lines(tmp_path, monkeypatch, ending, wanted):
    monkeypatch.setattr(joblogs, "READ_BLOCK", 97)  # many block edges
    rng = random.Random(wanted)
    body = b"".join(b"l%d %s\n" % (i, b"z" * rng.randrange(0, 300)) for i in range(600))
    data = body + (b"" if ending == b"\n" else ending)
    path = tmp_path / "1.log"
    write_like_conmon(path, [("stdout", data)])
    got = joined(path, joblogs.tail_offset(path, wanted))["stdout"]
    assert got == b"".join(_lines(data)[-wanted:] if wanted else [])


def test_tail_ignores_a_record_being_written(tmp_path):
    path = tmp_path / "1.log"
    path.write_bytes(record("stdout", b"a", False) + record("stdout", b"b", False) + STAMP)
    assert joined(path, joblogs.tail_offset(path, 1))["stdout"] == b"b\n"


def test_job_logs_paths(tmp_path):
    logs = joblogs.JobLogs(tmp_path / "logs")
    path = logs.prepare("JOB", 2)
    assert path == tmp_path / "logs" / "JOB" / "2.log" and path.parent.is_dir()
    path.write_bytes(b"old")
    assert logs.prepare("JOB", 2).read_bytes() == b""  # a fresh file for the attempt
    logs.prepare("JOB", 1).write_bytes(b"")
    logs.path("JOB", 2).write_bytes(b"")
    assert logs.attempts("JOB") == [1, 2]
    logs.remove("JOB")
    assert logs.attempts("JOB") == []


def test_a_log_made_here_is_told_once_and_one_made_before_never(tmp_path, monkeypatch):
    logs = joblogs.JobLogs(tmp_path / "logs")
    logs.prepare("JOB", 1)
    assert logs.made_here("JOB", 1) and not logs.made_here("JOB", 1)
    earlier = joblogs.JobLogs(tmp_path / "logs")  # the agent that ran before this one
    earlier.prepare("JOB", 2)
    assert not logs.made_here("JOB", 2)
    logs.prepare("GONE", 1)
    logs.remove("GONE")
    assert not logs.made_here("GONE", 1)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(joblogs.log_space, "reserve", full)
    with pytest.raises(OSError):
        logs.prepare("JOB", 3)
    assert not logs.made_here("JOB", 3) and not logs.path("JOB", 3).exists()


#: conmon cut this record short (the disk was full), then wrote the next one after it.
CUT = STAMP + b" stdout F half a li"


def test_a_record_cut_short_ends_where_the_next_one_begins_where_the_cut_is_known(tmp_path):
    path = tmp_path / "1.log"
    first = record("stdout", b"a", False)
    path.write_bytes(first + CUT + record("stderr", b"next", False) + record("stdout", b"z", True))
    cut_at = len(first) + len(CUT)
    torn = frozenset({len(first)})
    got = [(r.offset, r.end, r.stream, r.data, r.partial) for r in joblogs.records(path, 0, torn)]
    assert got == [
        (0, len(first), "stdout", b"a\n", False),
        (len(first), cut_at, "stdout", b"half a li\n", False),  # its line ended: F
        (cut_at, cut_at + len(record("stderr", b"next", False)), "stderr", b"next\n", False),
        (got[3][0], path.stat().st_size, "stdout", b"z", True),
    ]
    # Where no cut was recorded, a header-like text is the job's own output.
    joined = list(joblogs.records(path))
    assert joined[1].data == b"half a li" + record("stderr", b"next", False)
    # A resume mid-line, at the cut, is at a record's start; one byte on is not.
    assert joblogs.at_boundary(path, cut_at, torn) and not joblogs.at_boundary(path, cut_at)
    assert not joblogs.at_boundary(path, cut_at + 1, torn)
    assert joblogs.end_of_record_at(path, cut_at, torn) == got[2][1]
    assert joblogs.end_of_record_at(path, len(first), torn) == cut_at
    assert joblogs.end_of_record_at(path, cut_at, frozenset()) is None


def test_a_cut_within_the_header_leaves_no_output_of_the_cut_record(tmp_path):
    path = tmp_path / "1.log"
    path.write_bytes(STAMP[:15] + record("stdout", b"next", False))
    got = [(r.offset, r.data) for r in joblogs.records(path, 0, frozenset({0}))]
    assert got == [(15, b"next\n")]  # the 15 bytes of time stamp are no record


def test_a_block_with_more_headers_than_lines_is_suspect(tmp_path):
    clean = record("stdout", b"a", False) + record("stderr", b"", False)
    assert not joblogs.suspect(clean)
    assert joblogs.suspect(CUT + clean)


def test_a_line_that_is_no_record_ends_where_the_next_record_begins(tmp_path):
    """conmon writes nothing but records: a line that is none is a record cut
    short within its header, with the next record after it."""
    path = tmp_path / "1.log"
    head = STAMP + b" std"
    path.write_bytes(head + record("stdout", b"next", False) + b"junk\n")
    got = [(r.offset, r.data) for r in joblogs.records(path)]
    assert got == [(len(head), b"next\n")]

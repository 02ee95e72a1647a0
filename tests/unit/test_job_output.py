"""job.logs from k8s-file logs: entries, cursors, pages, tail, follow (agent/api/logs.py,
agent/protocol/output.py), over files written as conmon writes them."""

from __future__ import annotations

import pytest

from agent.adapters import joblogs
from agent.adapters.joblogs import JobLogs
from agent.api import logs as output
from agent.api.log_runs import plain_run
from agent.protocol.errors import ChooError, InvalidParams
from agent.protocol.output import entry, entry_bytes, format_cursor, parse_cursor
from tests.unit.test_joblogs import write_like_conmon

JOB = "01JOB"


@pytest.fixture
def logs(tmp_path):
    return JobLogs(tmp_path / "logs")


def attempt(logs, number, chunks):
    write_like_conmon(logs.prepare(JOB, number), chunks)


def joined(entries):
    out = {"stdout": b"", "stderr": b""}
    for item in entries:
        out[item["stream"]] += entry_bytes(item)
    return out


def everything(logs):
    return list(output.start(logs, JOB, tail=None, since=None, after=None).entries())


def test_an_entry_is_text_when_it_can_be_and_base64_otherwise():
    assert entry("stdout", 1.0, "1:9", b"h\xc3\xa9\n") == {
        "stream": "stdout",
        "time": 1.0,
        "cursor": "1:9",
        "text": "hé\n",
    }
    raw = entry("stderr", 1.0, "1:9", b"\xff\x00\r")
    assert "text" not in raw and entry_bytes(raw) == b"\xff\x00\r"
    assert entry_bytes({"text": "x"}) == b"x" and entry_bytes(None) == b""
    assert entry_bytes({"data": "not base64!"}) == b""


@pytest.mark.parametrize("bad", ["", "1", "a:1", "1:-1", "1:2:3", " 1:2", 12, None, "1:2\n"])
def test_a_cursor_is_attempt_colon_offset(bad):
    assert parse_cursor(format_cursor(3, 4096)) == (3, 4096)
    assert parse_cursor(bad) is None


def test_a_malformed_after_is_refused_naming_the_param(logs):
    with pytest.raises(InvalidParams, match="after"):
        output.start(logs, JOB, tail=None, since=None, after="journal-cursor=abc")


def test_records_of_one_stream_are_coalesced_and_attempts_follow_each_other(logs):
    attempt(logs, 1, [("stdout", b"a\nb\n"), ("stderr", b"e\n"), ("stdout", b"no newline")])
    attempt(logs, 2, [("stdout", b"second\n")])
    entries = everything(logs)
    assert [(e["stream"], entry_bytes(e)) for e in entries] == [
        ("stdout", b"a\nb\n"),
        ("stderr", b"e\n"),
        ("stdout", b"no newline"),
        ("stdout", b"second\n"),
    ]
    assert [parse_cursor(e["cursor"])[0] for e in entries] == [1, 1, 1, 2]


def test_an_entry_holds_at_most_64_kib(logs):
    attempt(logs, 1, [("stdout", b"x" * 300_000 + b"\n")])
    entries = everything(logs)
    assert all(len(entry_bytes(e)) <= output.ENTRY_BYTES for e in entries)
    assert b"".join(map(entry_bytes, entries)) == b"x" * 300_000 + b"\n"


def test_resuming_after_any_cursor_gives_exactly_the_rest(logs):
    attempt(logs, 1, [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n")])
    attempt(logs, 2, [("stderr", b"four\n"), ("stdout", b"five")])
    entries = everything(logs)
    for index, seen in enumerate(entries):
        reading = output.start(logs, JOB, tail=None, since=None, after=seen["cursor"])
        rest = list(reading.entries())
        assert rest == entries[index + 1 :]


def test_tail_counts_lines_across_attempts_newest_last(logs):
    attempt(logs, 1, [("stdout", b"1\n2\n3\n")])
    attempt(logs, 2, [("stdout", b"4\n"), ("stderr", b"5\n")])
    tail = list(output.start(logs, JOB, tail=3, since=None, after=None).entries())
    assert joined(tail) == {"stdout": b"3\n4\n", "stderr": b"5\n"}
    assert list(output.start(logs, JOB, tail=0, since=None, after=None).entries()) == []
    whole = list(output.start(logs, JOB, tail=100, since=None, after=None).entries())
    assert joined(whole) == {"stdout": b"1\n2\n3\n4\n", "stderr": b"5\n"}


def test_since_skips_earlier_records(logs, tmp_path):
    path = logs.prepare(JOB, 1)
    path.write_bytes(
        b"2020-01-01T00:00:00.000000000+00:00 stdout F old\n"
        b"2030-01-01T00:00:00.000000000+00:00 stdout F new\n"
    )
    since = joblogs.parse_time(b"2025-01-01T00:00:00+00:00")
    entries = list(output.start(logs, JOB, tail=None, since=since, after=None).entries())
    assert joined(entries)["stdout"] == b"new\n"


def test_a_page_stops_near_its_size_and_says_where_to_go_on(logs, monkeypatch):
    monkeypatch.setattr(output, "PAGE_BYTES", 100_000)
    attempt(logs, 1, [("stdout", b"y" * 250_000)])
    data, after, pages = b"", None, 0
    while True:
        page = output.page(output.start(logs, JOB, tail=None, since=None, after=after))
        pages += 1
        data += b"".join(map(entry_bytes, page["entries"]))
        if page["next"] is None:
            break
        after = page["next"]
    assert data == b"y" * 250_000 and pages == 2  # 64 KiB entries, two a page


def test_a_log_cut_short_is_read_from_its_start_without_repeats(logs):
    attempt(logs, 1, [("stdout", b"a" * 100 + b"\n")])
    reading = output.start(logs, JOB, tail=None, since=None, after=None)
    assert joined(reading.entries())["stdout"] == b"a" * 100 + b"\n"
    # conmon truncates in place at log_size_max and writes on from 0.
    write_like_conmon(logs.path(JOB, 1), [("stdout", b"b\n")])
    assert joined(reading.entries())["stdout"] == b"b\n"
    assert list(reading.entries()) == []


def test_follow_sends_what_is_written_until_the_job_ended_and_its_log_is_read(logs):
    path = logs.prepare(JOB, 1)
    written = [[("stdout", b"first\n")], [("stderr", b"second\n")], []]
    sent = []
    state = {"ended": False}
    calls = []

    def wait(seconds):
        # Each idle poll, the "job" writes its next piece; then it ends.
        calls.append("wait")
        chunks = written.pop(0) if written else []
        with open(path, "ab") as log:
            for stream, data in chunks:
                log.write(joblogs_record(stream, data))
        state["ended"] = not written

    reading = output.start(logs, JOB, tail=None, since=None, after=None)
    count = output.follow(
        reading,
        JOB,
        ended=lambda: state["ended"],
        emit=sent.append,
        closed=lambda: False,
        wait=wait,
        idle=lambda: calls.append("idle"),
    )
    assert count == 2 and [entry_bytes(e) for e in sent] == [b"first\n", b"second\n"]
    assert all(e["id"] == JOB for e in sent)
    # What it holds only while it reads (a database connection) is given back
    # before each wait.
    assert calls == ["idle", "wait"] * 3


def test_follow_stops_when_the_client_hangs_up(logs):
    attempt(logs, 1, [("stdout", b"x\n")])
    reading = output.start(logs, JOB, tail=None, since=None, after=None)
    sent = []
    count = output.follow(
        reading,
        JOB,
        ended=lambda: False,
        emit=sent.append,
        closed=lambda: bool(sent),
        wait=lambda seconds: None,
    )
    assert count == 1


def test_the_log_tail_is_bounded_in_bytes(tmp_path):
    path = tmp_path / "1.log"
    write_like_conmon(path, [("stdout", b"z" * 200_000 + b"\nlast\n")])
    tail = joblogs.tail_bytes(path, 100, 1000)
    assert tail == b"last\n"  # the z record that holds the limit's start is left out
    tail = joblogs.tail_bytes(path, 100, 10_000)
    assert tail.endswith(b"z\nlast\n") and 1000 < len(tail) <= 10_000
    assert joblogs.tail_bytes(path, 1, 1000) == b"last\n"
    assert joblogs.tail_bytes(tmp_path / "missing.log", 1, 1000) == b""


def joblogs_record(stream, data):
    return b"2026-12-01T22:23:30.410197384+00:00 " + stream.encode() + b" F " + data[:-1] + b"\n"


def test_a_log_that_cannot_be_read_is_an_error_that_says_so(logs):
    path = logs.prepare(JOB, 1)
    path.unlink()
    path.mkdir()  # a directory where the file should be: unreadable as a file
    with pytest.raises(ChooError, match=f"cannot read the output of job {JOB}"):
        everything(logs)


def capped(logs, cap, **where):
    where = {"tail": None, "since": None, "after": None, **where}
    return output.start(logs, JOB, cap=cap, **where)


def test_a_cap_stops_each_attempt_at_its_cut_before_the_file_is_truncated(logs):
    attempt(logs, 1, [("stdout", b"12345\n"), ("stderr", b"678\n"), ("stdout", b"9\nlost\n")])
    attempt(logs, 2, [("stdout", b"abcdefgh\n"), ("stdout", b"i\n")])
    reading = capped(logs, 10)
    # 6 + 4 bytes fill the cap: "9\n" is the cut; attempt 2 has a cap of its own
    assert joined(reading.entries()) == {"stdout": b"12345\nabcdefgh\n", "stderr": b"678\n"}
    assert reading.cut
    uncapped = capped(logs, 0)
    assert b"lost" in joined(uncapped.entries())["stdout"] and not uncapped.cut


def test_a_cursor_or_a_follow_never_passes_the_cut(logs):
    path = logs.prepare(JOB, 1)
    write_like_conmon(path, [("stdout", b"aaaa\n"), ("stdout", b"bbbb\n")])
    first = list(capped(logs, 10).entries())
    with open(path, "ab") as more:  # the container goes on writing
        more.write(joblogs_record("stdout", b"cccc"))
    resumed = capped(logs, 10, after=first[-1]["cursor"])
    assert list(resumed.entries()) == [] and resumed.cut
    sent = []
    output.follow(
        capped(logs, 10),
        JOB,
        ended=lambda: True,
        emit=sent.append,
        closed=lambda: False,
        wait=lambda _: None,
    )
    assert b"".join(entry_bytes(e) for e in sent) == b"aaaa\nbbbb\n"


def test_the_log_tail_stops_at_the_cut(tmp_path):
    path = tmp_path / "1.log"
    write_like_conmon(path, [("stdout", b"one\ntwo\n"), ("stderr", b"three\n")])
    assert joblogs.cut_of(path, 0) is None and joblogs.cut_of(path, 100) is None
    cut = joblogs.cut_of(path, 8)  # "one\ntwo\n" fills it: "three\n" is cut
    assert joblogs.tail_bytes(path, 100, 1000, cut) == b"one\ntwo\n"
    assert joblogs.tail_bytes(path, 1, 1000, cut) == b"two\n"
    assert joblogs.tail_offset(path, 1, cut) == joblogs.tail_offset(path, 2)


def test_a_record_cut_short_on_a_full_disk_ends_at_the_cut_in_job_logs(logs):
    first = joblogs_record("stdout", b"a\n")
    cut = b"2026-12-01T22:23:30.410197384+00:00 stdout F half a li"
    path = logs.prepare(JOB, 1)
    path.write_bytes(first + cut + joblogs_record("stdout", b"next\n"))
    attempt(logs, 2, [("stdout", b"clean\n")])
    asked = []

    def torn(attempt):
        asked.append(attempt)
        return frozenset({len(first)}) if attempt == 1 else frozenset()

    reading = output.start(logs, JOB, tail=None, since=None, after=None, torn=torn)
    entries = list(reading.entries())
    assert b"".join(map(entry_bytes, entries)) == b"a\nhalf a li\nnext\nclean\n"
    assert asked == [1]  # asked only of a block that may hold a cut record
    # An entry's cursor at the cut resumes there, mid-line, at the next record.
    middle = output.start(logs, JOB, tail=None, since=None, after=f"1:{len(first) + len(cut)}")
    assert joined(middle.entries())["stdout"] == b"next\nclean\n"
    # Without a recorded cut, the line is the job's own bytes, header-like text and all.
    assert joined(everything(logs))["stdout"].startswith(b"a\nhalf a li2026-12-01T")


#: A record conmon begins to write (its header and one line).
WHOLE = b"2026-12-01T22:23:30.410197384+00:00 stdout F 163327"


@pytest.mark.parametrize("cut", range(1, len(WHOLE)))
def test_the_record_after_one_cut_short_anywhere_is_read_whole(logs, cut):
    """Wherever conmon's short write ended in a record, the one it writes once
    space is back is the job's output; where the cut is not known (yet), too,
    if it came within the header (after it, the line is a record: its bytes
    may be the job's own header-like text)."""
    first = joblogs_record("stdout", b"a\n")
    path = logs.prepare(JOB, 1)
    path.write_bytes(first + WHOLE[:cut] + joblogs_record("stdout", b"after\n"))
    readings = [
        output.start(
            logs, JOB, tail=None, since=None, after=None, torn=lambda _: frozenset({len(first)})
        )
    ]
    if cut < WHOLE.index(b"F ") + 2:
        readings.append(output.start(logs, JOB, tail=None, since=None, after=None))
    for reading in readings:
        out = joined(reading.entries())["stdout"]
        assert out.startswith(b"a\n") and out.endswith(b"\nafter\n"), (cut, out)


@pytest.mark.parametrize("block_size", [joblogs.READ_BLOCK, 97])
def test_blocks_read_whole_give_what_records_give_one_by_one(logs, monkeypatch, block_size):
    monkeypatch.setattr(joblogs, "READ_BLOCK", block_size)
    header = b"2026-12-02T07:40:00.123456789+00:00 stdout F "
    tricky = (
        b" stdout P \r\n\nno newline\n\xff\x00 stderr x\n" + header + b"\n" + b"y" * 9000 + b"\n"
    )
    chunks = [("stdout", b"".join(b"%d\n" % i for i in range(3000))), ("stdout", tricky)]
    chunks += [("stderr", b"e\n" * 50 + b"part"), ("stdout", b"\n\n"), ("stderr", b"rest\n")]
    attempt(logs, 1, chunks)
    by_record = []
    for _at, _end, part in output.block_records(logs.path(JOB, 1).read_bytes(), 0, frozenset()):
        _, stream, tag, data = part.groups()
        by_record.append((stream.decode(), (data or b"") + (b"\n" if tag == b"F" else b"")))
    entries = everything(logs)
    assert joined(entries) == {
        name: b"".join(data for stream, data in by_record if stream == name)
        for name in ("stdout", "stderr")
    }
    assert [e["stream"] for e in entries if e["stream"] == "stderr"] != []
    first = plain_run(logs.path(JOB, 1).read_bytes()[:4096].rpartition(b"\n")[0] + b"\n")
    assert first is not None and first[1] == b"stdout" and first[2].startswith(b"0\n1\n")


def test_a_block_that_is_not_plain_records_of_one_stream_is_read_record_by_record():
    line = b"2026-12-02T07:40:00.1+00:00 stdout F a\n"
    assert plain_run(line + line.replace(b"stdout", b"stderr")) is None
    assert plain_run(line + b"no record\n") is None
    assert plain_run(line.replace(b" F a", b" P a") + line) == (
        b"2026-12-02T07:40:00.1+00:00",
        b"stdout",
        b"aa\n",
    )

"""Job output shipped into the real journald, read back with journalctl, byte for byte.

The logs are real conmon k8s-file logs (a container run with ``--log-driver
k8s-file``), shipped by the real ``Shipper`` and ``JournalWriter`` into the
host's journald and read back with ``journalctl -o json --all`` (without
``--all`` journalctl nulls fields over 4 KiB). Resuming after a crash (a
shipper that never saved, replaced by a new one) must ship nothing twice, and
where a copy stopped is only taken from the agent's own uid's entries.
Waits are on journalctl seeing the entries, never a sleep.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import pytest

from agent.adapters.joblogs import JobLogs, records
from agent.adapters.journal import JournalWriter
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.runtime.shipper import Shipper
from agent.storage.store import Store
from tests.harness import wait_until

pytestmark = pytest.mark.podman

#: What the job writes: empty lines, non-UTF-8, a 100 KB line (conmon splits it
#: into 8 KiB partial records), stderr, and output that ends without a newline.
SCRIPT = (
    "printf 'one\\n\\n\\n'; printf '\\377\\376 not utf-8\\n';"
    " head -c 100000 /dev/zero | tr '\\0' x; echo; echo oops >&2; printf 'no newline at the end'"
)
STDOUT = b"one\n\n\n\xff\xfe not utf-8\n" + b"x" * 100000 + b"\nno newline at the end"
STDERR = b"oops\n"


def journal_entries(job_id: str, uid: int | None = None) -> list[dict]:
    argv = ["journalctl", "--no-pager", "-q", "-o", "json", "--all", f"CHOO_JOB_ID={job_id}"]
    if uid is not None:
        argv.append(f"_UID={uid}")
    out = subprocess.run(argv, capture_output=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def message(entry: dict) -> bytes:
    value = entry["MESSAGE"]
    return bytes(value) if isinstance(value, list) else value.encode()


def stream_bytes(entries: list[dict], stream: str) -> bytes:
    """A stream's bytes put back together as a reader of the journal would."""
    return b"".join(
        message(e) + (b"" if e.get("CONTAINER_PARTIAL_MESSAGE") == "true" else b"\n")
        for e in entries
        if e["CHOO_STREAM"] == stream
    )


@pytest.fixture
def world(tmp_path):
    feed = ChangeFeed()
    store = Store(tmp_path / "choo.db", feed)
    store.open()
    logs = JobLogs(tmp_path / "logs")
    yield store, feed, logs
    store.close()


def conmon_log(image, store, logs) -> str:
    """A job (in the store, ended) whose attempt 1 log conmon wrote from SCRIPT."""
    job_id = store.add_job({"image": image}, trigger="rpc", queue_limit=10)["id"]
    store.transition(job_id, State.STARTING, new_attempt="rpc")
    store.transition(job_id, State.RUNNING)
    path = logs.prepare(job_id, 1)
    name = f"choo-test-ship-{uuid.uuid4().hex[:8]}"
    # Attached, as `podman run` is, but what the job wrote is read from the log.
    subprocess.run(
        [
            *("podman", "run", "--rm", "--name", name, "--network", "none"),
            *("--log-driver", "k8s-file", "--log-opt", f"path={path}", image, "sh", "-c", SCRIPT),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store.transition(job_id, State.SUCCEEDED)
    return job_id


def test_a_real_conmon_log_reaches_the_journal_byte_for_byte(image, world):
    store, feed, logs = world
    job_id = conmon_log(image, store, logs)
    path = logs.path(job_id, 1)
    assert b"".join(r.data for r in records(path) if r.stream == "stdout") == STDOUT
    shipper = Shipper(store, feed, logs, JournalWriter())
    shipper.recover()
    while shipper.ship_round():
        pass
    assert shipper.pending() == []
    count = len(list(records(path)))
    entries = wait_until(
        lambda: (e := journal_entries(job_id, os.getuid())) and len(e) >= count and e,
        30,
        "journald to record every entry",
    )
    assert len(entries) == count
    assert stream_bytes(entries, "stdout") == STDOUT
    assert stream_bytes(entries, "stderr") == STDERR
    first = entries[0]
    assert (first["CONTAINER_NAME"], first["SYSLOG_IDENTIFIER"]) == (f"choo-{job_id}",) * 2
    assert (first["CHOO_ATTEMPT"], first["PRIORITY"], first["CHOO_OFFSET"]) == ("1", "6", "0")
    assert {e["PRIORITY"] for e in entries if e["CHOO_STREAM"] == "stderr"} == {"3"}
    assert sum(e.get("CONTAINER_PARTIAL_MESSAGE") == "true" for e in entries) >= 12


def test_a_restart_after_a_crash_ships_nothing_twice(image, world):
    store, feed, logs = world
    job_id = conmon_log(image, store, logs)
    path = logs.path(job_id, 1)
    everything = list(records(path))
    first = Shipper(store, feed, logs, JournalWriter())
    first.recover()
    # Ship half, then "crash": the database never hears of it.
    for record in everything[: len(everything) // 2]:
        first.journal.ship(job_id, 1, record)
    wait_until(lambda: len(journal_entries(job_id)) == len(everything) // 2, 30, "the first half")
    again = Shipper(store, feed, logs, JournalWriter())
    again.recover()
    while again.ship_round():
        pass
    entries = wait_until(
        lambda: (e := journal_entries(job_id)) and len(e) >= len(everything) and e,
        30,
        "the rest",
    )
    offsets = [int(e["CHOO_OFFSET"]) for e in entries]
    assert offsets == [r.offset for r in everything]
    assert stream_bytes(entries, "stdout") == STDOUT


def test_where_a_copy_stopped_is_only_taken_from_the_agent_s_uid(image, world):
    """Anyone may send CHOO_* fields; journald sets _UID. (The tests run as one
    user, so another user's forgery is in tests/system/output.sh, as bob.)"""
    store, feed, logs = world
    job_id = conmon_log(image, store, logs)
    writer = JournalWriter()
    record = next(records(logs.path(job_id, 1)))
    writer.ship(job_id, 1, record)
    # A forgery through journald's native socket, as any local process may send.
    forged = "\n".join(
        ["MESSAGE=forged", f"CHOO_JOB_ID={job_id}", "CHOO_ATTEMPT=1", "CHOO_OFFSET=999999999"]
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(forged.encode() + b"\n", "/run/systemd/journal/socket")
    wait_until(lambda: len(journal_entries(job_id)) == 2, 30, "both entries")
    # Same uid: the newest entry is trusted (a user may always disturb its own agent).
    assert writer.last_shipped(job_id, 1) == 999999999
    # Another uid's agent does not see it: the _UID match is part of the query.
    other = JournalWriter(uid=os.getuid() + 1)
    assert other.last_shipped(job_id, 1) is None
    # And a later agent's shipper never trusts an offset the file does not back:
    # nothing skipped.
    shipper = Shipper(store, feed, JobLogs(logs.root), writer)
    shipper.recover()
    while shipper.ship_round():
        pass
    entries = wait_until(
        lambda: (
            (e := journal_entries(job_id, os.getuid()))
            and len(e) >= 2 + len(list(records(logs.path(job_id, 1))))
            and e
        ),
        30,
        "the whole log",
    )
    shipped = [e for e in entries if e["MESSAGE"] != "forged"][1:]
    assert stream_bytes(shipped, "stdout") == STDOUT
    assert store.get(job_id)["log_lost"] is not None  # the offset it could not back


def test_the_native_sender_writes_what_sendv_writes(tmp_path):
    """JournalWriter's own datagrams (and its sendv fall-back for big ones) give the
    same entries, field for field and byte for byte, as python-systemd's sendv."""
    from systemd import journal

    from agent.adapters.joblogs import Record
    from agent.adapters.journal import PRIORITY

    cases = [
        (b"plain\n", False),
        (b"carriage\rreturn\n", False),
        (b"\xff\xfe not utf-8\n", False),
        (b"x" * 100_000, True),
        (b"y" * (1 << 20) + b"\n", False),
        (b"\n", False),
    ]
    ours, theirs = f"NATIVE{uuid.uuid4().hex}", f"SENDV{uuid.uuid4().hex}"
    writer = JournalWriter()
    for offset, (data, partial) in enumerate(cases):
        record = Record(offset, offset + 1, 0.0, "stderr", data, partial)
        writer.ship(ours, 1, record)
        fields = [
            b"MESSAGE=" + (data if partial else data[:-1]),
            f"CONTAINER_NAME=choo-{theirs}",
            f"SYSLOG_IDENTIFIER=choo-{theirs}",
            f"CHOO_JOB_ID={theirs}",
            "CHOO_ATTEMPT=1",
            "CHOO_STREAM=stderr",
            f"CHOO_OFFSET={offset}",
            f"PRIORITY={PRIORITY['stderr']}",
        ] + (["CONTAINER_PARTIAL_MESSAGE=true"] if partial else [])
        journal.sendv(*fields)

    def entries(job_id: str) -> list[dict]:
        # Every field as journald stored it: bytes, unconverted, unabridged.
        reader = journal.Reader(converters={})
        reader._convert_field = lambda key, value: value
        reader.data_threshold = 0
        reader.add_match(CHOO_JOB_ID=job_id)
        found = [{k: v for k, v in entry.items() if not k.startswith("_")} for entry in reader]
        reader.close()
        return found

    got = wait_until(lambda: (e := entries(ours)) and len(e) == len(cases) and e, 30, "ours")
    want = wait_until(lambda: (e := entries(theirs)) and len(e) == len(cases) and e, 30, "theirs")
    for entry, expected, (data, partial) in zip(got, want, cases, strict=True):
        assert entry["MESSAGE"] == (data if partial else data[:-1])
        assert entry == {k: v.replace(theirs.encode(), ours.encode()) for k, v in expected.items()}

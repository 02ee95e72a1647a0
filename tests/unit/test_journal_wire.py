"""JournalWriter's native-protocol datagrams, received on a real Unix socket of the test's own."""

from __future__ import annotations

import socket
import struct

import pytest

from agent.adapters import journal as journal_module
from agent.adapters.joblogs import Record
from agent.adapters.journal import JournalWriter, encode_field


def decode(datagram: bytes) -> list[tuple[bytes, bytes]]:
    """Fields of a native-protocol datagram, in order, as journald reads them."""
    fields, at = [], 0
    while at < len(datagram):
        line_end = datagram.index(b"\n", at)
        line = datagram[at:line_end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            at = line_end + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", datagram[line_end + 1 : line_end + 9])
            value = datagram[line_end + 9 : line_end + 9 + size]
            assert datagram[line_end + 9 + size : line_end + 10 + size] == b"\n"
            at = line_end + 10 + size
        fields.append((name, value))
    return fields


@pytest.fixture
def journald(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "socket")
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    yield path, sock
    sock.close()


def record(data: bytes, partial: bool = False, stream: str = "stdout") -> Record:
    return Record(
        offset=1234, end=1234 + len(data), time=0.0, stream=stream, data=data, partial=partial
    )


def test_a_field_with_a_newline_is_sent_with_its_length():
    assert encode_field(b"A", b"x\ry") == b"A=x\ry\n"
    assert encode_field(b"A", b"x\ny") == b"A\n" + (3).to_bytes(8, "little") + b"x\ny\n"
    assert decode(encode_field(b"A", b"\n")) == [(b"A", b"\n")]


@pytest.mark.parametrize("partial", [False, True])
def test_an_entry_carries_the_record_s_bytes_and_where_it_came_from(journald, partial):
    path, sock = journald
    data = b"\xff\xfe not utf-8\r" + (b"" if partial else b"\n")
    JournalWriter(path=path).ship("01JOB", 2, record(data, partial, "stderr"))
    fields = decode(sock.recv(1 << 16))
    expected = [
        (b"CONTAINER_NAME", b"choo-01JOB"),
        (b"SYSLOG_IDENTIFIER", b"choo-01JOB"),
        (b"CHOO_JOB_ID", b"01JOB"),
        (b"CHOO_ATTEMPT", b"2"),
        (b"CHOO_STREAM", b"stderr"),
        (b"PRIORITY", b"3"),
        (b"MESSAGE", b"\xff\xfe not utf-8\r"),
        (b"CHOO_OFFSET", b"1234"),
    ]
    assert fields == expected + ([(b"CONTAINER_PARTIAL_MESSAGE", b"true")] if partial else [])


def test_a_datagram_too_big_for_the_socket_goes_through_sendv(journald, monkeypatch):
    path, sock = journald
    sent = []
    monkeypatch.setattr(journal_module.journal, "sendv", lambda *fields: sent.append(fields))
    writer = JournalWriter(path=path)
    writer.ship("01JOB", 1, record(b"x" * (10 << 20), partial=True))
    assert sent and sent[0][6] == b"MESSAGE=" + b"x" * (10 << 20)
    assert "CONTAINER_PARTIAL_MESSAGE=true" in sent[0]
    # The socket is kept: the next small record goes out as a datagram again.
    writer.ship("01JOB", 1, record(b"small\n"))
    assert (b"MESSAGE", b"small") in decode(sock.recv(1 << 16))


def test_no_journald_is_an_oserror_and_the_next_ship_connects_again(tmp_path, journald):
    path, sock = journald
    writer = JournalWriter(path=str(tmp_path / "absent"))
    with pytest.raises(OSError):
        writer.ship("01JOB", 1, record(b"a\n"))
    writer.path = path
    writer.ship("01JOB", 1, record(b"b\n"))
    assert (b"MESSAGE", b"b") in decode(sock.recv(1 << 16))

"""The journal side of choo: job output copied in, and the agent's own log lines.

A job's output is kept in its attempt's log file (joblogs.py); ``JournalWriter``
copies it into the journal record by record, as datagrams of journald's
native protocol on one socket of its own (``send`` waits without the GIL,
python-systemd's ``sendv`` does not; a datagram too big for the socket goes
through ``sendv``, which passes it in a memfd: lossless for any bytes), with
the fields ``journalctl CONTAINER_NAME=choo-<ID>`` finds, and tells
where a copy left off (``last_shipped``, trusting only the agent's own
entries, ``_UID``). It never decides what to ship or when: the shipper
(runtime/shipper.py) does. ``setup_logging`` sends the agent's own lines to
stderr, which systemd connects to the journal.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys

from systemd import journal

from agent.adapters.joblogs import Record

PRIORITY = {"stdout": "6", "stderr": "3"}
JOURNAL_SOCKET = "/run/systemd/journal/socket"
# A datagram the socket cannot take whole: sendv passes it in a memfd instead.
_TOO_BIG = (errno.EMSGSIZE, errno.ENOBUFS)
# Headers of this many (job, attempt, stream) kept: the jobs being shipped at once.
_HEADERS_KEPT = 64


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field in journald's native protocol.

    ``NAME=value\n`` when the value holds no newline; otherwise ``NAME\n``,
    the value's length as 64-bit little-endian, the value and ``\n``.
    """
    if b"\n" in value:
        return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name + b"=" + value + b"\n"


class JournalWriter:
    """Copies the records of job attempts into the journal, and finds where a copy stopped.

    Args:
        uid: the uid whose entries are trusted when looking back (the agent's:
            anyone may send an entry with any ``CHOO_*`` field, but journald
            sets ``_UID`` itself).
    """

    def __init__(self, uid: int | None = None, path: str = JOURNAL_SOCKET):
        self.uid = os.getuid() if uid is None else uid
        self.path = path
        self._socket: socket.socket | None = None
        self._headers: dict[tuple[str, int, str], bytes] = {}

    def _header(self, job_id: str, attempt: int, stream: str) -> bytes:
        """The fields every entry of one stream of one attempt carries, encoded once."""
        key = (job_id, attempt, stream)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) >= _HEADERS_KEPT:
                self._headers.clear()
            header = self._headers[key] = b"".join(
                encode_field(name.encode(), value.encode())
                for name, value in _fixed_fields(job_id, attempt, stream)
            )
        return header

    def _send(self, datagram: bytes) -> None:
        """Send one datagram, connecting first; a failed socket is dropped and made anew."""
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._socket = sock
        try:
            self._socket.send(datagram)
        except OSError as error:
            if error.errno not in _TOO_BIG:
                # journald restarted (a new socket) or went away: reconnect next time.
                self._socket.close()
                self._socket = None
            raise

    def ship(self, job_id: str, attempt: int, record: Record) -> None:
        """Send one record as one journal entry: its bytes exactly, and where it came from.

        ``MESSAGE`` is the record's bytes without the newline of a full line;
        a partial record carries ``CONTAINER_PARTIAL_MESSAGE=true``, as
        conmon's own journald driver writes it.

        Raises:
            OSError: journald did not take the entry (not running, or its
                socket refused it); nothing was written.
        """
        data = record.data if record.partial else record.data[:-1]
        offset = str(record.offset).encode()
        datagram = [
            self._header(job_id, attempt, record.stream),
            encode_field(b"MESSAGE", data),
            b"CHOO_OFFSET=" + offset + b"\n",
        ]
        if record.partial:
            datagram.append(b"CONTAINER_PARTIAL_MESSAGE=true\n")
        try:
            self._send(b"".join(datagram))
        except OSError as error:
            if error.errno not in _TOO_BIG:
                raise
            fields = [
                f"{name}={value}" for name, value in _fixed_fields(job_id, attempt, record.stream)
            ]
            fields += [b"MESSAGE=" + data, b"CHOO_OFFSET=" + offset]
            if record.partial:
                fields.append("CONTAINER_PARTIAL_MESSAGE=true")
            journal.sendv(*fields)

    def last_shipped(self, job_id: str, attempt: int) -> int | None:
        """Where the newest record of an attempt copied by this uid began (its ``CHOO_OFFSET``).

        The caller resumes after that record; the record's end is in the file,
        not in the journal.

        Returns:
            The offset, or None when no entry of the attempt is found or the
            journal cannot be read (then the caller falls back on what the
            database recorded).
        """
        try:
            reader = journal.Reader(converters={"CHOO_OFFSET": int})
        except OSError:
            return None
        try:
            reader.add_match(CHOO_JOB_ID=job_id, CHOO_ATTEMPT=str(attempt), _UID=str(self.uid))
            reader.seek_tail()
            entry = reader.get_previous()
        except (OSError, ValueError):
            return None
        finally:
            reader.close()
        offset = entry.get("CHOO_OFFSET")
        return offset if isinstance(offset, int) and offset >= 0 else None


def _fixed_fields(job_id: str, attempt: int, stream: str) -> list[tuple[str, str]]:
    """The fields that are the same in every entry of one stream of one attempt."""
    return [
        ("CONTAINER_NAME", f"choo-{job_id}"),
        ("SYSLOG_IDENTIFIER", f"choo-{job_id}"),
        ("CHOO_JOB_ID", job_id),
        ("CHOO_ATTEMPT", str(attempt)),
        ("CHOO_STREAM", stream),
        ("PRIORITY", PRIORITY[stream]),
    ]


class _JournalFormatter(logging.Formatter):
    """Prefix lines with ``<N>`` so journald (via stderr) records the syslog priority."""

    PRIORITY = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = self.PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def setup_logging(level: str) -> None:
    """Send the agent's log lines to stderr, with syslog priorities under systemd.

    systemd connects stderr to the journal and sets ``$JOURNAL_STREAM``; there
    the ``<N>`` prefix gives ``journalctl -p warning`` something to filter on.
    In a terminal, lines get a timestamp and a level name instead.
    """
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Their debug output (every SQL statement, every HTTP request) drowns ours.
    for noisy in ("peewee", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))

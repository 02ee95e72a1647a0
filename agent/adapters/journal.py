"""The journal side of choo: job output copied in, and the agent's own log lines.

A job's output is kept in its attempt's log file (joblogs.py); ``JournalWriter``
copies it into the journal record by record, with ``sendv`` (lossless for any
bytes) and the fields ``journalctl CONTAINER_NAME=choo-<ID>`` finds, and tells
where a copy left off (``last_shipped``, trusting only the agent's own
entries, ``_UID``). It never decides what to ship or when: the shipper
(runtime/shipper.py) does. ``setup_logging`` sends the agent's own lines to
stderr, which systemd connects to the journal.
"""

from __future__ import annotations

import logging
import os
import sys

from systemd import journal

from agent.adapters.joblogs import Record

PRIORITY = {"stdout": "6", "stderr": "3"}


class JournalWriter:
    """Copies the records of job attempts into the journal, and finds where a copy stopped.

    Args:
        uid: the uid whose entries are trusted when looking back (the agent's:
            anyone may send an entry with any ``CHOO_*`` field, but journald
            sets ``_UID`` itself).
    """

    def __init__(self, uid: int | None = None):
        self.uid = os.getuid() if uid is None else uid

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
        fields = [
            b"MESSAGE=" + data,
            f"CONTAINER_NAME=choo-{job_id}",
            f"SYSLOG_IDENTIFIER=choo-{job_id}",
            f"CHOO_JOB_ID={job_id}",
            f"CHOO_ATTEMPT={attempt}",
            f"CHOO_STREAM={record.stream}",
            f"CHOO_OFFSET={record.offset}",
            f"PRIORITY={PRIORITY[record.stream]}",
        ]
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

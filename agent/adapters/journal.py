"""The journal side of choo: job output copied in, and the agent's own log lines.

A job's output is kept in its attempt's log file (joblogs.py); ``JournalWriter``
copies it into the journal record by record, with ``sendv`` (lossless for any
bytes) and the fields ``journalctl CONTAINER_NAME=choo-<ID>`` finds, and tells
where a copy left off (``last_shipped``, trusting only the agent's own
entries, ``_UID``). It never decides what to ship or when: the shipper
(runtime/shipper.py) does. ``setup_logging`` sends the agent's own lines to
stderr, which systemd connects to the journal.

``JournalReader`` reads output back with ``journalctl`` for callers that have
not yet moved to the log files.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from systemd import journal

from agent.adapters.joblogs import Record
from agent.protocol.errors import ChooError

#: After a job ended, how long to let journald take in lines still queued on
#: its socket before the final read.
SETTLE_SECONDS = 0.01


def _entry(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    message = record.get("MESSAGE", "")
    if isinstance(message, list):  # journalctl gives non-UTF-8 text as a byte array
        message = bytes(message).decode("utf-8", errors="replace")
    if message is None:
        message = ""
    try:
        stamp = int(record.get("__REALTIME_TIMESTAMP", 0)) / 1e6
    except ValueError:
        stamp = 0.0
    return {
        "stream": "stderr" if record.get("PRIORITY") == "3" else "stdout",
        "line": message.removesuffix("\n"),
        "time": stamp,
        "cursor": record.get("__CURSOR"),
    }


class JournalReader:
    """Reads a container's entries from the journal through ``journalctl``."""

    def __init__(self, journalctl: str | None = None):
        self.journalctl = journalctl or shutil.which("journalctl") or "/usr/bin/journalctl"

    def _argv(
        self, container: str, tail: int | None, since: float | None, after: str | None = None
    ) -> list[str]:
        argv = [self.journalctl, "--no-pager", "-o", "json", "-q"]
        argv += ["-n", str(tail)] if tail is not None and after is None else ["-n", "all"]
        if since is not None:
            argv.append(f"--since=@{since:.6f}")
        if after is not None:
            argv.append(f"--after-cursor={after}")
        argv.append(f"CONTAINER_NAME={container}")
        return argv

    def read(
        self,
        container: str,
        *,
        tail: int | None = None,
        since: float | None = None,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        """All (or the last ``tail``, or those after cursor ``after``) output
        lines of a container, oldest first.

        Raises:
            ChooError: journalctl is missing or cannot read the journal.
        """
        try:
            done = subprocess.run(
                self._argv(container, tail, since, after), capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ChooError(f"cannot read the journal: {exc}") from exc
        if done.returncode != 0 and not done.stdout:
            raise ChooError(
                "cannot read the journal: "
                + done.stderr.decode(errors="replace").strip()[-300:]
                + " (is the agent's user in group systemd-journal?)"
            )
        return [e for e in map(_entry, done.stdout.splitlines()) if e is not None]

    def follow(
        self,
        container: str,
        *,
        finished: Callable[[], bool],
        tail: int | None = None,
        since: float | None = None,
        after: str | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[dict[str, Any]]:
        """Yield a container's output lines as journald records them.

        ``journalctl --follow`` learns of new entries through journald's
        change notifications, which journald coalesces (up to 250 ms). So once
        ``finished()`` holds, the follower is stopped and one direct read from
        the last cursor on collects what it had not been told of yet. Stops at
        once when ``cancelled()`` holds.
        """
        argv = self._argv(container, tail, since, after)
        argv.insert(1, "--follow")
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise ChooError(f"cannot read the journal: {exc}") from exc
        fd = proc.stdout.fileno()
        # poll, not select: with many clients connected the pipe's descriptor
        # can be above 1023, which select() cannot watch.
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buffer = b""
        cursor = after
        try:
            while True:
                if cancelled():
                    return
                ready = poller.poll(20)
                if not ready:
                    if finished():
                        break
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    entry = _entry(raw)
                    if entry is not None:
                        cursor = entry["cursor"] or cursor
                        yield entry
        finally:
            proc.kill()
            proc.wait()
        time.sleep(SETTLE_SECONDS)
        yield from self.read(container, tail=tail, since=since, after=cursor)


#: syslog priorities of a job's streams, as Podman's journald driver gives them.
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

"""The shipping thread: copies job output from the attempts' log files into the journal.

Each attempt's k8s-file log (adapters/joblogs.py) is the job's own output; the
journal gets a copy, record by record, exactly once. The shipper follows every
attempt of every job that has not ended, and the attempts of ended jobs until
their files are shipped to the end. It learns of jobs from the change feed
(and a rescan now and then), and of writes from inotify (agent/runtime/log_wakes.py:
it looks at the logs written, and at every log now and then; without
inotify it looks at every log each ``POLL`` seconds), and
keeps in memory how far each attempt is shipped; the database is told every
``SAVE_EVERY`` seconds. On start it asks the journal where it left off (the
newest entry of the attempt sent by the agent's uid), falling back on the
database, and looks at ended jobs submitted since its last clean stop
(shipped_mark.py) or, after a crash, in the last ``RESUME_WINDOW``.

It never blocks the controller (a thread of its own; journald being slow or
down only delays the copy: the data stays in the file, retried with backoff)
and never ships a record twice. While an attempt runs it keeps space reserved
ahead of its file (agent/adapters/log_space.py), so a disk that fills loses no
output; a file that shrank (Podman's ``log_size_max`` truncates it in place)
or a record conmon could not finish (the reserve ran out) is recorded on the
job as lost output (agent/runtime/output_loss.py), never silently; such a
record is shipped up to its cut, and the record conmon writes after it on its own.
A job's ``max_log_bytes`` is enforced here too, as it reads every record: it
ships nothing at or past an attempt's cut (agent/rules/output_cap.py) and has
agent/runtime/log_limit.py truncate the file there.
It never reads the journal for output and never decides a job's state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from agent.adapters.joblogs import (
    JobLogs,
    Record,
    at_boundary,
    count_kept,
    end_of_record_at,
    records,
)
from agent.config import Config
from agent.protocol.errors import ChooError
from agent.protocol.states import TERMINAL, State
from agent.rules.output_cap import Budget
from agent.runtime.changes import ChangeFeed
from agent.runtime.log_limit import OutputCap, budget_for
from agent.runtime.log_wakes import LogWakes
from agent.runtime.output_loss import LOST_EVENT, OutputLoss
from agent.runtime.ship_copy import Copy, release, size_of, torn_tail
from agent.runtime.shipped_mark import leave_mark, take_mark
from agent.storage.store import Store

log = logging.getLogger("choo-agent.shipper")

#: Seconds between looks at the files when no inotify wakes the shipper.
POLL = 0.05
#: The longest wait for a write with inotify: the feed (a job ended) and a stop
#: are seen this soon.
TICK = 0.2
#: Seconds between writes of the shipped offsets to the database.
SAVE_EVERY = 2.0
#: Seconds between rescans of the jobs not yet ended: only a net under the
#: feed (which names every job that changed, and says when it fell behind).
RESCAN_EVERY = 5.0
#: Records of one attempt shipped per round, so one chatty job never starves the others.
BATCH = 2000
#: Backoff while journald refuses entries: first wait, longest wait (seconds).
BACKOFF = (0.1, 5.0)
#: On start, ended jobs submitted this long ago (seconds) or less are looked at.
RESUME_WINDOW = 7 * 86400.0
#: Jobs read from the database at a time on start.
PAGE = 200

__all__ = ["LOST_EVENT", "Shipper"]


class JournalPort(Protocol):
    """Where the copy goes (``agent.adapters.journal.JournalWriter``)."""

    def ship(self, job_id: str, attempt: int, record: Record) -> None: ...

    def last_shipped(self, job_id: str, attempt: int) -> int | None: ...


class Shipper:
    """Copies every attempt's output into the journal, in a thread of its own.

    Args:
        store: the jobs database (which jobs exist, where a copy stood, losses).
        feed: the change feed the store publishes to (wakes the shipper).
        logs: where the attempts' log files are.
        journal: what ships a record and finds where a copy stopped.
        poll: seconds between looks at the files without an event.
        config: the agent's settings (``log_limit_action``, read at each cut).
        wake: asks the controller for a pass (to stop a job past its cap).
        mark: the file a clean stop leaves (shipped_mark.py; None: none is kept).
    """

    def __init__(
        self,
        store: Store,
        feed: ChangeFeed,
        logs: JobLogs,
        journal: JournalPort,
        *,
        poll: float = POLL,
        config: Config | None = None,
        wake: Callable[[], None] = lambda: None,
        mark: Path | None = None,
    ):
        self.store = store
        self.feed = feed
        self.logs = logs
        self.journal = journal
        self.poll = poll
        self.mark = mark
        self.cap = OutputCap(store, config or Config(), wake)
        self.loss = OutputLoss(store)
        self._copies: dict[tuple[str, int], Copy] = {}
        self.wakes = LogWakes(logs.root)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF[0]
        self._failing = False

    # -- life cycle ------------------------------------------------------------

    def start(self) -> None:
        """Start the shipping thread (it first finds where each copy left off)."""
        self._thread = threading.Thread(target=self.run, name="shipper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and save the offsets; waits at most ``timeout`` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The thread's loop: recover, then ship whatever is new until stopped."""
        clean = False
        try:
            self.wakes.open()
            seq = self.feed.seq
            self.recover()
            saved_at = rescanned_at = time.monotonic()
            while not self._stop.is_set():
                seq = self._follow(seq)
                now = time.monotonic()
                if now - rescanned_at >= RESCAN_EVERY:
                    self._rescan()
                    rescanned_at = now
                busy = self.ship_round()
                if now - saved_at >= SAVE_EVERY:
                    self.save()
                    saved_at = now
                if not busy:
                    self._wait(seq)
            clean = True
        except Exception:  # a bug must not end the copy silently
            log.exception("the journal shipper stopped")
        finally:
            self.wakes.close()
            self.save()
            if clean:
                leave_mark(self.mark, [job_id for job_id, _ in self._copies])
            self.store.release_thread()

    # -- which attempts ---------------------------------------------------------

    def recover(self) -> None:
        """Track the attempts of jobs not ended, and of recent ended ones not shipped."""
        self._rescan()
        after = None
        since = max(time.time() - RESUME_WINDOW, take_mark(self.mark))
        while True:
            page = self.store.list(
                states=[s.value for s in TERMINAL], since=since, after=after, limit=PAGE
            )
            for job in page:
                self.track(job)
            if len(page) < PAGE:
                return
            after = page[-1]["id"]

    def _wait(self, seq: int) -> None:
        """Sleep until a followed log is written (or the feed has news: without
        inotify; or ``TICK`` passes); mark what to look at."""
        if not self.wakes.watching:
            self.feed.wait_after(seq, self.poll)
            return
        retry = self._retry_at - time.monotonic()  # journald refused: try again then
        for job_id in self.wakes.wait(retry if 0 < retry < TICK else TICK, self._copies):
            self._look_at(job_id)  # a new job's directory, or a new attempt's log

    def _rescan(self) -> None:
        for job in self.store.nonterminal():
            # A job whose current attempt is followed has nothing new to find
            # (its earlier attempts were marked ended when that one was found).
            if (job["id"], job["attempt"]) not in self._copies:
                self.track(job)

    def _follow(self, seq: int) -> int:
        """Look at the jobs the feed's new events are about; the newest sequence number."""
        newest, events = self.feed.since(seq)
        if newest - seq > len(events):  # fell behind the feed's window
            self._rescan()
        # A removal's event says the job is gone: no read of each (a prune has 100,000).
        gone = {e["job_id"] for e in events if e.get("kind") == "removed"}
        self._forget(gone)
        for job_id in dict.fromkeys(e["job_id"] for e in events if e.get("job_id")):
            if job_id not in gone:
                self._look_at(job_id)
        return newest

    def _look_at(self, job_id: str) -> None:
        try:
            job = self.store.get(job_id)
        except ChooError:  # removed: its files went with it
            self._forget({job_id})
            return
        self.track(job)

    def _forget(self, job_ids: set[str]) -> None:
        """Stop following removed jobs (their files went with them)."""
        for key in [k for k in self._copies if k[0] in job_ids]:
            del self._copies[key]
        for job_id in job_ids:
            self.wakes.unwatch(job_id)

    def track(self, job: dict[str, Any]) -> None:
        """Follow each attempt of ``job`` that has a log not yet shipped to its end."""
        ended_job = State(job["state"]) in TERMINAL
        if not ended_job:  # before listing: a log made after it wakes the shipper
            self.wakes.watch(job["id"])
        numbers = self.logs.attempts(job["id"])
        saved = None
        for number in numbers:
            ended = ended_job or number < job["attempt"]
            copy = self._copies.get((job["id"], number))
            if copy is None:
                if saved is None:
                    saved = {a["number"]: a["log_shipped"] for a in self.store.attempts(job["id"])}
                path = self.logs.path(job["id"], number)
                copy = Copy(job["id"], number, path, 0, saved.get(number), budget=budget_for(job))
                copy.torn = self.loss.torn_at(job["id"], number)
                if ended and copy.saved is not None and copy.saved == size_of(path):
                    release(path)  # shipped to the end before: nothing else to do
                    continue
                copy.offset = self._resume(copy)
                if copy.budget is not None:  # what was kept before counts against the cap
                    count_kept(path, copy.budget, copy.offset)
                self._copies[(job["id"], number)] = copy
                self.wakes.mark((job["id"], number))
            copy.ended = ended

    def _resume(self, copy: Copy) -> int:
        """Where to go on with an attempt: after the newest record the journal has
        from us, or where the database says, whichever is further."""
        size = size_of(copy.path)
        candidates = []
        made_here = self.logs.made_here(copy.job_id, copy.number)  # then none of it is shipped
        start = None if made_here else self.journal.last_shipped(copy.job_id, copy.number)
        if start is not None:
            candidates.append(end_of_record_at(copy.path, start, copy.torn))
        if copy.saved:
            at = at_boundary(copy.path, copy.saved, copy.torn)
            candidates.append(copy.saved if at else None)
        if None in candidates:
            # What was shipped is no longer in the file: it was cut while we were away.
            seen = max(size, start or 0, copy.saved or 0)
            self.loss.cut(copy.job_id, copy.number, seen=seen, size=size, unshipped=0)
            return 0
        return max(candidates, default=0)

    # -- shipping ---------------------------------------------------------------

    def ship_round(self) -> bool:
        """Ship what is new in the tracked files, up to ``BATCH`` records each:
        in those written since the last round (and the ended ones), or in every
        one when it is time (without inotify: always).

        Returns:
            Whether some file has more to ship right away.
        """
        if time.monotonic() < self._retry_at:
            return False
        dirty = self.wakes.take()
        busy = False
        for key, copy in list(self._copies.items()):
            if dirty is not None and key not in dirty and not copy.ended:
                continue
            try:
                more = self._ship_one(copy)
            except OSError as exc:
                self._journal_failed(exc)
                self.wakes.mark(None)  # once journald takes entries again, every file
                return False
            if more:
                busy = True
                self.wakes.mark(key)
            elif copy.ended:
                del self._copies[key]
                self._save(copy)
                release(copy.path)
                if not any(k[0] == copy.job_id for k in self._copies):
                    self.wakes.unwatch(copy.job_id)
        if self._failing:
            log.info("journald takes job output again")
            self._failing = False
            self._backoff = BACKOFF[0]
        return busy

    def _ship_one(self, copy: Copy) -> bool:
        """Ship one file's new records; whether it has more than one batch's worth.

        Raises:
            OSError: journald refused a record (those before it are shipped).
        """
        size = size_of(copy.path)
        if size == copy.seen and not copy.ended:  # an ended one is looked at to its end
            return False
        if not copy.ended:
            copy.no_room = self.loss.keep_room(copy.job_id, copy.path, copy.no_room)
        if size < copy.offset or (
            size > copy.seen and not at_boundary(copy.path, copy.offset, copy.torn)
        ):
            seen = max(copy.seen, copy.offset)
            unshipped = max(0, seen - copy.offset)
            self.loss.cut(copy.job_id, copy.number, seen=seen, size=size, unshipped=unshipped)
            copy.offset = 0
            if copy.budget is not None:  # the new content has the whole cap again
                copy.budget = Budget(copy.budget.cap)
            self._save(copy)  # never resume past the cut into the new content
        budget = copy.budget
        for shipped, record in enumerate(records(copy.path, copy.offset, copy.torn), 1):
            if budget is not None and not budget.admit(record.offset, record.end, len(record.data)):
                break
            if record.offset > copy.offset and copy.offset not in copy.torn:
                # Bytes that are no record: conmon cut one short within its
                # header, and space came back before a round saw the cut.
                self._cut_short(copy, size=record.offset)
            self.journal.ship(copy.job_id, copy.number, record)
            copy.offset = record.end
            if shipped >= BATCH:
                copy.seen = -1
                return True
        if budget is not None and budget.cut is not None:
            size = self.cap.enforce(copy.job_id, copy.number, copy.path, budget)
        elif size > copy.offset and copy.offset not in copy.torn and torn_tail(copy):
            self._cut_short(copy, size=size)
            if copy.ended:  # nothing follows: done with the file (also after a restart)
                copy.offset = size
        copy.seen = size
        return False

    def _cut_short(self, copy: Copy, *, size: int) -> None:
        """The record at ``copy.offset`` was cut short (what follows, to ``size``, is lost)."""
        self.loss.torn(copy.job_id, copy.number, offset=copy.offset, size=size)
        copy.torn |= {copy.offset}

    def _journal_failed(self, exc: OSError) -> None:
        if not self._failing:
            log.warning(
                "journald does not take job output (%s); retrying, the output stays in the"
                " jobs' log files",
                exc,
            )
            self._failing = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF[1])

    # -- the database's copy of the offsets --------------------------------------

    def save(self) -> None:
        """Write every changed offset to the database."""
        for copy in list(self._copies.values()):
            self._save(copy)

    def _save(self, copy: Copy) -> None:
        if copy.saved == copy.offset:
            return
        try:
            self.store.update_attempt(copy.job_id, copy.number, log_shipped=copy.offset)
        except ChooError as exc:
            log.warning("cannot save how far job %s is shipped: %s", copy.job_id, exc.message)
            return
        copy.saved = copy.offset

    def pending(self) -> list[tuple[str, int]]:
        """The attempts still followed (job ID, attempt), for tests and status."""
        return sorted(self._copies)

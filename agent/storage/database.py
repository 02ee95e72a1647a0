"""The jobs database file: its connection, its schema on open, and the one way to write it.

``Database`` opens the SQLite file (peewee gives each thread a connection of
its own; a thread that is done with it gives it back for the next one,
``release_thread``),
refuses a damaged file (``PRAGMA quick_check``) with what to do about it,
brings an older schema up to ``SCHEMA_VERSION`` through migrations.py, keeps
the agent's identity in step with ``identity.py``'s copy beside the file, and
offers ``writing()``: the single ``BEGIN IMMEDIATE`` transaction every change
goes through, with SQLite's failures turned into ``StorageError``, and
``rows()`` (and ``tuples()``): a hot query's SQL built by peewee once per
shape, then run as it is (building it anew costs more than running it). It holds no queries of
jobs or schedules (jobs.py, schedules.py) and never talks to Podman.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Protocol

import peewee as pw
from ulid import ULID

from agent.protocol.errors import StorageError
from agent.storage import identity, migrations
from agent.storage.models import SCHEMA_VERSION, bind
from agent.storage.page_cache import PageCache
from agent.storage.writer_turns import WriterTurns

log = logging.getLogger(__name__)

#: Seconds a write waits for its turn: on SQLite's lock (another process's
#: write), and first on the agent's own write lock (behind its other writers).
#: Each wait is bounded, so a locked database fails a write in at most twice
#: this however many submits are queued, and the loop is never held longer.
BUSY_TIMEOUT = 10.0


#: Connections given back that wait for the next thread needing one. Each holds
#: its own copy of the schema (about 200 KiB; the triggers are most of it):
#: fifty followers each keeping one cost 11 MiB, and opening one anew costs
#: that parse again. Past these, a connection given back is closed.
IDLE_KEPT = 8


class _SharedConnections(pw.SqliteDatabase):
    """peewee's SQLite database whose closed connections wait, up to IDLE_KEPT,
    for the next thread to open one (peewee still gives each thread its own)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()

    def _connect(self) -> Any:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()  # pragmas set, schema read: ready as it is
        return super()._connect()

    def _close(self, conn: Any) -> None:
        with self._idle_lock:
            # One inside a transaction peewee does not know of is never handed on.
            if len(self._idle) < IDLE_KEPT and not conn.in_transaction:
                self._idle.append(conn)
                return
        conn.close()

    def close_idle(self) -> None:
        """Close every connection that waits for a thread."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def slot(name: str) -> str:
    """A placeholder for the value ``name`` in a query ``Database.rows`` builds once."""
    return f"\0{name}\0"


class Row(dict):
    """A row read by ``Database.rows``: its columns by name, as keys and as attributes
    (so records.py reads it like a model instance, without building one)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class DatabaseDamaged(StorageError):
    """The database file fails SQLite's integrity check (or is no database at all)."""


class EventSink(Protocol):
    """Where committed events go (the runtime's ``ChangeFeed``)."""

    def publish(self, event: dict[str, Any]) -> None: ...

    def publish_many(self, events: list[dict[str, Any]]) -> None: ...


class Database:
    """One jobs database file and the models bound to it. Thread-safe."""

    def __init__(self, path: Path, feed: EventSink):
        """Prepare, without opening, the database at ``path``.

        Args:
            path: the SQLite file (created with its folder by ``open``).
            feed: receives every event after its transaction commits.
        """
        self.path = path
        self.feed = feed
        #: The copy of the agent's identity that outlives this file.
        self.identity_path = path.parent / identity.FILE_NAME
        self.db = _SharedConnections(
            None,
            lock_type="IMMEDIATE",
            # FULL: a job acknowledged to a client must survive a power loss.
            pragmas={
                "journal_mode": "wal",
                "synchronous": "full",
                "foreign_keys": 1,
                "busy_timeout": int(BUSY_TIMEOUT * 1000),
                # Zero deleted rows only where the page is written anyway: a
                # distribution's default (on) also rewrites every page a prune
                # frees, doubling its I/O; freed pages are reused, never read.
                "secure_delete": "fast",
                # The rare sort or IN-list a query needs stays off the disk, and
                # works where no temp dir is writable (the installed unit's
                # ProtectSystem=strict: a prune's spill there failed mid-delete).
                "temp_store": "memory",
            },
            timeout=BUSY_TIMEOUT,
            check_same_thread=False,
        )
        self.models = bind(self.db)
        self._writers = WriterTurns(patience=BUSY_TIMEOUT)
        #: Moves on twice per write transaction, around its commit (what a kept page
        #: is valid for: page_cache.py).
        self.generation = 0
        self.pages = PageCache()  # job.list pages until the next write
        #: shape -> (SQL, its parameters: a slot's name, or a constant), for ``rows``.
        self._statements: dict[Hashable, tuple[str, list[tuple[str | None, Any]]]] = {}

    def open(self) -> None:
        """Open (creating if needed) the database and bring its schema up to date.

        A new database takes the identity kept beside it, if any; an existing
        one's identity is copied there.

        Raises:
            DatabaseDamaged: the file fails ``PRAGMA quick_check``.
            StorageError: the file is from a newer agent, or SQLite failed.
            OSError: the identity file cannot be read or written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.db.init(str(self.path))
        self._check_integrity()
        Setting = self.models.Setting
        with self.writing():
            row = None
            if Setting.table_exists():
                row = Setting.get_or_none(Setting.key == "schema_version")
            if row is not None and int(row.value) > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {row.value}, newer than this agent "
                    f"understands ({SCHEMA_VERSION}); upgrade choo-agent"
                )
            if row is not None and int(row.value) < SCHEMA_VERSION:
                # Before create_tables: its indexes may name columns a step adds.
                migrations.upgrade(self.db, int(row.value), SCHEMA_VERSION)
                row.value = str(SCHEMA_VERSION)
                row.save()
            self.db.create_tables(self.models.tables())
            if row is None:
                kept = identity.read(self.identity_path)
                if kept:
                    log.info("new database %s keeps the agent id %s", self.path, kept)
                Setting.create(key="schema_version", value=str(SCHEMA_VERSION))
                Setting.create(key="agent_id", value=kept or str(ULID()))
        # After the commit: the file never names an id no database holds.
        kept = identity.read(self.identity_path)
        if kept is not None and kept != self.agent_id:
            # The database is what labelled the running containers: it wins.
            log.warning(
                "%s said %s, the database %s; keeping the database's",
                self.identity_path,
                kept,
                self.agent_id,
            )
        identity.keep(self.identity_path, self.agent_id)

    def _check_integrity(self) -> None:
        """Refuse a damaged file before anything reads or writes it.

        Raises:
            DatabaseDamaged: SQLite finds the file damaged, or not a database.
            StorageError: SQLite failed otherwise (locked, unreadable...).
        """
        try:
            rows = self.db.execute_sql("PRAGMA quick_check").fetchall()
        except pw.OperationalError as exc:
            raise _storage_error(self.path, exc) from exc
        except pw.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
            self.close()
            raise self._damaged(str(exc)) from exc
        problems = [line for row in rows for line in str(row[0]).splitlines()]
        if problems != ["ok"]:
            self.close()
            # The first few problems say enough; a badly damaged file has thousands.
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise self._damaged("; ".join(problems[:3]) + more)

    def _damaged(self, detail: str) -> DatabaseDamaged:
        return DatabaseDamaged(
            f"the database {self.path} is damaged: {detail}. The agent will not run on it. "
            f"Either restore a backup of it, or move it aside with its -wal and -shm files "
            f'(\'for f in {self.path}*; do mv "$f" "$f.damaged"; done\'): the agent then '
            "starts with an "
            f"empty job history, keeping its identity ({self.identity_path}), so its "
            "containers, volumes and secrets are still recognised"
        )

    @property
    def agent_id(self) -> str:
        """This database's identity; containers are labelled with it, so two
        agents sharing one Podman never take each other's containers."""
        return self.models.Setting.get_by_id("agent_id").value

    def close(self) -> None:
        """Close the calling thread's connection, and those that wait for a thread."""
        self.db.close()
        self.db.close_idle()

    def release_thread(self) -> None:
        """Give back the calling thread's connection, if it holds one (not
        inside a transaction): the next thread that reads or writes takes it
        (or, past IDLE_KEPT waiting, it is closed).

        A thread about to end (a client's) gives its own back at once instead
        of leaving it to the garbage collector; a thread that waits long
        between reads (a follower) gives it back before each wait, so fifty of
        them share a few connections instead of holding fifty.
        """
        if not self.db.is_closed() and not self.db.in_transaction():
            self.db.close()

    @contextlib.contextmanager
    def unchecked_references(self) -> Iterator[None]:
        """This thread's connection without foreign-key checks, for a bulk delete
        that removes every row referring to what it deletes itself.

        Other threads' connections keep theirs. Inside a transaction SQLite
        ignores the switch: the checks (and their cascades) then stay on,
        which is slower, never wrong.
        """
        if self.db.in_transaction():
            yield
            return
        self.db.execute_sql("PRAGMA foreign_keys = 0")
        try:
            yield
        finally:
            self.db.execute_sql("PRAGMA foreign_keys = 1")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One IMMEDIATE write transaction; SQLite failures become ``StorageError``.

        The agent's own writers wait their turn first (``WriterTurns``: in
        arrival order, as long as the turns keep passing). SQLite's busy
        handler polls with growing sleeps, so with hundreds of clients writing
        at once an unlucky writer could wait past ``busy_timeout`` and fail
        with "database is locked"; the turn hands over at once. A writer gives
        up when no turn has gone through for ``BUSY_TIMEOUT``: the writers
        ahead are stuck behind a lock held from outside, and waiting on would
        hold this thread (the loop's, a client's) for minutes.

        Raises:
            StorageError: SQLite failed (disk full, read-only, locked...).
        """
        if not self._writers.acquire():
            raise _storage_error(
                self.path,
                pw.OperationalError(
                    f"database is locked: the agent's writers have not moved for "
                    f"{BUSY_TIMEOUT:g} s (another process holds it?)"
                ),
            )
        went_through = True  # a use case's own error too: the database moved on
        try:
            with self.db.atomic():
                yield
                if self.db.transaction_depth() == 1:
                    # Before the commit, so no kept page is served once it lands ...
                    self.generation += 1
        except pw.OperationalError as exc:
            went_through = False
            raise _storage_error(self.path, exc) from exc
        finally:
            if not self.db.in_transaction():  # the outermost block: committed or rolled back
                # ... and after it, so none read before it is kept as new. Still
                # this writer's turn: no other writer counts meanwhile.
                self.generation += 1
            self._writers.release(went_through=went_through)

    def rows(
        self, shape: Hashable, build: Callable[[], pw.Query], values: dict[str, Any]
    ) -> list[Row]:
        """The rows of a query peewee builds only the first time ``shape`` is asked for.

        Args:
            shape: names the query's form: everything ``build`` depends on.
            build: makes the query, with ``slot(name)`` wherever a value of
                ``values`` goes (as a string, or a limit); built once per shape.
            values: the value of each slot, for this run.

        Returns:
            Each row, its columns by name (aliases as given).

        Raises:
            StorageError: SQLite failed.
        """
        cursor = self._run(shape, build, values)
        names = [column[0] for column in cursor.description]
        return [Row(zip(names, row, strict=True)) for row in cursor]

    def tuples(
        self, shape: Hashable, build: Callable[[], pw.Query], values: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """As ``rows``, each row a tuple of its columns in the query's order: for a
        caller that knows that order, and reads many rows (no dict per row)."""
        return self._run(shape, build, values).fetchall()

    def _run(self, shape: Hashable, build: Callable[[], pw.Query], values: dict[str, Any]):
        statement = self._statements.get(shape)
        if statement is None:
            sql, params = build().sql()
            slots = {slot(name): name for name in values}
            statement = (sql, [(slots.get(p) if isinstance(p, str) else None, p) for p in params])
            self._statements[shape] = statement
        sql, params = statement
        try:
            return self.db.execute_sql(sql, [p if n is None else values[n] for n, p in params])
        except pw.OperationalError as exc:
            raise _storage_error(self.path, exc) from exc


def _storage_error(path: Path, exc: Exception) -> StorageError:
    text = str(exc)
    if "full" in text:
        hint = f"the disk holding {path} is full; free space and retry"
    elif "readonly" in text or "read-only" in text:
        hint = f"{path} is read-only"
    elif "locked" in text or "busy" in text:
        hint = f"{path} is locked by another process; is a second agent running?"
    else:
        hint = f"database error on {path}"
    return StorageError(f"{hint} ({text})")

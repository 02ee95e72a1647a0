"""The job and agent use cases (job.*, agent.*, events.*), independent of any transport.

rpc.py calls each with its params object (agent.protocol.methods), bound from
the request; tests and the scheduler thread may too. The service validates
values, reads and writes the store, and wakes the controller; it never talks
to Podman (the controller does) and knows nothing of sockets. The schedule.*
use cases are agent/api/schedules.py's.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ulid import ULID

from agent import __version__
from agent.adapters.files import MAX_READ, JobFiles
from agent.adapters.joblogs import JobLogs
from agent.adapters.secrets import Credentials
from agent.adapters.snapshot import Reader
from agent.api import logs as output
from agent.api.checks import string_list, whole
from agent.api.peers import Peer
from agent.config import Config
from agent.protocol import methods, types
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams, InvalidTransition
from agent.protocol.states import TERMINAL, State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store

MAX_WAIT = 24 * 3600.0
#: The longest a follow of a job whose output was cut waits for the shipper to
#: record ``log_dropped`` (it does so within one of its rounds).
DROPPED_WAIT = 5.0
#: What ``job.prune`` removes without ``older_than`` when ``retention`` is 0.
DEFAULT_PRUNE_AGE = 7 * 86400.0
MAX_LIST = 1000


class Service:
    """The use cases; one instance per agent, shared by every connection's thread."""

    def __init__(
        self,
        store: Store,
        feed: ChangeFeed,
        job_logs: JobLogs,
        config: Config,
        *,
        wake: Callable[[], None],
        status: Callable[[], dict[str, Any]],
        files: JobFiles | None = None,
    ):
        self.files = files
        self.store = store
        self.feed = feed
        self.job_logs = job_logs
        self.config = config
        self.wake = wake
        self.status = status
        self.started = time.time()

    # -- agent ---------------------------------------------------------------

    def info(self) -> types.Info:
        return {
            "version": __version__,
            "agent_id": self.store.agent_id,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 3),
            "socket": str(self.config.socket),
            "state_dir": str(self.config.state_dir),
            "max_concurrent": self.config.max_concurrent,
            "queue_limit": self.config.queue_limit,
            "jobs": self.store.counts(),
            "limits": {
                "max_connections": self.config.max_connections,
                "max_request_bytes": self.config.max_request_bytes,
                "request_timeout": self.config.request_timeout,
            },
            "containers": {
                "caps": list(self.config.container_caps),
                "no_new_privileges": self.config.no_new_privileges,
                "default_pids": self.config.default_pids,
                "default_memory": self.config.default_memory,
                "read_only_rootfs": self.config.read_only_rootfs,
            },
            # Names only: which credentials a job's `secrets` would receive.
            "secrets": Credentials(self.config).available(),
            **self.status(),
        }

    def release_thread(self) -> None:
        """The calling thread is done with the service (its client hung up)."""
        self.store.release_thread()

    # -- jobs ----------------------------------------------------------------

    def submit(
        self,
        params: methods.SubmitParams,
        *,
        peer: Peer | None = None,
        origin: dict[str, Any] | None = None,
    ) -> types.Job:
        """Validate a spec, snapshot its workspace, and queue it as a new job.

        Args:
            params: the spec, and the trigger (any with ``origin``: "schedule").
            peer: the caller, who must be allowed to read the workspace.
            origin: for the scheduler only: job columns (``schedule``,
                ``scheduled_for``, ``catch_up``) and ``schedule_update``, the
                schedule change stored in the job's own transaction.

        Raises:
            InvalidParams: a bad spec or trigger; QueueFull: ``queue_limit`` reached;
            StorageError: ``max_files_bytes`` reached or the disk is full.
        """
        raw, trigger = params.spec, params.trigger
        if trigger not in methods.TRIGGERS and origin is None:
            raise InvalidParams(
                f"trigger: expected one of {', '.join(methods.TRIGGERS)}, got {trigger!r}"
            )
        spec = specs.normalize(
            raw,
            default_timeout=self.config.default_timeout or None,
            default_max_log_bytes=self.config.max_log_bytes,
        )
        if raw.get("stop_timeout") is None:
            spec["stop_timeout"] = self.config.default_stop_timeout
        fields = dict(origin or {})
        schedule_update = fields.pop("schedule_update", None)
        job_id = str(ULID())
        if self.files is not None:
            self.files.check_room()  # max_files_bytes: its archive will need room too
        if spec["workspace"]:
            fields.update(self._snapshot(job_id, spec["workspace"], peer))
        try:
            job = self.store.add_job(
                spec,
                trigger=trigger,
                queue_limit=self.config.queue_limit,
                uid=peer.uid if peer else None,
                pid=peer.pid if peer else None,
                job_id=job_id,
                fields=fields,
                schedule_update=schedule_update,
            )
        except BaseException:
            if self.files is not None:
                self.files.remove(job_id)
            raise
        self.wake()
        return job

    def check_workspace(self, path: str, peer: Peer | None) -> Path:
        """Refuse a workspace the caller may not use (InvalidParams), copying nothing."""
        if self.files is None:
            raise InvalidParams("workspace: this agent keeps no job files")
        return self.files.check_workspace(path, peer.uid if peer else None)

    def _snapshot(self, job_id: str, path: str, peer: Peer | None) -> dict[str, Any]:
        source = self.check_workspace(path, peer)
        reader = None
        if peer is not None and peer.uid is not None:
            gid, groups = getattr(peer, "gid", None), getattr(peer, "groups", ())
            reader = Reader.of(peer.uid, gid, tuple(groups))
        dest, size = self.files.snapshot(job_id, source, reader)
        return {"workspace": str(dest), "workspace_size": size}

    # -- removal and retention -----------------------------------------------

    def remove(self, params: methods.JobRef) -> types.Job:
        """Delete a finished job: its record, attempts, events, output, workspace and archive.

        Raises:
            InvalidTransition: the job has not ended.
        """
        full = self.store.resolve(params.id)
        record = self.store.remove_job(full)
        self._remove_files([full])
        return record

    def prune(self, params: methods.PruneParams) -> types.Pruned:
        """Remove finished jobs that ended more than ``older_than`` ago (default:
        the ``retention`` setting, or 7 days when it is 0), optionally only
        those in ``state``. A job that has not ended is never touched."""
        older_than = params.older_than
        states = string_list(params.state, "state")
        terminal = sorted(s.value for s in TERMINAL)
        for s in states:
            if s not in terminal:
                raise InvalidParams(
                    f"state: only finished jobs are pruned; expected {', '.join(terminal)}, "
                    f"got {s!r}"
                )
        if older_than is None:
            seconds = self.config.retention or DEFAULT_PRUNE_AGE
        else:
            seconds = specs.parse_duration(older_than, "older_than")
        return self.prune_before(time.time() - seconds, states or None)

    def prune_before(self, ended_before: float, states: list[str] | None = None) -> types.Pruned:
        """Remove the finished jobs (in ``states``) that ended before ``ended_before``."""
        removed = self.remove_many(self.store.prunable(ended_before=ended_before, states=states))
        return {"removed": removed, "count": len(removed)}

    def remove_many(self, job_ids: list[str]) -> list[str]:
        """Remove those of ``job_ids`` that have ended; returns the IDs removed."""
        removed = [job["id"] for job in self.store.remove_jobs(job_ids)]
        self._remove_files(removed)
        return removed

    def _remove_files(self, job_ids: list[str]) -> None:
        """A removed job's files go with it: its output, workspace and archive."""
        for job_id in job_ids:
            self.job_logs.remove(job_id)
            if self.files is not None:
                self.files.remove(job_id)

    # -- artifacts -----------------------------------------------------------

    def artifacts(self, params: methods.ArtifactsParams) -> types.Artifacts:
        """What a job left in /out: the record, and with ``length`` a chunk of the
        archive (base64) from ``offset``."""
        offset, length = params.offset, params.length
        full = self.store.resolve(params.id)
        job = self.store.get(full)
        out: dict[str, Any] = {"id": full, "job_state": job["state"], **job["artifacts"]}
        if length is None:
            return out
        whole(length, "length", 1, MAX_READ)
        offset = 0 if offset is None else whole(offset, "offset", 0, 2**62)
        if out["state"] != "packed":
            raise InvalidParams(f"job {full} has no archive to read (artifacts {out['state']})")
        data = self.files.read(full, out["path"], offset, length) if self.files else b""
        out.update(
            offset=offset,
            data=base64.b64encode(data).decode(),
            eof=offset + len(data) >= (out["size"] or 0),
        )
        return out

    def get(self, params: methods.JobRef) -> types.JobDetail:
        """The job record with its attempts and events."""
        full = self.store.resolve(params.id)
        job = self.store.get(full)
        job["attempts"] = self.store.attempts(full)
        job["events"] = self.store.events(full)
        return job

    def list(self, params: methods.ListParams) -> types.JobPage:
        """One page of jobs, newest first, filtered by state, name, labels and age."""
        name, since, limit, cursor = params.name, params.since, params.limit, params.cursor
        states = string_list(params.state, "state")
        for s in states:
            if s not in {x.value for x in State}:
                raise InvalidParams(f"state: unknown state {s!r}")
        if not states and not params.all:
            states = [s.value for s in State if s not in TERMINAL]
        labels = {}
        for item in string_list(params.label, "label"):
            key, _, value = item.partition("=")
            labels[key] = value
        if name is not None and not isinstance(name, str):
            raise InvalidParams("name: expected a string")
        if since is not None:
            since = time.time() - specs.parse_duration(since, "since")
        whole(limit, "limit", 1, MAX_LIST)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidParams("cursor: expected the cursor of a previous page")
        jobs = self.store.list(
            states=states, name=name, labels=labels, since=since, after=cursor, limit=limit
        )
        return {"jobs": jobs, "cursor": jobs[-1]["id"] if len(jobs) == limit else None}

    def cancel(self, params: methods.JobRef) -> types.Job:
        """Cancel a job: a queued one at once, a running one through the controller.

        Raises:
            InvalidTransition: the job already ended.
        """
        full = self.store.resolve(params.id)
        job = self.store.get(full)
        if job["state"] in TERMINAL:
            raise InvalidTransition(
                f"job {full} already ended ({job['state']}); there is nothing to cancel",
                {"state": job["state"]},
            )
        if job["state"] == State.QUEUED:
            try:
                return self.store.transition(full, State.CANCELLED, expect=[State.QUEUED])
            except InvalidTransition:
                pass  # the controller started it meanwhile: stop it like a running one
        job = self.store.request_cancel(full)
        self.wake()
        return job

    def wait(
        self, params: methods.WaitParams, closed: Callable[[], bool] = lambda: False
    ) -> types.Job:
        """Block until the job ends, ``timeout`` seconds pass or the client hangs
        up; return the job."""
        full = self.store.resolve(params.id)
        timeout = params.timeout
        limit = MAX_WAIT if timeout is None else specs.parse_duration(timeout, "timeout")
        state = self._watch_state(full)
        self.feed.wait_for(lambda: state() in TERMINAL or closed(), min(limit, MAX_WAIT))
        return self.store.get(full)

    def logs(
        self,
        params: methods.LogsParams,
        *,
        emit: Callable[[types.LogEntry], None] | None = None,
        closed: Callable[[], bool] = lambda: False,
    ) -> types.Logs | types.Followed:
        """A job's output, from its attempts' logs (agent/api/logs.py).

        Without ``follow``, a page of entries (``next`` when more remains).
        With it, each entry is passed to ``emit`` as it is written, until the
        job has ended and all of its output is sent; the job record is
        returned then. ``after`` (an entry's cursor) resumes after that entry,
        and overrides ``tail``.

        Raises:
            InvalidParams: a bad ``tail``, ``since``, ``follow`` or ``after``.
        """
        tail, since, after, follow = params.tail, params.since, params.after, params.follow
        full = self.store.resolve(params.id)
        if tail is not None:
            whole(tail, "tail", 0)
        if since is not None:
            since = time.time() - specs.parse_duration(since, "since")
        if not isinstance(follow, bool):
            raise InvalidParams("follow: expected true or false")
        cap = self.store.get(full)["spec"].get("max_log_bytes") or 0
        reading = output.start(self.job_logs, full, tail=tail, since=since, after=after, cap=cap)
        if not follow or emit is None:
            return output.page(reading)
        state = self._watch_state(full)
        sent = output.follow(
            reading,
            full,
            ended=lambda: state() in TERMINAL,
            emit=emit,
            closed=closed,
            wait=lambda seconds: self.feed.wait_after(self.feed.seq, seconds),
        )
        if reading.cut:
            # The shipper counts what the cap dropped; the record the client
            # gets should say so (the shipper's output-cut event wakes this).
            self.feed.wait_for(
                lambda: bool(self.store.get(full).get("log_dropped")) or closed(), DROPPED_WAIT
            )
        return {"entries": sent, "job": self.store.get(full)}

    def subscribe(
        self,
        params: methods.SubscribeParams,
        *,
        emit: Callable[[types.Event], None],
        closed: Callable[[], bool] = lambda: False,
    ) -> types.Subscribed:
        """Pass each job event committed from now on to ``emit``.

        Ends when ``count`` events were sent, ``timeout`` seconds passed, or the
        client hung up; returns how many were sent and whether any were missed
        (a subscriber more than the feed's window behind).
        """
        name, timeout, count = params.name, params.timeout, params.count
        job_id = self.store.resolve(params.job) if params.job is not None else None
        if name is not None and not isinstance(name, str):
            raise InvalidParams("name: expected a string")
        if count is not None:
            whole(count, "count", 1)
        limit = MAX_WAIT if timeout is None else specs.parse_duration(timeout, "timeout")
        sent, missed = self.feed.relay(
            lambda event: (
                (job_id is None or event["job_id"] == job_id)
                and (name is None or event["name"] == name)
            ),
            emit,
            deadline=time.monotonic() + limit,
            count=count,
            closed=closed,
        )
        return {"events": sent, "missed": missed}

    def _watch_state(self, job_id: str) -> Callable[[], str]:
        """A cheap ``state()`` that reads the database only after a new event."""
        seen = {"seq": -1, "state": None}

        def state() -> str:
            seq = self.feed.seq
            if seq != seen["seq"]:
                seen["seq"] = seq
                seen["state"] = self.store.get(job_id)["state"]
            return seen["state"]

        return state

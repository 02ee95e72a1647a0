"""The job and agent use cases (job.*, agent.*, events.*), independent of any transport.

rpc.py calls each with its params object (agent.protocol.methods), bound from
the request; tests and the scheduler thread may too. The service validates
values, reads and writes the store, and wakes the controller; it never talks
to Podman (the controller does) and knows nothing of sockets. The schedule.*
use cases are agent/api/schedules.py's, removal and pruning removal.py's,
job.wait and events.subscribe watching.py's, job.release holding.py's,
job.rerun and job.rerun_failed reruns.py's, queue.* pausing.py's.
Each use case that reads what a job holds or changes it takes the caller
(``peer``; None: the agent itself) and asks owners.py first.
"""

from __future__ import annotations

import base64
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ulid import ULID

from agent import __version__
from agent.adapters.files import MAX_READ, JobFiles
from agent.adapters.joblogs import JobLogs
from agent.adapters.podman.caches import Caches
from agent.adapters.secrets import Credentials
from agent.adapters.snapshot import Reader
from agent.api import dependencies
from agent.api import logs as output
from agent.api.checks import job_spec, string_list, whole
from agent.api.holding import Holding, submit_fields
from agent.api.owners import OWNER, Owners
from agent.api.pausing import Pausing
from agent.api.peers import Peer
from agent.api.removal import Removal
from agent.api.reruns import Reruns
from agent.api.watching import Watching
from agent.config import Config
from agent.protocol import methods, types
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams, InvalidTransition
from agent.protocol.states import TERMINAL, State
from agent.runtime.changes import ChangeFeed
from agent.runtime.image_gc import ImageCollector
from agent.runtime.output_loss import OutputLoss
from agent.runtime.output_wakes import OutputWakes
from agent.storage.store import Store

#: The longest a follow of a job whose output was cut waits for the shipper to
#: record ``log_dropped`` (it does so within one of its rounds).
DROPPED_WAIT = 5.0
MAX_LIST = 1000


class Service(Removal, Watching, Holding, Reruns, Pausing):
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
        live_usage: Callable[[], dict[str, dict[str, Any]]] = dict,
        image_gc: ImageCollector | None = None,
        caches: Caches | None = None,
        wakes: OutputWakes | None = None,
    ):
        #: What wakes the followers of job output (one not started: they poll).
        self.wakes = wakes or OutputWakes(feed)
        #: The running jobs' current usage, by ID (job.top; the usage sampler's ``live``).
        self.live_usage = live_usage
        self.files = files
        self.image_gc = image_gc
        self.caches = caches
        self.store = store
        self.feed = feed
        self.job_logs = job_logs
        self.config = config
        self.wake = wake
        self.status = status
        self.owners = Owners(config)
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
            "queue": self.queue_state(),
            **self.status(),
        }

    def release_thread(self) -> None:
        """The calling thread is done with the service for now (its client hung up,
        or it waits for the client's next request)."""
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
            params: the spec, the trigger (any with ``origin``: "schedule"), and
                ``hold``, ``not_before`` or ``delay`` (agent/api/holding.py).
            peer: the caller, who must be allowed to read the workspace.
            origin: for the scheduler and reruns only: job columns (``schedule``,
                ``scheduled_for``, ``catch_up``, ``rerun_of``), ``schedule_update``,
                the schedule change stored in the job's own transaction, and
                ``workspace_from``, a snapshot of the agent's to copy instead.

        Raises:
            InvalidParams: a bad spec or trigger, or an ``after`` naming no job or
            one already ended otherwise; QueueFull: ``queue_limit`` reached;
            Unauthorized: a credential ``secret_access`` does not grant ``peer``.
            StorageError: ``max_files_bytes`` reached or the disk is full.
        """
        raw, trigger = params.spec, params.trigger
        if trigger not in methods.TRIGGERS and origin is None:
            raise InvalidParams(
                f"trigger: expected one of {', '.join(methods.TRIGGERS)}, got {trigger!r}"
            )
        spec = job_spec(raw, self.config)
        self.owners.require_secrets(peer, spec["secrets"])
        spec["after"] = dependencies.resolve_after(self.store, self.owners, spec["after"], peer)
        fields = dict(origin or {})
        fields.update(submit_fields(params, time.time()))
        schedule_update = fields.pop("schedule_update", None)
        reused = fields.pop("workspace_from", None)
        job_id = str(ULID())
        if self.files is not None:
            self.files.check_room()  # max_files_bytes: its archive will need room too
        if spec["workspace"]:
            fields.update(self._snapshot(job_id, spec["workspace"], peer, reused))
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

    def _snapshot(
        self, job_id: str, path: str, peer: Peer | None, reused: str | None = None
    ) -> dict[str, Any]:
        if reused:  # an earlier job's snapshot (a rerun) is the agent's own: not checked again
            dest, size = self.files.snapshot(job_id, Path(reused), None)
        else:
            source = self.check_workspace(path, peer)
            reader = None
            if peer is not None and peer.uid is not None:
                gid, groups = getattr(peer, "gid", None), getattr(peer, "groups", ())
                reader = Reader.of(peer.uid, gid, tuple(groups))
            dest, size = self.files.snapshot(job_id, source, reader)
        return {"workspace": str(dest), "workspace_size": size}

    # -- artifacts -----------------------------------------------------------

    def artifacts(
        self, params: methods.ArtifactsParams, *, peer: Peer | None = None
    ) -> types.Artifacts:
        """What a job left in /out: the record, and with ``length`` a chunk of the
        archive (base64) from ``offset``. Its owner's and the admins' only."""
        offset, length = params.offset, params.length
        full = self.store.resolve(params.id)
        job = self._owned(full, peer, "read its artifacts")
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

    def get(self, params: methods.JobRef, *, peer: Peer | None = None) -> types.JobDetail:
        """The job record with its attempts and events; env values and output
        withheld unless ``peer`` owns it or is an admin."""
        full = self.store.resolve(params.id)
        job = self._visible(full, peer)
        job["attempts"] = self.store.attempts(full)
        job["events"] = self.store.events(full)
        job["notifications"] = self.store.notifications(full)
        job["dependencies"] = dependencies.describe(self.store, job)
        return self.owners.shown(peer, job)

    def _visible(self, job_id: str, peer: Peer | None) -> dict[str, Any]:
        """The job's record, if ``peer`` may know of it (``list_others``).

        Raises:
            Unauthorized: ``list_others`` is off and the job is not ``peer``'s.
        """
        job = self.store.get(job_id)
        if not self.owners.may_see(peer, job[OWNER]):
            self.owners.require(peer, f"job {job_id}", job[OWNER], "see it (list_others = false)")
        return job

    def _owned(self, job_id: str, peer: Peer | None, action: str) -> dict[str, Any]:
        """The job's record, if ``peer`` may do ``action`` to it.

        Raises:
            Unauthorized: naming the owner rule.
        """
        job = self.store.get(job_id)
        self.owners.require(peer, f"job {job_id}", job[OWNER], action)
        return job

    def list(self, params: methods.ListParams, *, peer: Peer | None = None) -> types.JobPage:
        """One page of jobs, newest first, filtered by state, name, labels and age.

        Others' jobs come without env values and output, or (``list_others``
        off) not at all.
        """
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
        jobs: list[dict[str, Any]] = []
        while True:  # fill the page with jobs ``peer`` may see
            rows = self.store.summaries(
                states=states, name=name, labels=labels, since=since, after=cursor, limit=limit
            )
            jobs += self.owners.visible(peer, rows)[: limit - len(jobs)]
            if len(jobs) == limit or len(rows) < limit:
                break
            cursor = rows[-1]["id"]
        return {"jobs": jobs, "cursor": jobs[-1]["id"] if len(jobs) == limit else None}

    def cancel(self, params: methods.JobRef, *, peer: Peer | None = None) -> types.Job:
        """Cancel a job: a queued one at once, a running one through the controller.
        The event records who asked (``by``: a uid, or None for the agent).

        Raises:
            Unauthorized: ``peer`` may not cancel it; InvalidTransition: the job already ended.
        """
        full = self.store.resolve(params.id)
        job = self._owned(full, peer, "cancel it")
        by = {"by": peer.uid if peer else None}
        if job["state"] in TERMINAL:
            raise InvalidTransition(
                f"job {full} already ended ({job['state']}); there is nothing to cancel",
                {"state": job["state"]},
            )
        if job["state"] == State.QUEUED:
            try:
                job = self.store.transition(full, State.CANCELLED, expect=[State.QUEUED], detail=by)
                self.wake()  # its waiters (``after``) may now be cancelled too
                return job
            except InvalidTransition:
                pass  # the controller started it meanwhile: stop it like a running one
        job = self.store.request_cancel(full, detail=by)
        self.wake()
        return job

    def logs(
        self,
        params: methods.LogsParams,
        *,
        emit: Callable[[types.LogEntry], None] | None = None,
        closed: Callable[[], bool] = lambda: False,
        peer: Peer | None = None,
    ) -> types.Logs | types.Followed:
        """A job's output, from its attempts' logs (agent/api/logs.py).

        Without ``follow``, a page of entries (``next`` when more remains).
        With it, each entry is passed to ``emit`` as it is written, until the
        job has ended and all of its output is sent; the job record is
        returned then. ``after`` (an entry's cursor) resumes after that entry,
        and overrides ``tail``.

        Raises:
            InvalidParams: a bad ``tail``, ``since``, ``follow`` or ``after``;
            Unauthorized: ``peer`` is not the job's owner or an admin.
        """
        tail, since, after, follow = params.tail, params.since, params.after, params.follow
        full = self.store.resolve(params.id)
        self._owned(full, peer, "read its output")
        if tail is not None:
            whole(tail, "tail", 0)
        if since is not None:
            since = time.time() - specs.parse_duration(since, "since")
        if not isinstance(follow, bool):
            raise InvalidParams("follow: expected true or false")
        cap = self.store.get(full)["spec"].get("max_log_bytes") or 0
        torn = functools.partial(OutputLoss(self.store).torn_at, full)
        reading = output.start(
            self.job_logs, full, tail=tail, since=since, after=after, cap=cap, torn=torn
        )
        if not follow or emit is None:
            return output.page(reading)
        state = self._watch_state(full)
        with self.wakes.waiter(full) as waiter:
            sent = output.follow(
                reading,
                full,
                ended=lambda: state() in TERMINAL,
                emit=emit,
                closed=closed,
                wait=waiter.wait,
                watch=waiter.watch,
                idle=self.store.release_thread,
            )
        if reading.cut:
            # The shipper counts what the cap dropped; the record the client
            # gets should say so (the shipper's output-cut event wakes this).
            job = self._wait_until(
                full, lambda job: bool(job.get("log_dropped")), DROPPED_WAIT, closed
            )
            return {"entries": sent, "job": job}
        return {"entries": sent, "job": self.store.get(full)}

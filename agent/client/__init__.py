"""The Python client of the agent's socket, used by chooctl and by scripts.

    from agent.client import Client
    with Client() as choo:
        job = choo.submit({"image": "localhost/choo-demo", "command": ["true"]})
        done = choo.wait(job["id"])

One typed method per protocol method (agent.protocol.methods), plus what any
client needs beyond one call: ``output`` (all of a job's output so far, page
after page), ``follow`` (a job's output to its end, across agent restarts),
``entry_bytes`` (the exact bytes of an output entry) and ``download`` (an
artifacts archive, checked). ``call``
and ``stream`` remain for untyped use. Errors come back as the ``ChooError``
subclasses of agent.protocol.errors, so callers can catch ``NoSuchJob`` or
``QueueFull`` by type. Light on imports (no click, no jsonrpcserver): chooctl
starts with it, and only what every call needs is imported at once: a call
sends a plain dict of its params (declared in agent.protocol.params), never
builds a dataclass; the result TypedDicts are for type checkers; pausing's
params and hashlib wait for their calls.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from agent.client.connection import Connection, default_socket
from agent.protocol import methods as m
from agent.protocol import params as p
from agent.protocol.errors import AgentUnavailable, ChooError
from agent.protocol.output import entry_bytes
from agent.protocol.schedules import DEFAULT_HISTORY, DEFAULT_POLICY

if TYPE_CHECKING:  # annotations only: building the TypedDicts would slow chooctl's start
    from agent.protocol import pausing, types

__all__ = ["ARTIFACT_CHUNK", "RECONNECT_SECONDS", "Client", "default_socket", "entry_bytes"]

#: How long ``follow`` keeps trying to reach an agent that went away (a restart).
RECONNECT_SECONDS = 60.0
#: Pause between two reconnection attempts.
RECONNECT_PAUSE = 0.5
#: Bytes fetched per job.artifacts call by ``download``.
ARTIFACT_CHUNK = 1 << 20


class Client(Connection):
    """A connection to the agent with one typed method per RPC method."""

    def request(
        self,
        method: str,
        declared: type,
        /,
        on_notification: Callable[[str, Any], None] | None = None,
        **values: Any,
    ) -> Any:
        """Call ``method`` with ``values`` as its params (``declared``: their
        declaration, agent.protocol.params).

        Params left at their defaults are not sent: the agent applies the same ones.

        Raises:
            TypeError: ``values`` are not the params ``declared`` declares.
        """
        return self.stream(method, m.wire_params(declared, values), on_notification)

    # -- agent ---------------------------------------------------------------------

    def ping(self) -> str:
        return self.request(m.PING, p.NoParams)

    def info(self) -> types.Info:
        return self.request(m.INFO, p.NoParams)

    def top(self) -> list[types.TopEntry]:
        """The starting and running jobs with what each uses now."""
        return self.request(m.TOP, p.NoParams)

    def metrics(self) -> str:
        """The agent's metrics, in the Prometheus text format."""
        return self.request(m.METRICS, p.NoParams)

    # -- jobs ----------------------------------------------------------------------

    def submit(
        self,
        spec: dict[str, Any],
        *,
        trigger: str = m.DEFAULT_TRIGGER,
        hold: bool = False,
        not_before: float | None = None,
        delay: float | str | None = None,
    ) -> types.Job:
        """Queue ``spec`` as a new job (held, or not before a time); returns its record."""
        values = dict(spec=spec, trigger=trigger, hold=hold, not_before=not_before, delay=delay)
        return self.request(m.SUBMIT, p.SubmitParams, **values)

    def rerun(self, job_id: str, *, env: dict[str, str] | None = None) -> types.Job:
        """Submit a job's spec again as a new job (``rerun_of`` it)."""
        return self.request(m.RERUN, p.RerunParams, id=job_id, env=env)

    def rerun_failed(
        self,
        *,
        since: float | str | None = None,
        name: str | None = None,
        env: dict[str, str] | None = None,
    ) -> types.Reruns:
        """Rerun every failed job not rerun yet (of ``name``, submitted since ``since``)."""
        return self.request(m.RERUN_FAILED, p.RerunFailedParams, since=since, name=name, env=env)

    def release(self, job_id: str) -> types.Job:
        """Let a held job start."""
        return self.request(m.RELEASE, p.JobRef, id=job_id)

    def pause(self, name: str | None = None) -> pausing.QueueChange:
        """Admit no new job (named ``name``, or none at all); running jobs go on."""
        from agent.protocol import pausing  # here: its dataclasses cost every other call's start

        return self.request(m.PAUSE, pausing.QueueRef, name=name)

    def resume(self, name: str | None = None) -> pausing.QueueChange:
        """Undo ``pause`` (of the whole queue, or of ``name``)."""
        from agent.protocol import pausing

        return self.request(m.RESUME, pausing.QueueRef, name=name)

    def state(self) -> pausing.QueueState:
        """What is paused and limited now (``queue.state``; also in ``info``)."""
        return self.request(m.QUEUE_STATE, p.NoParams)

    def limit(
        self, name: str, limit: int | None = None, *, default: bool = False
    ) -> pausing.NameLimit:
        """Show, set, or (``default``) clear the runtime limit of jobs named ``name``."""
        from agent.protocol import pausing

        return self.request(m.LIMIT, pausing.LimitParams, name=name, limit=limit, default=default)

    def get(self, job_id: str) -> types.JobDetail:
        return self.request(m.GET, p.JobRef, id=job_id)

    def list(
        self,
        *,
        state: str | list[str] | None = None,
        name: str | None = None,
        label: str | list[str] | None = None,
        since: float | str | None = None,
        limit: int = m.DEFAULT_LIST_LIMIT,
        cursor: str | None = None,
        all: bool = True,
    ) -> types.JobPage:
        """One page of job summaries, newest first (``all=False``: unfinished ones only)."""
        values = dict(
            state=state, name=name, label=label, since=since, limit=limit, cursor=cursor, all=all
        )
        return self.request(m.LIST, p.ListParams, **values)

    def cancel(self, job_id: str) -> types.Job:
        return self.request(m.CANCEL, p.JobRef, id=job_id)

    def wait(self, job_id: str, *, timeout: float | str | None = None) -> types.Job:
        """The job once it ended, or as it is when ``timeout`` passed."""
        return self.request(m.WAIT, p.WaitParams, id=job_id, timeout=timeout)

    def logs(
        self,
        job_id: str,
        *,
        tail: int | None = None,
        since: float | str | None = None,
        after: str | None = None,
    ) -> types.Logs:
        """One page of the job's output so far (``next``: pass it as ``after``
        for the next page); ``output`` reads all the pages."""
        return self.request(m.LOGS, p.LogsParams, id=job_id, tail=tail, since=since, after=after)

    def output(
        self, job_id: str, *, tail: int | None = None, since: float | str | None = None
    ) -> Iterator[types.LogEntry]:
        """Every entry of the job's output so far, oldest first, a page at a time
        (so neither side holds a whole log); ``follow`` waits for the rest."""
        page = self.logs(job_id, tail=tail, since=since)
        yield from page["entries"]
        while page.get("next"):
            page = self.logs(job_id, since=since, after=page["next"])
            yield from page["entries"]

    def follow(
        self,
        job_id: str,
        on_entry: Callable[[types.LogEntry], None],
        *,
        tail: int | None = None,
        since: float | str | None = None,
        after: str | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> types.Followed:
        """Pass each entry of a job's output to ``on_entry`` until the job has ended.

        If the connection breaks (``systemctl restart choo-agent``), reconnect
        for up to RECONNECT_SECONDS and resume after the last entry passed, so
        no byte is lost or passed twice. ``on_lost`` is told of the first break.
        ``entry_bytes(entry)`` gives an entry's exact bytes.

        Raises:
            AgentUnavailable: the agent stayed away.
        """
        cursor = after

        def on_notification(method: str, entry: Any) -> None:
            nonlocal cursor
            if method == m.LOG_LINE and isinstance(entry, dict):
                on_entry(entry)
                cursor = entry.get("cursor") or cursor

        give_up = None
        while True:
            try:
                values = dict(id=job_id, tail=tail, since=since, follow=True, after=cursor)
                return self.request(m.LOGS, p.LogsParams, on_notification, **values)
            except AgentUnavailable:
                self.close()
                if give_up is None:
                    give_up = time.monotonic() + RECONNECT_SECONDS
                    if on_lost is not None:
                        on_lost()
                if time.monotonic() > give_up:
                    raise
                time.sleep(RECONNECT_PAUSE)  # a back-off between attempts, not a wait for an event

    def subscribe(
        self,
        on_event: Callable[[types.Event], None],
        *,
        job: str | None = None,
        name: str | None = None,
        timeout: float | str | None = None,
        count: int | None = None,
    ) -> types.Subscribed:
        """Pass each job event from now on to ``on_event``, until ``count`` or
        ``timeout`` (neither: until an exception from ``on_event`` ends it)."""

        def on_notification(method: str, event: Any) -> None:
            if method == m.EVENT and isinstance(event, dict):
                on_event(event)

        values = dict(job=job, name=name, timeout=timeout, count=count)
        return self.request(m.SUBSCRIBE, p.SubscribeParams, on_notification, **values)

    def remove(self, job_id: str) -> types.Job:
        return self.request(m.REMOVE, p.JobRef, id=job_id)

    def prune(
        self, *, older_than: float | str | None = None, state: str | list[str] | None = None
    ) -> types.Pruned:
        return self.request(m.PRUNE, p.PruneParams, older_than=older_than, state=state)

    def prune_images(self) -> types.ImagesPruned:
        return self.request(m.IMAGE_PRUNE, p.NoParams)

    def list_caches(self) -> list[types.Cache]:
        return self.request(m.CACHE_LIST, p.NoParams)

    def remove_caches(self, name: str, *, group: str | None = None) -> types.CachesRemoved:
        return self.request(m.CACHE_REMOVE, p.CacheRemoveParams, name=name, group=group)

    # -- artifacts -----------------------------------------------------------------

    def artifacts(
        self, job_id: str, *, offset: int | None = None, length: int | None = None
    ) -> types.Artifacts:
        """The job's artifacts record; with ``length``, a chunk of its archive."""
        return self.request(m.ARTIFACTS, p.ArtifactsParams, id=job_id, offset=offset, length=length)

    def download(self, record: types.Artifacts, sink: IO[bytes]) -> int:
        """Write the archive ``record`` (a ``packed`` artifacts record) describes to ``sink``.

        Returns:
            The bytes written, checked against the record's size and sha256.

        Raises:
            ChooError: the archive changed or was cut short meanwhile.
        """
        import hashlib  # here: loading OpenSSL costs every other call's start

        digest = hashlib.sha256()
        offset = 0
        while True:
            chunk = self.artifacts(record["id"], offset=offset, length=ARTIFACT_CHUNK)
            data = base64.b64decode(chunk["data"])
            sink.write(data)
            digest.update(data)
            offset += len(data)
            if chunk["eof"] or not data:
                break
        if digest.hexdigest() != record["sha256"] or offset != record["size"]:
            raise ChooError(f"the archive of job {record['id']} changed or was cut short")
        return offset

    # -- schedules -----------------------------------------------------------------

    def schedule_add(
        self,
        name: str,
        cron: str,
        spec: dict[str, Any],
        *,
        concurrency: str = DEFAULT_POLICY,
        catch_up: bool = True,
        history_limit: int = DEFAULT_HISTORY,
        timezone: str | None = None,
    ) -> types.ScheduleState:
        values = dict(
            name=name,
            cron=cron,
            spec=spec,
            concurrency=concurrency,
            catch_up=catch_up,
            history_limit=history_limit,
            timezone=timezone,
        )
        return self.request(m.SCHEDULE_ADD, p.ScheduleAddParams, **values)

    def schedule_list(self) -> list[types.ScheduleState]:
        return self.request(m.SCHEDULE_LIST, p.ScheduleListParams)

    def schedule_get(self, name: str) -> types.ScheduleState:
        return self.request(m.SCHEDULE_LIST, p.ScheduleListParams, name=name)

    def schedule_remove(self, name: str) -> types.Schedule:
        return self.request(m.SCHEDULE_REMOVE, p.ScheduleRef, name=name)

    def schedule_trigger(self, name: str, *, trigger: str = m.DEFAULT_TRIGGER) -> types.Triggered:
        """Run the schedule now, under its concurrency policy."""
        return self.request(m.SCHEDULE_TRIGGER, p.ScheduleTriggerParams, name=name, trigger=trigger)

    def schedule_suspend(self, name: str) -> pausing.ScheduleChange:
        """Skip the schedule's fires until ``schedule_resume``."""
        return self.request(m.SCHEDULE_SUSPEND, p.ScheduleRef, name=name)

    def schedule_resume(self, name: str) -> pausing.ScheduleChange:
        """Let a suspended schedule fire again (what it skipped is not caught up)."""
        return self.request(m.SCHEDULE_RESUME, p.ScheduleRef, name=name)

    # -- export --------------------------------------------------------------------

    def export(
        self,
        to: str,
        *,
        job_id: str | None = None,
        schedule: str | None = None,
        spec: dict[str, Any] | None = None,
        kind: str | None = None,
        lossy: bool = False,
    ) -> types.Exported:
        """The manifests of a job, a schedule or a spec (name exactly one) for
        Kubernetes or Nomad; what has no equivalent is refused unless ``lossy``."""
        values = dict(to=to, id=job_id, schedule=schedule, spec=spec, kind=kind, lossy=lossy)
        return self.request(m.EXPORT, p.ExportParams, **values)

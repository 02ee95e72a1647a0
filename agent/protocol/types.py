"""The JSON shapes of the protocol's results and notifications, as TypedDicts.

Documentation the type checker can read: the agent builds these as plain
dicts (agent/storage, agent/api) and the client receives them from JSON, so
nothing here is checked at run time. ``None`` members are JSON ``null``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Workspace(TypedDict):
    source: str
    snapshot: str | None
    size: int | None


class ArtifactsRecord(TypedDict):
    """What became of a job's /out: ``pending`` until it ends, then ``packed``,
    ``none``, ``too_large`` or ``error``."""

    state: str
    path: str | None
    size: int | None
    sha256: str | None
    message: str | None


class Usage(TypedDict):
    """What one attempt used, recorded with its end (None: unknown: not ended,
    too short to sample, usage_interval 0, or ended under an older agent)."""

    #: CPU time, user + system, in seconds.
    cpu_seconds: float | None
    #: Highest memory in use, in bytes.
    memory_peak: int | None
    #: Bytes read from and written to block devices.
    io_read: int | None
    io_write: int | None
    #: Most processes at once.
    pids_peak: int | None
    #: Seconds from the attempt's start (image pull included) to its end.
    wall_seconds: float | None
    #: Seconds the attempt waited for a slot once its job was due.
    queue_wait: float | None
    #: True: summed from the container's processes every usage_interval (a
    #: short peak between two looks, and the last interval, can be missed);
    #: False: exact, from the container's cgroup v2 counters.
    sampled: bool | None


class TopEntry(TypedDict):
    """A ``job.top`` entry: a starting or running job and what it uses now."""

    id: str
    name: str | None
    image: str
    state: str
    started_at: float | None
    #: CPU use over the last usage_interval, in % of one core (None: not yet measured).
    cpu_percent: float | None
    #: Memory in use now, and the most so far, in bytes.
    memory: int | None
    memory_peak: int | None
    cpu_seconds: float | None
    pids_peak: int | None
    sampled: bool | None


class Attempt(TypedDict):
    number: int
    trigger: str
    container_id: str | None
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    reason: str | None
    oom: bool | None
    log_shipped: int | None
    usage: Usage


class Event(TypedDict):
    """One job event; also the params of the ``event`` notification."""

    id: int
    job_id: str
    time: float
    kind: str
    state: str | None
    detail: dict[str, Any]
    #: The job's name: in ``event`` notifications only.
    name: NotRequired[str | None]


class Job(TypedDict):
    """A job record (times are seconds since the epoch)."""

    id: str
    name: str | None
    state: str
    reason: str | None
    exit_code: int | None
    priority: int
    trigger: str
    spec: dict[str, Any]
    attempt: int
    retries_left: int
    cancel_requested: bool
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    #: Not admitted before this time: a retry's backoff, or the submit's
    #: ``not_before``/``delay``.
    not_before: float | None
    #: Submitted with ``hold``, and not released yet.
    held: bool
    #: The job this one reruns (trigger ``rerun``), or None.
    rerun_of: str | None
    stop_reason: str | None
    stop_sent_at: float | None
    submitter_uid: int | None
    submitter_pid: int | None
    log_tail: str | None
    container: str
    schedule: str | None
    scheduled_for: float | None
    catch_up: bool
    workspace: Workspace | None
    artifacts: ArtifactsRecord


class Notification(TypedDict):
    """One delivery a job's end made (a rule of the config or of its ``notify``)."""

    target: str
    event: str
    key: str
    #: pending, delivered or failed (no tries left).
    status: str
    tries: int
    created_at: float
    next_at: float | None
    delivered_at: float | None
    last_error: str | None


class Dependency(TypedDict):
    """A job another waits for (``after``), as ``job.get`` shows it."""

    id: str
    condition: str
    #: Its state now; None when it was removed.
    state: str | None
    #: ``met``, ``wait`` (it has not ended) or ``never`` (it ended otherwise).
    verdict: str


class JobDetail(Job):
    """``job.get``: the record with its attempts, events, notifications and dependencies."""

    attempts: list[Attempt]
    events: list[Event]
    notifications: list[Notification]
    dependencies: list[Dependency]


class JobSummary(TypedDict):
    """A ``job.list`` entry: what a listing shows of a job, read without its spec.

    The spec's ``image`` and ``command`` are lifted out of it; the rest of the
    spec, the environment, the log tail, workspace and artifacts are only in
    the full record (``job.get``).
    """

    id: str
    name: str | None
    image: str
    command: list[str]
    #: The IDs of the jobs it waits for (``after``).
    after: list[str]
    state: str
    reason: str | None
    exit_code: int | None
    priority: int
    trigger: str
    attempt: int
    cancel_requested: bool
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    labels: dict[str, str]
    submitter_uid: int | None
    submitter_pid: int | None
    schedule: str | None
    scheduled_for: float | None
    catch_up: bool
    container: str
    log_lost: int | None
    log_dropped: int | None
    #: The latest attempt's ``cpu_seconds`` and ``memory_peak`` (see ``Usage``).
    usage: dict[str, float | int | None]
    not_before: float | None
    held: bool


class Reruns(TypedDict):
    """``job.rerun_failed``: the new jobs, each with ``rerun_of`` set."""

    jobs: list[Job]


class JobPage(TypedDict):
    """``job.list``: newest first; ``cursor`` is set when another page may follow."""

    jobs: list[JobSummary]
    cursor: str | None


class LogEntry(TypedDict, total=False):
    """Bytes one stream of a job wrote (agent.protocol.output says how they travel).

    ``text`` holds them when they are valid UTF-8, else ``data`` holds their
    base64; either carries the newlines the job wrote. ``time`` is when the
    first of them was read (seconds), ``cursor`` where the output after them
    begins. As the ``job.log`` notification it also carries the job's ``id``.
    """

    id: str
    stream: str
    time: float
    cursor: str
    text: str
    data: str


class Logs(TypedDict):
    """``job.logs`` without ``follow``: a page of entries, oldest first.

    ``next`` is set when more output remains: pass it as ``after`` for the
    next page.
    """

    entries: list[LogEntry]
    next: str | None


class Followed(TypedDict):
    """``job.logs`` with ``follow``: how many entries were sent, and the ended job."""

    entries: int
    job: Job


class Subscribed(TypedDict):
    """``events.subscribe``: events sent, and whether the subscriber fell behind."""

    events: int
    missed: bool


class Pruned(TypedDict):
    removed: list[str]
    count: int


class PrunedImage(TypedDict):
    id: str
    tags: list[str]
    size: int
    #: "age" (unused for image_gc_age) or "space" (free space under image_gc_min_free).
    why: str


class ImagesPruned(TypedDict):
    """``image.prune``: the images removed, the bytes they held, and those chosen
    but kept because a container still uses them."""

    removed: list[PrunedImage]
    freed: int
    skipped: list[dict[str, Any]]


class Cache(TypedDict):
    """A cache between runs (``cache.list``)."""

    name: str
    #: The job name it belongs to, "*" (shared) or "-" (jobs with no name).
    group: str
    volume: str
    #: Bytes on disk, as the agent's user can read them.
    size: int
    last_used: float


class CachesRemoved(TypedDict):
    """``cache.remove``: the caches removed, and those a running job uses (kept)."""

    removed: list[Cache]
    in_use: list[Cache]


class Artifacts(ArtifactsRecord, total=False):
    """``job.artifacts``: the record; with ``length``, also a base64 chunk."""

    id: str
    job_state: str
    offset: int
    data: str
    eof: bool


class Schedule(TypedDict):
    name: str
    cron: str
    timezone: str | None
    spec: dict[str, Any]
    concurrency: str
    catch_up: bool
    history_limit: int
    created_at: float
    created_by: int | None
    last_fire: float
    last_job: str | None
    last_skip: str | None
    #: Suspended (``schedule.suspend``) since this time, by this uid; None: not suspended.
    suspended_at: float | None
    suspended_by: int | None


class ScheduleState(Schedule):
    """A schedule as ``schedule.add``/``schedule.list`` describe it."""

    next_fire: float | None
    active: list[str]


class Triggered(TypedDict):
    """``schedule.trigger``: the new run (or None and why not), and runs cancelled."""

    job: Job | None
    skipped: str | None
    cancelled: list[str]


class Info(TypedDict, total=False):
    """``agent.info`` (``podman`` and ``degraded`` come from the daemon's status)."""

    version: str
    agent_id: str
    pid: int
    uptime: float
    socket: str
    state_dir: str
    max_concurrent: int
    queue_limit: int
    jobs: dict[str, int]
    limits: dict[str, Any]
    containers: dict[str, Any]
    secrets: list[str]
    podman: dict[str, Any]
    degraded: str | None
    #: What is paused and limited at run time (agent.protocol.pausing.QueueState).
    queue: dict[str, Any]


class Exported(TypedDict):
    """``job.export``: the manifests of a job, schedule or spec for another engine."""

    #: "kubernetes" or "nomad".
    to: str
    #: What was made: "Job", "CronJob" or "Pod"; "batch" for Nomad.
    kind: str
    #: The name the objects were given (DNS-1123).
    name: str
    #: The objects, in the order to apply them (Nomad: one ``{"Job": ...}``).
    documents: list[dict[str, Any]]
    #: What the target could not express (exported with ``lossy``), one line each.
    warnings: list[str]

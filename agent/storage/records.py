"""Rows of the jobs database as the plain dicts the rest of the agent passes around.

One function per table row (a model instance, or a ``database.Row`` read
without one: SQLite's 0/1 become booleans here); JSON columns are decoded
here and derived fields (the container name, the workspace and artifacts
summaries) are filled in, so no caller ever sees a peewee object. Reading
only: nothing here queries or writes the database.
"""

from __future__ import annotations

import json
from typing import Any

from agent.protocol.spec import container_name
from agent.protocol.states import TERMINAL, State


def job_dict(job) -> dict[str, Any]:
    """A ``job`` row as its record (the ``job.get`` result)."""
    spec = json.loads(job.spec)
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "reason": job.reason,
        "exit_code": job.exit_code,
        "priority": job.priority,
        "trigger": job.trigger,
        "spec": spec,
        "attempt": job.attempt,
        "retries_left": job.retries_left,
        "cancel_requested": bool(job.cancel_requested),
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "not_before": job.not_before,
        "held": bool(job.held),
        "rerun_of": job.rerun_of,
        "stop_reason": job.stop_reason,
        "stop_sent_at": job.stop_sent_at,
        "submitter_uid": job.submitter_uid,
        "submitter_pid": job.submitter_pid,
        "log_tail": job.log_tail,
        "log_lost": job.log_lost,
        "log_dropped": job.log_dropped,
        "container": container_name(job.id),
        "schedule": job.schedule,
        "scheduled_for": job.scheduled_for,
        "catch_up": bool(job.catch_up),
        "workspace": _workspace_dict(job, spec),
        "artifacts": _artifacts_dict(job),
    }


#: The job columns of a summary, as they are.
SUMMARY_COLUMNS = (
    "id",
    "name",
    "state",
    "reason",
    "exit_code",
    "priority",
    "trigger",
    "attempt",
    "cancel_requested",
    "submitted_at",
    "started_at",
    "ended_at",
    "submitter_uid",
    "submitter_pid",
    "schedule",
    "scheduled_for",
    "catch_up",
    "log_lost",
    "log_dropped",
    "not_before",
    "held",
)
#: The job columns a summary row holds, in order: ``SUMMARY_COLUMNS``, then
#: schema 9's copies of the spec and the labels (JSON text, but ``image``).
SUMMARY_JOB_COLUMNS = (*SUMMARY_COLUMNS, "image", "command", "after_ids", "labels")
#: The latest attempt's columns that follow them in the row.
SUMMARY_USAGE_COLUMNS = ("cpu_seconds", "memory_peak")
_IMAGE, _COMMAND, _AFTER, _LABELS, _CPU, _MEMORY = range(
    len(SUMMARY_COLUMNS), len(SUMMARY_JOB_COLUMNS) + len(SUMMARY_USAGE_COLUMNS)
)


def summaries(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Lean ``job`` rows as their summaries (``job.list`` entries).

    A summary is the row's ``SUMMARY_COLUMNS`` (SQLite's 0/1 as booleans),
    ``image``, ``command``, ``after`` (the IDs of the jobs it waits for:
    ``chooctl ps`` names them), ``labels``, ``container`` and ``usage``. The
    page's JSON columns are decoded by one ``json.loads``: on texts this small
    its fixed cost per call is most of the work (half of a page's, one per column).

    Args:
        rows: ``SUMMARY_JOB_COLUMNS`` then ``SUMMARY_USAGE_COLUMNS``, each a tuple.
    """
    texts = []
    for row in rows:
        texts += (row[_COMMAND] or "[]", row[_AFTER] or "[]", row[_LABELS])
    decoded = json.loads("[" + ",".join(texts) + "]") if rows else []
    if len(decoded) != len(texts):  # a column holding more than one JSON value
        raise ValueError("a job's command, after_ids or labels column is not one JSON value")
    out = []
    for i, row in enumerate(rows):
        summary = dict(zip(SUMMARY_COLUMNS, row, strict=False))
        summary["cancel_requested"] = bool(summary["cancel_requested"])
        summary["catch_up"] = bool(summary["catch_up"])
        summary["held"] = bool(summary["held"])
        summary["image"] = row[_IMAGE]
        summary["command"], summary["after"], summary["labels"] = decoded[3 * i : 3 * i + 3]
        summary["container"] = container_name(summary["id"])
        summary["usage"] = {"cpu_seconds": row[_CPU], "memory_peak": row[_MEMORY]}
        out.append(summary)
    return out


def attempt_dict(attempt) -> dict[str, Any]:
    """An ``attempt`` row: one container run of a job."""
    return {
        "number": attempt.number,
        "trigger": attempt.trigger,
        "container_id": attempt.container_id,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "exit_code": attempt.exit_code,
        "reason": attempt.reason,
        "oom": bool(attempt.oom),
        "log_shipped": attempt.log_shipped,
        "retry": attempt.retry,
        "usage": usage_dict(attempt),
    }


def usage_dict(attempt) -> dict[str, Any]:
    """What an attempt used (schema 5): the figures are None until it ends, and
    stay None for one too short to sample or recorded by an older agent."""
    wall = None
    if attempt.started_at is not None and attempt.ended_at is not None:
        wall = round(attempt.ended_at - attempt.started_at, 3)
    return {
        "cpu_seconds": attempt.cpu_seconds,
        "memory_peak": attempt.memory_peak,
        "io_read": attempt.io_read,
        "io_write": attempt.io_write,
        "pids_peak": attempt.pids_peak,
        "wall_seconds": wall,
        "queue_wait": attempt.queue_wait,
        "sampled": None if attempt.usage_sampled is None else bool(attempt.usage_sampled),
    }


def event_dict(event) -> dict[str, Any]:
    """An ``event`` row (the feed adds the job's name to those it publishes)."""
    return {
        "id": event.id,
        "job_id": event.job_id,
        "time": event.time,
        "kind": event.kind,
        "state": event.state,
        "detail": json.loads(event.detail or "{}"),
    }


def schedule_dict(row) -> dict[str, Any]:
    """A ``schedule`` row, its job template decoded."""
    return {
        "name": row.name,
        "cron": row.cron,
        "timezone": row.timezone,
        "spec": json.loads(row.spec),
        "concurrency": row.concurrency,
        "catch_up": row.catch_up,
        "history_limit": row.history_limit,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "last_fire": row.last_fire,
        "last_job": row.last_job,
        "last_skip": row.last_skip,
        "suspended_at": row.suspended_at,
        "suspended_by": row.suspended_by,
    }


def _workspace_dict(job, spec: dict[str, Any]) -> dict[str, Any] | None:
    if not spec.get("workspace"):
        return None
    return {"source": spec["workspace"], "snapshot": job.workspace, "size": job.workspace_size}


def _artifacts_dict(job) -> dict[str, Any]:
    """What became of a job's /out: ``pending`` until the job ends; then ``packed``
    (with path, size, sha256), ``none`` (nothing to pack), ``too_large`` or
    ``error`` (with a message)."""
    state = job.artifacts_state
    if state is None:
        state = "none" if State(job.state) in TERMINAL else "pending"
    return {
        "state": state,
        "path": job.artifacts_path,
        "size": job.artifacts_size,
        "sha256": job.artifacts_sha256,
        "message": job.artifacts_message,
    }

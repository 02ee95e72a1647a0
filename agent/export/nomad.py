"""A job as Nomad runs it: a batch job for the ``podman`` task driver, in the API's JSON form.

Pure; the mapping is chooctl(1)'s table. The result is the body of Nomad's
``POST /v1/jobs`` (``{"Job": {...}}``), durations in nanoseconds as the API
takes them. Every attempt is a new allocation: the task is never restarted in
place (``RestartPolicy`` attempts 0) and a failed allocation is rescheduled
``retries`` times with choo's exponential back-off (``ReschedulePolicy``). A
schedule is a periodic job; Nomad has no ``replace`` policy and never runs a
launch it missed.
"""

from __future__ import annotations

import math
from typing import Any

from agent.export.common import (
    OUT_DIR,
    PREFIX,
    Exported,
    Hardening,
    Losses,
    Source,
    shared_losses,
)
from agent.export.names import MAX_LABEL
from agent.protocol.exports import NOMAD
from agent.protocol.spec import MAX_PRIORITY, MAX_SECONDS

NANOS = 1_000_000_000
MIB = 1 << 20
#: The least memory Nomad lets a task reserve.
MIN_MEMORY_MB = 10
#: Nomad's job priorities, and the one a job without a priority gets.
PRIORITY_LOW, PRIORITY_DEFAULT, PRIORITY_HIGH = 1, 50, 100
#: The task's (and its group's) name in the job.
TASK = "job"
#: Where secrets are rendered from: the Nomad variables every task of the job may read.
VARIABLES = "nomad/jobs/{job}"
#: Nomad's default restart interval and delay for a batch group (not used: no restarts).
RESTART_INTERVAL = 24 * 3600
RESTART_DELAY = 15


def manifests(source: Source, hardening: Hardening, losses: Losses) -> Exported:
    """The Nomad job of ``source``.

    Raises:
        InvalidParams: (without ``losses.lossy``) what Nomad cannot express.
    """
    spec = source.spec
    shared_losses(source, losses)
    name = source.name(MAX_LABEL)
    meta = {f"{PREFIX}.{key}": value for key, value in source.origin().items()}
    meta.update(spec["labels"])
    task: dict[str, Any] = {
        "Name": TASK,
        "Driver": "podman",
        "Config": _driver_config(spec, hardening, losses),
        "KillTimeout": _nanos(spec["stop_timeout"]),
        "Resources": _resources(spec, hardening, losses),
    }
    if spec["env"]:
        task["Env"] = dict(spec["env"])
    if spec["user"]:
        task["User"] = spec["user"]
    if spec["secrets"]:
        task["Templates"] = [_secrets_template(name, spec["secrets"])]
    group: dict[str, Any] = {
        "Name": TASK,
        "Count": 1,
        "RestartPolicy": {
            "Attempts": 0,
            "Mode": "fail",
            "Interval": RESTART_INTERVAL * NANOS,
            "Delay": RESTART_DELAY * NANOS,
        },
        "ReschedulePolicy": {
            "Attempts": spec["retries"],
            # Attempts are counted over the longest a job can live: never reset.
            "Interval": MAX_SECONDS * NANOS,
            "Delay": _nanos(hardening.retry_backoff_base),
            "DelayFunction": "exponential",
            "MaxDelay": _nanos(hardening.retry_backoff_cap),
            "Unlimited": False,
        },
        "Tasks": [task],
    }
    if spec["timeout"]:
        group["MaxRunDuration"] = _nanos(spec["timeout"])
    job: dict[str, Any] = {
        "ID": name,
        "Name": name,
        "Type": "batch",
        "Datacenters": ["*"],
        "Priority": priority(spec["priority"]),
        "TaskGroups": [group],
    }
    if source.schedule is not None:
        job["Periodic"] = _periodic(source.schedule, losses)
    if hardening.retention:
        losses.note(
            "retention", "Nomad removes finished jobs as its servers' job_gc_threshold says"
        )
    warnings = losses.warnings()
    if warnings:
        meta[f"{PREFIX}.export-warnings"] = "\n".join(warnings)
    if meta:
        job["Meta"] = meta
    return {
        "to": NOMAD,
        "kind": "batch",
        "name": name,
        "documents": [{"Job": job}],
        "warnings": warnings,
    }


def priority(value: int) -> int:
    """choo's -1000..1000 onto Nomad's 1..100, order kept, 0 onto Nomad's default 50."""
    span = PRIORITY_DEFAULT - PRIORITY_LOW - 1
    return PRIORITY_DEFAULT + round(value * span / MAX_PRIORITY)


def _nanos(value: float) -> int:
    return int(round(value * NANOS))


def _driver_config(spec: dict[str, Any], hardening: Hardening, losses: Losses) -> dict[str, Any]:
    """The podman driver's ``config``: the container as the agent creates it."""
    config: dict[str, Any] = {"image": spec["image"]}
    if spec["command"]:
        config["args"] = list(spec["command"])
    if spec["workdir"]:
        config["working_dir"] = spec["workdir"]
    if spec["network"] == "none":
        config["network_mode"] = "none"
    if spec["labels"]:
        config["labels"] = dict(spec["labels"])
    if spec["pull"] == "always":
        config["force_pull"] = True
    elif spec["pull"] == "never":
        losses.lose("pull", "the podman driver pulls a missing image; it has no 'never'")
    config["cap_drop"] = ["ALL"]
    if hardening.caps:
        config["cap_add"] = list(hardening.caps)
    if hardening.read_only:
        config["readonly_rootfs"] = True
    if hardening.init:
        config["init"] = True
    if hardening.no_new_privileges:
        losses.note("no_new_privileges", "the podman driver has no option for it")
    # The job's empty, writable /out; nothing packs it (a job that left files there is refused).
    config["tmpfs"] = [OUT_DIR]
    return config


def _resources(spec: dict[str, Any], hardening: Hardening, losses: Losses) -> dict[str, int]:
    """MemoryMB (rounded up) and whole Cores; Nomad's CPU MHz are shares, not a limit."""
    resources = spec["resources"]
    out = {}
    memory = resources.get("memory") or hardening.memory
    if memory:
        out["MemoryMB"] = max(MIN_MEMORY_MB, math.ceil(memory / MIB))
        if memory < MIN_MEMORY_MB * MIB:
            why = f"{memory} bytes: Nomad's least is {MIN_MEMORY_MB} MB; exported as that"
            if resources.get("memory"):
                losses.lose("resources.memory", why)
            else:
                losses.note("default_memory", why)
    else:
        losses.note("default_memory", "no limit is set; Nomad reserves its default 300 MB")
    cpus = resources.get("cpus")
    if cpus:
        if cpus != int(cpus):
            losses.lose(
                "resources.cpus",
                f"{cpus:g}: Nomad reserves whole cores; exported as {math.ceil(cpus)}",
            )
        out["Cores"] = math.ceil(cpus)
    if resources.get("pids"):
        losses.lose("resources.pids", "the podman driver has no process limit")
    elif hardening.pids:
        losses.note("default_pids", "the podman driver has no process limit")
    return out


def _secrets_template(name: str, secrets: list[str]) -> dict[str, Any]:
    """Credentials as the task's variables, read from Nomad variables by name."""
    path = VARIABLES.format(job=name)
    lines = "".join(f"{var}={{{{ .{var} | toJSON }}}}\n" for var in secrets)
    return {
        "DestPath": "secrets/choo.env",
        "EmbeddedTmpl": f'{{{{ with nomadVar "{path}" }}}}\n{lines}{{{{ end }}}}\n',
        "Envvars": True,
        "ChangeMode": "noop",
    }


def _periodic(schedule: dict[str, Any], losses: Losses) -> dict[str, Any]:
    """A periodic job's launch rules from the schedule's settings."""
    if schedule["concurrency"] == "replace":
        losses.lose(
            "concurrency",
            "Nomad has no 'replace' (stop the unfinished runs, start the new one); "
            "exported as 'forbid'",
        )
    if schedule["catch_up"]:
        losses.lose(
            "catch_up",
            "Nomad never runs a launch it missed; add the schedule with --no-catch-up",
        )
    periodic: dict[str, Any] = {
        "Enabled": True,
        "SpecType": "cron",
        "Spec": schedule["cron"],
        "ProhibitOverlap": schedule["concurrency"] != "allow",
    }
    if schedule.get("timezone"):
        periodic["TimeZone"] = schedule["timezone"]
    losses.note("history_limit", "Nomad keeps finished launches until its garbage collection")
    return periodic

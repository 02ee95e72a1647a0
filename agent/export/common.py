"""What both targets share: the agent settings they map, the source, and the losses.

Pure. ``Losses`` is the one place that decides between refusing and warning;
``shared_losses`` names what neither Kubernetes nor Nomad can do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.config import Config
from agent.export.names import dns_label
from agent.protocol import types
from agent.protocol.errors import InvalidParams
from agent.protocol.spec import parse_size
from agent.protocol.states import Reason

Exported = types.Exported
#: The prefix of the annotation / Meta keys an export writes (as the agent's container labels).
PREFIX = "io.choo"
#: Where every choo job finds an empty, writable directory of its own.
OUT_DIR = "/out"


@dataclass(frozen=True)
class Hardening:
    """The agent's container settings (agent/config/) that every job runs under."""

    caps: tuple[str, ...]
    no_new_privileges: bool
    read_only: bool
    init: bool
    #: Bytes of memory a job that sets none gets (None: no limit).
    memory: int | None
    #: Processes a job that sets none may have (None: no limit).
    pids: int | None
    #: Seconds a finished job is kept (0: for ever).
    retention: float
    retry_backoff_base: float
    retry_backoff_cap: float

    @classmethod
    def of(cls, config: Config) -> Hardening:
        """The settings of a running agent."""
        memory = config.default_memory
        return cls(
            caps=tuple(config.container_caps),
            no_new_privileges=config.no_new_privileges,
            read_only=config.read_only_rootfs,
            init=config.container_init,
            memory=parse_size(memory, "default_memory") if memory not in ("", "0") else None,
            pids=config.default_pids or None,
            retention=config.retention,
            retry_backoff_base=config.retry_backoff_base,
            retry_backoff_cap=config.retry_backoff_cap,
        )


@dataclass(frozen=True)
class Source:
    """What is exported: a normalised spec, and the job or schedule it is of."""

    spec: dict[str, Any]
    #: The job's ID, when a job is exported.
    job_id: str | None = None
    #: The schedule's record (name, cron, timezone, concurrency, catch_up,
    #: history_limit), when a schedule is exported.
    schedule: dict[str, Any] | None = None
    #: The exported job left files in /out, which choo packed.
    archived: bool = False

    def name(self, limit: int) -> str:
        """The object's DNS-1123 name: the schedule's, or the job's name (else
        its image's), with the job's ID at the end so two jobs of one name stay apart."""
        if self.schedule is not None:
            return dns_label(self.schedule["name"], limit=limit)
        base = self.spec.get("name") or self.spec["image"].split("@")[0].rsplit("/", 1)[-1]
        base = base.split(":")[0]
        unique = self.job_id[-8:].lower() if self.job_id else None
        return dns_label(base, limit=limit, unique=unique)

    def origin(self) -> dict[str, str]:
        """Where the export came from, as annotation / Meta entries (key suffix -> value)."""
        out = {}
        if self.spec.get("name"):
            out["name"] = self.spec["name"]
        if self.job_id:
            out["job"] = self.job_id
        if self.schedule is not None:
            out["schedule"] = self.schedule["name"]
        return out


class Losses:
    """What the target cannot express: refused together, or (lossy) kept as warnings."""

    def __init__(self, target: str, lossy: bool):
        self.target = target
        self.lossy = lossy
        self.lost: list[str] = []
        self.notes: list[str] = []

    def lose(self, field: str, why: str) -> None:
        """A spec field the target cannot honour: refused unless lossy."""
        self.lost.append(f"{field}: {why}")

    def note(self, setting: str, why: str) -> None:
        """An agent setting (not the spec's) the target cannot honour: always a
        warning, never a refusal, as no spec could avoid it."""
        self.notes.append(f"{setting}: {why}")

    def warnings(self) -> list[str]:
        """Every warning, after refusing what may not be lost.

        Raises:
            InvalidParams: something was lost and ``lossy`` is false.
        """
        if self.lost and not self.lossy:
            raise InvalidParams(
                f"cannot export to {self.target} faithfully: {'; '.join(self.lost)}. "
                "Change the spec, or export anyway with --lossy (lossy: true), "
                "which warns of each loss."
            )
        return self.lost + self.notes


def seconds(value: float) -> int:
    """Whole seconds, rounded up (a limit is never made shorter)."""
    return max(1, math.ceil(value))


#: Spec fields neither target can carry, and why: each, when set, is a loss.
_FIELDS_WITHOUT_COUNTERPART = (
    (
        "workspace",
        "a snapshot of a directory of this host cannot travel with the job; "
        "build it into the image or fetch it in the command",
    ),
    (
        "idle_timeout",
        "neither target stops a job for printing nothing; use a liveness probe or a timeout",
    ),
    (
        "after",
        "a job's wait for other jobs of this agent has no counterpart there; "
        "chain the work in one job, or submit each when the one before has ended",
    ),
    (
        "max_log_bytes",
        "the cluster keeps container logs as its nodes are set up; it cannot cut "
        "one job's output at a size",
    ),
    (
        "caches",
        "the caches are volumes of this host, kept between its runs; the cluster "
        "starts every run without them",
    ),
    (
        "notify",
        "the agent's notify targets are this host's; the cluster sends no "
        "notification when the job ends",
    ),
)


def shared_losses(source: Source, losses: Losses, *, retry_rules: bool = False) -> None:
    """What neither target has: snapshots, /out archives, this host's images,
    output caps; and ``retry_on``, unless the target maps it (``retry_rules``:
    it then also answers for how a timeout is retried)."""
    spec = source.spec
    for field, why in _FIELDS_WITHOUT_COUNTERPART:
        if spec.get(field):
            losses.lose(field, why)
    rule = spec.get("retry_on")
    if rule is not None and not retry_rules:
        losses.lose(
            "retry_on",
            "which failures choo retries is its own rule; the target retries every "
            "failure up to the retries it is given",
        )
    if source.archived:
        losses.lose(
            OUT_DIR,
            "the job left files in /out, which choo packs into an archive when it ends; "
            "nothing collects them there (the job still gets an empty, writable /out)",
        )
    if spec["image"].startswith("localhost/"):
        losses.lose(
            "image",
            f"{spec['image']} exists only in this host's Podman store; push it to a "
            "registry and export the spec with that reference",
        )
    # With a retry_on the target maps, the mapping answers for timeouts too.
    mapped = retry_rules and rule is not None
    retries_timeouts = rule is not None and Reason.TIMEOUT.value in rule["reasons"]
    if spec.get("timeout") and spec.get("retries") and not (retries_timeouts or mapped):
        losses.lose(
            "timeout",
            "with retries, an attempt that ran out of time is tried again there; "
            "choo retries a timeout only when retry_on's reasons name it",
        )

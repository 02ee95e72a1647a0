"""Cron schedules: when a schedule fires and what its policies decide (pure).

No clock of its own: every function takes the time it reasons about, so the
rules are tested with a fake clock and the scheduler
(agent/runtime/scheduler.py) only applies what they decide. The one thing read
from the host is the time zone database (the standard library's ``zoneinfo``:
the system's, or the ``tzdata`` package), and for the local zone ``$TZ`` or
``/etc/localtime``. Cron arithmetic is croniter's; this module adds the choo
rules on top:

* **Fires.** A schedule fires at each time its 5-field cron expression (or
  ``@hourly``-style alias) matches, in its time zone (the agent's local one by
  default). ``last_fire`` is the nominal time of the last fire handled; a new
  schedule starts from its creation time, so it never fires for the past.
* **Catch-up** (systemd's ``Persistent=``). A fire whose time came while
  the agent was down (before the scheduler started), or that is handled more
  than ``ON_TIME_GRACE`` seconds late (the host slept), was missed. Missed
  fires are collapsed: at most one run is made, for the latest missed time,
  marked ``catch_up``, and only if the schedule's ``catch_up`` is true;
  otherwise they are skipped.
* **Concurrency** (Kubernetes CronJob's ``concurrencyPolicy``). ``allow``:
  runs may overlap. ``forbid``: a fire while a run of the schedule has not
  ended is skipped. ``replace``: the unfinished runs are cancelled and the new
  one starts.
* **History.** Only the newest ``history_limit`` finished runs of a schedule
  are kept; older ones are removed (records and files).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.protocol.errors import InvalidParams
from agent.protocol.schedules import MAX_HISTORY, POLICIES
from agent.protocol.states import TERMINAL

#: A fire handled this late or less is on time; later, it was missed.
ON_TIME_GRACE = 30.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
#: The host's zone when ``$TZ`` is not set (a copy of, or link into, the zone database).
LOCALTIME = "/etc/localtime"
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_cron(expr: Any) -> str:
    """Validate a cron expression: five fields, or an alias such as ``@daily``.

    Raises:
        InvalidParams: naming the problem.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidParams(f"cron: expected a cron expression such as '*/5 * * * *', got {expr!r}")
    expr = " ".join(expr.split())
    if expr.startswith("@"):
        if expr not in ALIASES:
            raise InvalidParams(f"cron: unknown alias {expr!r}; use one of {', '.join(ALIASES)}")
    elif len(expr.split()) != 5 or not _croniter().is_valid(expr):
        raise InvalidParams(
            f"cron: {expr!r} is not a valid expression of five fields "
            "(minute hour day-of-month month day-of-week)"
        )
    return expr


def zone(name: str | None) -> tzinfo:
    """The time zone a schedule's expression is read in (local when ``name`` is None).

    Raises:
        InvalidParams: an unknown zone name.
    """
    if name is None:
        return local_zone()
    found = _named_zone(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidParams(f"timezone: unknown time zone {name!r} (e.g. 'UTC', 'Europe/Paris')")
    return found


def local_zone() -> tzinfo:
    """The host's time zone, with its daylight saving rules, as the C library reads it.

    ``$TZ`` when set (a zone name, ``:`` and a name or a file path, or a
    POSIX rule such as ``EST+5EDT,M3.2.0,M11.1.0``; one not found is UTC, as
    for libc), else ``/etc/localtime``, else UTC. Not
    ``datetime.now().astimezone().tzinfo``: that is today's fixed offset, and
    a schedule reading it would fire an hour off after the clocks change.
    """
    name = os.environ.get("TZ")
    if name is None:
        name = LOCALTIME
    name = name.removeprefix(":")
    if name.startswith("/"):
        try:
            with open(name, "rb") as file:
                return ZoneInfo.from_file(file, key=name)
        except (OSError, ValueError):
            return UTC
    return _named_zone(name) or _posix_zone(name) or UTC


#: A POSIX ``TZ`` rule: a zone's abbreviation and its offset from UTC (hours
#: west), then optionally its daylight saving abbreviation and rules.
POSIX_TZ = re.compile(r"[A-Za-z]{3,}[+-]?\d{1,2}(?::\d\d){0,2}(?:[A-Za-z]{3,}.*)?")


def _posix_zone(rule: str) -> tzinfo | None:
    """The zone a POSIX ``TZ`` rule describes (dateutil's parser, with POSIX's
    sign: ``EST+5`` is five hours behind UTC), or None for anything else."""
    if not POSIX_TZ.fullmatch(rule):
        return None
    try:
        from dateutil.tz import tzstr  # noqa: PLC0415 (as in _croniter)

        zone = tzstr(rule, posix_offset=True)
        datetime(2000, 1, 1, tzinfo=zone).utcoffset()  # an offset out of range fails here
    except ValueError:
        return None
    return zone


def _named_zone(name: str) -> tzinfo | None:
    """The zone of an IANA name (``Europe/Paris``), or None for one not found."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    # ValueError: a key outside the database (absolute, ".."); OSError: a directory.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _croniter() -> type:
    """croniter's class, imported on first use: an agent with no schedule never
    needs it, and its import is a good part of the agent's start."""
    from croniter import croniter  # noqa: PLC0415

    return croniter


def next_fire(expr: str, after: float, timezone: str | None = None) -> float:
    """The first time after ``after`` (seconds since the epoch) the expression matches."""
    start = datetime.fromtimestamp(after, zone(timezone))
    return float(_croniter()(expr, start).get_next(float))


def prev_fire(expr: str, before: float, timezone: str | None = None) -> float:
    """The last time strictly before ``before`` the expression matched."""
    start = datetime.fromtimestamp(before, zone(timezone))
    return float(_croniter()(expr, start).get_prev(float))


@dataclass(frozen=True)
class Plan:
    """What to do for one schedule at one moment.

    ``fire_at`` is the nominal time of the run to make now (None: nothing is
    due); ``catch_up`` marks a run for fires missed while the agent was down;
    ``missed`` tells that due fires were skipped (catch-up disabled);
    ``last_fire`` is what the schedule's ``last_fire`` becomes; ``next_at``
    is when to look again.
    """

    fire_at: float | None
    catch_up: bool
    missed: bool
    last_fire: float
    next_at: float


def plan(
    schedule: dict[str, Any],
    now: float,
    *,
    up_since: float | None = None,
    grace: float = ON_TIME_GRACE,
) -> Plan:
    """Decide whether ``schedule`` fires at ``now``.

    Args:
        schedule: a schedule record (``cron``, ``timezone``, ``catch_up``, ``last_fire``).
        now: the current time (the scheduler's clock).
        up_since: when the scheduler started; fires before it were missed.
        grace: how late a fire may be handled and still count as on time.
    """
    expr, tzname, last = schedule["cron"], schedule.get("timezone"), schedule["last_fire"]
    first_due = next_fire(expr, last, tzname)
    if first_due > now:
        return Plan(None, False, False, last, first_due)
    # Every fire from first_due to now is due; only the latest one can run.
    latest = max(first_due, prev_fire(expr, now, tzname))
    following = next_fire(expr, max(latest, now), tzname)
    missed = now - latest > grace or (up_since is not None and latest < up_since)
    if not missed:
        return Plan(latest, False, False, latest, following)
    if schedule.get("catch_up", True):
        return Plan(latest, True, False, latest, following)
    return Plan(None, False, True, latest, following)


@dataclass(frozen=True)
class Decision:
    """What a fire does under the schedule's concurrency policy."""

    run: bool
    cancel: tuple[str, ...] = ()
    skip_reason: str | None = None


def decide(policy: str, runs: list[dict[str, Any]]) -> Decision:
    """Apply a concurrency policy to the schedule's runs (job records, any state)."""
    active = [job["id"] for job in runs if job["state"] not in TERMINAL]
    if policy == "allow" or not active:
        return Decision(True)
    if policy == "forbid":
        return Decision(False, skip_reason=f"concurrency forbid: run {active[0]} has not ended")
    if policy == "replace":
        return Decision(True, cancel=tuple(active))
    raise ValueError(f"unknown concurrency policy {policy!r}")


def history_excess(runs: list[dict[str, Any]], limit: int) -> list[str]:
    """IDs of the finished runs beyond the newest ``limit`` (``runs`` newest first)."""
    finished = [job["id"] for job in runs if job["state"] in TERMINAL]
    return finished[limit:]


def check_options(
    *, name: Any, concurrency: Any, catch_up: Any, history_limit: Any, timezone: Any
) -> None:
    """Validate a schedule's settings other than its cron expression and spec.

    Raises:
        InvalidParams: naming the first setting that is wrong.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidParams(
            f"name: expected letters, digits, '_', '.', '-' (at most 64), got {name!r}"
        )
    if concurrency not in POLICIES:
        raise InvalidParams(
            f"concurrency: expected one of {', '.join(POLICIES)}, got {concurrency!r}"
        )
    if not isinstance(catch_up, bool):
        raise InvalidParams(f"catch_up: expected true or false, got {catch_up!r}")
    if (
        isinstance(history_limit, bool)
        or not isinstance(history_limit, int)
        or not 0 <= history_limit <= MAX_HISTORY
    ):
        raise InvalidParams(
            f"history_limit: expected an integer from 0 to {MAX_HISTORY}, got {history_limit!r}"
        )
    if timezone is not None:
        zone(timezone)

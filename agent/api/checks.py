"""Checks of param values the use cases share, each raising InvalidParams naming the field.

Pure; the checks of a job spec are agent/protocol/spec.py's (``job_spec`` adds
the agent's defaults), those of a schedule's settings agent/rules/schedule.py's.
"""

from __future__ import annotations

from typing import Any

from agent.config import Config
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams


def whole(value: Any, field: str, low: int, high: int = 2**31) -> int:
    """Return ``value`` if it is an integer (not a boolean) from ``low`` to ``high``.

    Raises:
        InvalidParams: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParams(f"{field}: expected a whole number from {low} to {high}")
    return value


def string_list(value: Any, field: str) -> list[str]:
    """A string or a list of strings as a list (None: empty).

    Raises:
        InvalidParams: ``value`` is something else.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidParams(f"{field}: expected a string or a list of strings")


def schedule_name(name: Any) -> str:
    """``name`` if it can name a schedule (whether one has it is the store's to say).

    Raises:
        InvalidParams: ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise InvalidParams(f"name: expected a schedule name, got {name!r}")
    return name


def job_spec(raw: Any, config: Config) -> dict[str, Any]:
    """``raw`` as job.submit stores it: checked, with the agent's defaults filled in.

    Raises:
        InvalidParams: naming the first field that is wrong.
    """
    spec = specs.normalize(
        raw,
        default_timeout=config.default_timeout or None,
        default_max_log_bytes=config.max_log_bytes,
    )
    if raw.get("stop_timeout") is None:
        spec["stop_timeout"] = config.default_stop_timeout
    for rule in spec["notify"]:
        if rule["target"] not in config.notify_targets:
            known = ", ".join(sorted(config.notify_targets)) or "none are configured"
            raise InvalidParams(
                f"notify: no target named {rule['target']!r} (the agent's notify_targets: {known})"
            )
    if raw.get("idle_timeout") is None:
        spec["idle_timeout"] = config.idle_timeout or None
    return spec

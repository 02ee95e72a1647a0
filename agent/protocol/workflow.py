"""The spec fields of workflow control (pure): ``after`` (dependencies) and
``retry_on`` (which failed attempts are retried).

``agent.protocol.spec.normalize`` calls each for its field; what the values
mean at run time is agent/rules/dependencies.py's and agent/rules/outcome.py's.
"""

from __future__ import annotations

import re
from typing import Any

from agent.protocol.errors import InvalidParams
from agent.protocol.states import Reason
from agent.protocol.values import choice, integer, string

MAX_AFTER = 64
#: What a dependency must end as (``after``); the first is the default.
AFTER_CONDITIONS = ("ok", "any", "failed")
#: A job ID or a prefix of one (Crockford base32, as ULIDs are written).
JOB_REF_RE = re.compile(r"^[0-9A-Za-z]{1,26}$")
#: The reasons of a failed attempt ``retry_on.reasons`` may name.
RETRY_REASONS = tuple(
    r.value
    for r in (Reason.EXIT, Reason.OOM, Reason.TIMEOUT, Reason.LOST, Reason.IMAGE, Reason.CREATE)
)
#: Those retried when ``retry_on`` names none: what a spec without it retries.
DEFAULT_RETRY_REASONS = (Reason.EXIT.value, Reason.OOM.value, Reason.LOST.value)
MAX_EXIT_CODES = 256


def _dependency(item: Any) -> dict[str, str]:
    """One ``after`` entry: ``"ID"``, ``"ID:CONDITION"`` or ``{"id", "condition"}``."""
    if isinstance(item, str):
        ref, _, condition = item.partition(":")
        item = {"id": ref, "condition": condition or AFTER_CONDITIONS[0]}
    if not isinstance(item, dict) or set(item) - {"id", "condition"}:
        raise InvalidParams(
            f'after: expected "ID", "ID:ok|any|failed" or {{"id": ..., "condition": ...}}, '
            f"got {item!r}"
        )
    ref = string(item.get("id"), "after", pattern=JOB_REF_RE, hint=" as a job ID")
    condition = choice(item.get("condition", AFTER_CONDITIONS[0]), "after", AFTER_CONDITIONS)
    return {"id": ref, "condition": condition}


def after(value: Any) -> list[dict[str, str]]:
    """The jobs a job waits for, each with what it must end as (no ID twice)."""
    if not isinstance(value, list):
        raise InvalidParams(f'after: expected a list (e.g. ["01J...:ok"]), got {value!r}')
    if len(value) > MAX_AFTER:
        raise InvalidParams(f"after: at most {MAX_AFTER} dependencies")
    out: list[dict[str, str]] = []
    for item in value:
        entry = _dependency(item)
        if any(e["id"] == entry["id"] for e in out):
            raise InvalidParams(f"after: {entry['id']} is named twice; name each job once")
        out.append(entry)
    return out


def _exit_codes(value: Any, field: str) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_EXIT_CODES:
        raise InvalidParams(f"{field}: expected a list of exit codes (0-255), got {value!r}")
    return sorted({integer(code, field, 0, 255) for code in value})


def retry_on(value: Any) -> dict[str, Any]:
    """Which failed attempts are retried: by reason, and by exit code for ``exit``."""
    if not isinstance(value, dict):
        raise InvalidParams(f"retry_on: expected an object, got {value!r}")
    unknown = set(value) - {"exit_codes", "not_exit_codes", "reasons"}
    if unknown:
        raise InvalidParams(
            f"retry_on: unknown field(s) {sorted(unknown)}; use exit_codes, not_exit_codes, reasons"
        )
    reasons = value.get("reasons")
    if reasons is None:
        reasons = list(DEFAULT_RETRY_REASONS)
    if not isinstance(reasons, list) or not reasons:
        raise InvalidParams(f"retry_on.reasons: expected a list of reasons, got {reasons!r}")
    for reason in reasons:
        choice(reason, "retry_on.reasons", RETRY_REASONS)
    out: dict[str, Any] = {
        "reasons": [r for r in RETRY_REASONS if r in reasons],
        "exit_codes": None,
        "not_exit_codes": [],
    }
    if value.get("exit_codes") is not None:
        out["exit_codes"] = _exit_codes(value["exit_codes"], "retry_on.exit_codes")
    if value.get("not_exit_codes") is not None:
        out["not_exit_codes"] = _exit_codes(value["not_exit_codes"], "retry_on.not_exit_codes")
    if (out["exit_codes"] is not None or out["not_exit_codes"]) and "exit" not in out["reasons"]:
        raise InvalidParams(
            "retry_on: exit codes are given but reasons leaves out exit; add exit to reasons"
        )
    return out

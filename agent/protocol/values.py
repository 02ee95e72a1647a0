"""Checks of single values that specs share (pure), each raising InvalidParams naming the field.

agent/protocol/spec.py and agent/protocol/workflow.py build a spec's checks from
these; nothing here knows what a field means.
"""

from __future__ import annotations

import re
from typing import Any

from agent.protocol.errors import InvalidParams

#: The longest string a spec field may hold.
MAX_STRING = 4096


def string(value: Any, field: str, *, pattern: re.Pattern | None = None, hint: str = "") -> str:
    """``value`` if it is a non-empty string without NUL (matching ``pattern``, if given)."""
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"{field}: expected a non-empty string, got {value!r}")
    if len(value) > MAX_STRING or "\x00" in value:
        raise InvalidParams(f"{field}: too long or contains a NUL byte")
    if pattern is not None and not pattern.match(value):
        raise InvalidParams(f"{field}: {value!r} is not valid{hint}")
    return value


def integer(value: Any, field: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a boolean) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParams(f"{field}: expected an integer from {low} to {high}, got {value!r}")
    return value


def choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise InvalidParams(f"{field}: expected one of {', '.join(choices)}, got {value!r}")
    return value

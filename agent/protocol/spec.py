"""Validate and normalise a submitted job spec (pure; no I/O).

``normalize(raw)`` is the single gate between what a client sends and what is
stored: it returns a new dict holding every field with its type settled and its
default filled in, or raises ``InvalidParams`` naming the field and the problem.
"""

from __future__ import annotations

import math
import re
from typing import Any

from agent.protocol import workflow
from agent.protocol.caches import parse_caches
from agent.protocol.errors import InvalidParams
from agent.protocol.notify import parse_rules
from agent.protocol.values import MAX_STRING
from agent.protocol.values import choice as _choice
from agent.protocol.values import integer as _int
from agent.protocol.values import string as _string

# An image reference, as containers/image (and docker/distribution) parse one:
# [domain[:port]/]path[:tag][@digest], path components lowercase. Written so
# that no two neighbouring parts can match the same text: matching stays
# linear whatever a client sends.
_ALNUM = r"[a-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_PART = r"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?"
_TAG = r"\w[\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$"
)
MAX_IMAGE = 512
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")
DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)

#: The allowed values of ``pull`` and ``network``; the first is the default.
PULL_POLICIES = ("missing", "always", "never")
NETWORKS = ("none", "default")
DEFAULT_PULL = PULL_POLICIES[0]
DEFAULT_NETWORK = NETWORKS[0]
MAX_RETRIES = 100
MAX_PRIORITY = 1000
MAX_COMMAND_ARGS = 4096
MAX_SECONDS = 366 * 24 * 3600
MAX_SECRETS = 64

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

DEFAULT_STOP_TIMEOUT = 10.0


def container_name(job_id: str) -> str:
    """The name of a job's container: deterministic, so a create is idempotent."""
    return f"choo-{job_id}"


def parse_duration(value: Any, field: str) -> float:
    """Turn ``30``, ``"30s"``, ``"30m"``, ``"2h"`` or ``"1d"`` into seconds.

    Raises:
        InvalidParams: when the value is not a positive, finite duration.
    """
    if isinstance(value, bool):
        raise InvalidParams(f"{field}: expected seconds or a duration like '30m', got {value!r}")
    if isinstance(value, int) and abs(value) > MAX_SECONDS:
        seconds = math.inf if value > 0 else -math.inf  # float() would overflow
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InvalidParams(
            f"{field}: expected seconds or a duration like '30s', '30m', '2h', got {value!r}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise InvalidParams(f"{field}: must be zero or more seconds, got {value!r}")
    if seconds > MAX_SECONDS:
        raise InvalidParams(f"{field}: at most {MAX_SECONDS} seconds (366 days), got {value!r}")
    return seconds


def parse_size(value: Any, field: str) -> int:
    """Turn ``536870912``, ``"512m"`` or ``"1g"`` into bytes (binary units)."""
    if isinstance(value, bool):
        raise InvalidParams(f"{field}: expected bytes or a size like '512m', got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := SIZE_RE.match(value)):
        number = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        size = int(number) if math.isfinite(number) else 2**63
    else:
        raise InvalidParams(f"{field}: expected bytes or a size like '512m', got {value!r}")
    if size <= 0 or size > 2**62:
        raise InvalidParams(f"{field}: must be a positive size, got {value!r}")
    return size


def parse_cap(value: Any, field: str) -> int:
    """A size that may be 0 for "none" (``max_log_bytes``): bytes, or ``"100m"``.

    Raises:
        InvalidParams: when the value is neither 0 nor a positive size.
    """
    if not isinstance(value, bool) and value in (0, "0"):
        return 0
    return parse_size(value, field)


def _string_map(value: Any, field: str, key_re: re.Pattern, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidParams(f"{field}: expected an object of {what} to strings, got {value!r}")
    out = {}
    for key, val in value.items():
        _string(key, f"{field}", pattern=key_re, hint=f" as {what}")
        if not isinstance(val, str) or len(val) > MAX_STRING * 8 or "\x00" in val:
            raise InvalidParams(f"{field}.{key}: expected a string value, got {val!r}")
        out[key] = val
    return out


def _command(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise InvalidParams(
            f'command: expected a list of strings (e.g. ["sh", "-c", "..."]), got {value!r}'
        )
    if len(value) > MAX_COMMAND_ARGS or any("\x00" in a for a in value):
        raise InvalidParams("command: too many arguments or an argument with a NUL byte")
    return list(value)


def _resources(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParams(f"resources: expected an object, got {value!r}")
    unknown = set(value) - {"memory", "cpus", "pids"}
    if unknown:
        raise InvalidParams(
            f"resources: unknown field(s) {sorted(unknown)}; use memory, cpus, pids"
        )
    out: dict[str, Any] = {}
    if value.get("memory") is not None:
        out["memory"] = parse_size(value["memory"], "resources.memory")
    if value.get("cpus") is not None:
        cpus = value["cpus"]
        # Compared, not converted: float() of a huge integer would overflow,
        # and NaN fails every comparison.
        if isinstance(cpus, bool) or not isinstance(cpus, int | float) or not 0 < cpus <= 1024:
            raise InvalidParams(f"resources.cpus: expected a number above 0, got {cpus!r}")
        out["cpus"] = float(cpus)
    if value.get("pids") is not None:
        out["pids"] = _int(value["pids"], "resources.pids", 1, 1 << 22)
    return out


def _secrets(value: Any, env: dict[str, str]) -> list[str]:
    """Names of credentials, each passed to the job as the variable of that name."""
    if not isinstance(value, list):
        raise InvalidParams(
            f'secrets: expected a list of credential names (e.g. ["GITHUB_TOKEN"]), got {value!r}'
        )
    if len(value) > MAX_SECRETS:
        raise InvalidParams(f"secrets: at most {MAX_SECRETS} names")
    names: list[str] = []
    for item in value:
        name = _string(item, "secrets", pattern=ENV_NAME_RE, hint=" as a variable name")
        if name in env:
            raise InvalidParams(f"secrets: {name} is also set in env; set it in one place only")
        if name not in names:
            names.append(name)
    return names


def normalize(
    raw: Any, *, default_timeout: float | None = None, default_max_log_bytes: int = 0
) -> dict[str, Any]:
    """Validate a job spec and fill in its defaults.

    Args:
        raw: the spec as the client sent it (decoded JSON).
        default_timeout: seconds applied when the spec names no timeout.
        default_max_log_bytes: the output cap of each attempt when the spec
            names none (0: none).

    Returns:
        A new dict with every known field present.

    Raises:
        InvalidParams: naming the first field that is wrong.
    """
    if not isinstance(raw, dict):
        raise InvalidParams(f"spec: expected a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise InvalidParams(
            f"spec: unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
            f"known fields are {', '.join(FIELDS)}"
        )
    if "image" not in raw:
        raise InvalidParams('image: required (e.g. "localhost/choo-demo")')
    if isinstance(raw["image"], str) and len(raw["image"]) > MAX_IMAGE:
        raise InvalidParams(f"image: longer than {MAX_IMAGE} characters")

    spec: dict[str, Any] = {
        "image": _string(raw["image"], "image", pattern=IMAGE_RE, hint=" as an image reference"),
        "command": _command(raw.get("command", [])),
        "name": None,
        "env": {},
        "secrets": [],
        "workdir": None,
        "user": None,
        "timeout": default_timeout,
        "idle_timeout": None,
        "stop_timeout": DEFAULT_STOP_TIMEOUT,
        "resources": {},
        "pull": DEFAULT_PULL,
        "retries": 0,
        "network": DEFAULT_NETWORK,
        "labels": {},
        "priority": 0,
        "max_log_bytes": default_max_log_bytes,
        "notify": [],
        "caches": {},
        "after": [],
        "retry_on": None,
    }
    if raw.get("name") is not None:
        spec["name"] = _string(
            raw["name"], "name", pattern=NAME_RE, hint=" (letters, digits, '_', '.', '-'; max 64)"
        )
    if raw.get("env") is not None:
        spec["env"] = _string_map(raw["env"], "env", ENV_NAME_RE, "variable names")
    if raw.get("secrets") is not None:
        spec["secrets"] = _secrets(raw["secrets"], spec["env"])
    if raw.get("workdir") is not None:
        spec["workdir"] = _string(raw["workdir"], "workdir")
        if not spec["workdir"].startswith("/"):
            raise InvalidParams(f"workdir: must be an absolute path, got {spec['workdir']!r}")
    # A host directory, snapshotted at submit time; whether it may be used is
    # the service's check (it needs the file system and the caller).
    spec["workspace"] = None
    if raw.get("workspace") is not None:
        spec["workspace"] = _string(raw["workspace"], "workspace")
        if not spec["workspace"].startswith("/"):
            raise InvalidParams(f"workspace: must be an absolute path, got {spec['workspace']!r}")
    if raw.get("user") is not None:
        spec["user"] = _string(raw["user"], "user")
    if raw.get("timeout") is not None:
        spec["timeout"] = parse_duration(raw["timeout"], "timeout") or None
    if raw.get("idle_timeout") is not None:
        spec["idle_timeout"] = parse_duration(raw["idle_timeout"], "idle_timeout") or None
    if raw.get("stop_timeout") is not None:
        spec["stop_timeout"] = parse_duration(raw["stop_timeout"], "stop_timeout")
    if raw.get("max_log_bytes") is not None:
        spec["max_log_bytes"] = parse_cap(raw["max_log_bytes"], "max_log_bytes")
    if raw.get("resources") is not None:
        spec["resources"] = _resources(raw["resources"])
    if raw.get("pull") is not None:
        spec["pull"] = _choice(raw["pull"], "pull", PULL_POLICIES)
    if raw.get("retries") is not None:
        spec["retries"] = _int(raw["retries"], "retries", 0, MAX_RETRIES)
    if raw.get("network") is not None:
        spec["network"] = _choice(raw["network"], "network", NETWORKS)
    if raw.get("labels") is not None:
        spec["labels"] = _string_map(raw["labels"], "labels", LABEL_KEY_RE, "label keys")
    if raw.get("priority") is not None:
        spec["priority"] = _int(raw["priority"], "priority", -MAX_PRIORITY, MAX_PRIORITY)
    if raw.get("notify") is not None:
        spec["notify"] = parse_rules(raw["notify"], "notify", named=False)
    if raw.get("caches") is not None:
        spec["caches"] = parse_caches(raw["caches"])
    if raw.get("after") is not None:
        spec["after"] = workflow.after(raw["after"])
    if raw.get("retry_on") is not None:
        spec["retry_on"] = workflow.retry_on(raw["retry_on"])
    return spec


FIELDS = (
    "image",
    "command",
    "name",
    "env",
    "secrets",
    "workdir",
    "workspace",
    "user",
    "timeout",
    "idle_timeout",
    "stop_timeout",
    "max_log_bytes",
    "resources",
    "pull",
    "retries",
    "network",
    "labels",
    "priority",
    "notify",
    "caches",
    "after",
    "retry_on",
)

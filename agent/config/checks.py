"""Checking the configuration: each value's type, then what the values allow.

What a TOML file may hold and the messages a bad value gets, kept apart from
``Config``'s defaults; it never reads a file or the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.protocol.errors import ChooError
from agent.protocol.notify import parse_rules, parse_targets
from agent.protocol.spec import ENV_NAME_RE, parse_cap, parse_size

if TYPE_CHECKING:
    from agent.config import Config

#: Linux capability names (capabilities(7)), for checking container_caps.
_CAPABILITY_NAMES = """
    CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
    LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
    SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
    MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
    CHECKPOINT_RESTORE
"""
CAPABILITIES = frozenset(_CAPABILITY_NAMES.split())

#: Keys that take a size: bytes, or a string like "512m" or "4g".
SIZE_KEYS = frozenset({"default_memory"})
#: Keys that take bytes, or a size like "100m", kept as bytes (0: none).
CAP_KEYS = frozenset({"max_log_bytes", "image_gc_min_free", "cache_max_bytes"})
#: What happens to a job whose output passes its max_log_bytes; the first is the default.
LOG_LIMIT_ACTIONS = ("truncate", "fail")

#: Podman's own --log-level values ("": its default, warn).
PODMAN_LOG_LEVELS = ("", "debug", "info", "warn", "error")
SECRET_DELIVERIES = ("env", "file")


class ConfigError(ChooError):
    """The configuration file is unreadable or holds a bad value."""


def coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` from the file as the type of the setting's ``default``.

    Raises:
        ConfigError: the value has the wrong type or is out of range; the
            message names the setting.
    """
    if name in ("notify", "notify_targets"):
        try:
            if name == "notify":
                return parse_rules(value, name, named=True)
            return parse_targets(value)
        except ChooError as exc:
            raise ConfigError(exc.message) from None
    if name in CAP_KEYS:
        try:
            return parse_cap(value, name)
        except ChooError as exc:
            raise ConfigError(f"{exc.message} (0: no cap)") from None
    if name in SIZE_KEYS:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{name}: expected bytes or a size like '4g', got {value!r}")
        return str(value)
    if isinstance(default, Path):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name}: expected a path string, got {value!r}")
        return Path(value).expanduser()
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if (
        isinstance(default, float)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        if value < 0:
            raise ConfigError(f"{name}: must not be negative, got {value!r}")
        return float(value)
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name}: expected a whole number >= 0, got {value!r}")
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    if (
        isinstance(default, list)
        and isinstance(value, list)
        and all(isinstance(v, str) for v in value)
    ):
        return value
    if isinstance(default, dict) and isinstance(value, dict):
        return value
    raise ConfigError(f"{name}: expected {type(default).__name__}, got {value!r}")


def check(config: Config) -> Config:
    """The checks across a whole configuration, once every value has its type.

    Raises:
        ConfigError: a value is not allowed; the message names the setting.
    """
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(
            f"log_level: expected debug, info, warning or error, not {config.log_level!r}"
        )
    if config.podman_log_level not in PODMAN_LOG_LEVELS:
        raise ConfigError(
            f"podman_log_level: expected one of {', '.join(filter(None, PODMAN_LOG_LEVELS))} "
            f"or empty, not {config.podman_log_level!r}"
        )
    if config.secret_delivery not in SECRET_DELIVERIES:
        raise ConfigError(
            f"secret_delivery: expected {' or '.join(SECRET_DELIVERIES)}, "
            f"not {config.secret_delivery!r}"
        )
    if config.log_limit_action not in LOG_LIMIT_ACTIONS:
        raise ConfigError(
            f"log_limit_action: expected {' or '.join(LOG_LIMIT_ACTIONS)}, "
            f"not {config.log_limit_action!r}"
        )
    if config.max_concurrent < 1:
        raise ConfigError("max_concurrent: must be at least 1")
    for name, limits in config.ulimits.items():
        if (
            not isinstance(limits, list)
            or len(limits) != 2
            or not all(isinstance(v, int) and v >= 0 for v in limits)
            or limits[0] > limits[1]
        ):
            raise ConfigError(f"ulimits.{name}: expected [soft, hard] with soft <= hard")
    if config.pull_timeout <= 0:
        raise ConfigError("pull_timeout: must be more than 0 seconds")
    if config.max_connections < 1:
        raise ConfigError("max_connections: must be at least 1")
    if config.max_request_bytes < 1024:
        raise ConfigError("max_request_bytes: must be at least 1024")
    if config.default_memory not in ("", "0"):
        try:
            parse_size(config.default_memory, "default_memory")
        except ChooError as exc:
            raise ConfigError(exc.message) from None
    for cap in config.container_caps:
        if cap.upper().removeprefix("CAP_") not in CAPABILITIES:
            raise ConfigError(f"container_caps: {cap!r} is not a capability name (e.g. CHOWN)")
    for name in config.secret_env:
        if not ENV_NAME_RE.match(name):
            raise ConfigError(f"secret_env: {name!r} is not an environment variable name")
    _check_secret_access(config.secret_access)
    if config.max_connections_per_uid < 1:
        raise ConfigError("max_connections_per_uid: must be at least 1")
    if config.notify_max_tries < 1:
        raise ConfigError("notify_max_tries: must be at least 1")
    for rule in config.notify:
        if rule["target"] not in config.notify_targets:
            raise ConfigError(
                f"notify: the rule for {rule['target']!r} names no target of notify_targets"
            )
    for name, limit in config.name_limits.items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"name_limits.{name}: expected a whole number >= 1")
    return config


def _check_secret_access(access: dict[str, Any]) -> None:
    for name, entries in access.items():
        if name != "*" and not ENV_NAME_RE.match(name):
            raise ConfigError(
                f'secret_access: {name!r} is not a credential name (a variable name, or "*")'
            )
        if not isinstance(entries, list) or not all(isinstance(e, str) and e for e in entries):
            raise ConfigError(
                f"secret_access.{name}: expected a list of user names, group names or uids"
            )

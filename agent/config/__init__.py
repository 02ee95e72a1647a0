"""The agent's configuration: one ``Config`` dataclass, TOML file plus defaults.

Defaults make ``choo-agent`` work with no file at all, whether started by hand
(state under ``~/.local/state/choo``, socket under ``$XDG_RUNTIME_DIR/choo``) or
by systemd (``$STATE_DIRECTORY`` and ``$RUNTIME_DIRECTORY``). Every key of the
file is a field of ``Config``; an unknown key or a wrong type is an error that
names the key, so a typo never silently falls back to a default (checks.py
says what each value may be).
"""

from __future__ import annotations

import dataclasses
import os
import resource
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config.checks import LOG_LIMIT_ACTIONS, ConfigError, check, coerce
from agent.protocol.spec import DEFAULT_STOP_TIMEOUT

__all__ = ["Config", "ConfigError", "load", "own_ulimits", "default_socket", "default_state_dir"]

SYSTEM_CONFIG = Path("/etc/choo/agent.toml")
SYSTEM_SOCKET = Path("/run/choo/agent.sock")
#: Capabilities a job's container keeps; every other one is dropped. What
#: package managers and ordinary Unix tools need inside their own namespace.
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
#: Variables of the agent's environment a job may ask for as secrets.
DEFAULT_SECRET_ENV = ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "SSH_AUTH_SOCK")
#: Keys that once were settings, and why a file may not set them any more.
RETIRED = {
    "log_driver": "job output is now always kept by the agent (a log file per attempt, "
    "copied to the journal)",
}

#: Where workspaces may come from unless workspace_roots says otherwise.
DEFAULT_WORKSPACE_ROOTS = ("/home", "/srv", "/tmp", "/var/tmp")

#: Settings a SIGHUP applies to a running agent; the rest need a restart.
RELOADABLE = frozenset(
    {
        "log_level",
        "max_concurrent",
        "queue_limit",
        "name_limits",
        "default_timeout",
        "idle_timeout",
        "default_stop_timeout",
        "max_log_bytes",
        "log_limit_action",
        "keep_containers",
        "stop_containers_on_exit",
        "resync_interval",
        "usage_interval",
        "metrics_interval",
        "orphan_grace",
        "retry_backoff_base",
        "retry_backoff_cap",
        "retry_jitter",
        "allowed_users",
        "allowed_groups",
        "admin_groups",
        "list_others",
        "secret_access",
        "max_request_bytes",
        "max_connections",
        "max_connections_per_uid",
        "request_timeout",
        "secret_env",
        "container_caps",
        "no_new_privileges",
        "default_pids",
        "default_memory",
        "read_only_rootfs",
        "secret_delivery",
        "ulimits",
        "runtime",
        "workspace_roots",
        "workspace_max_bytes",
        "artifacts_max_bytes",
        "max_files_bytes",
        "retention",
        "notify",
        "notify_targets",
        "notify_max_tries",
        "notify_backoff_base",
        "notify_backoff_cap",
        "image_gc",
        "image_gc_age",
        "image_gc_min_free",
        "image_gc_keep",
        "cache_max_bytes",
        "cache_max_age",
    }
)


def _runtime_dir() -> Path:
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "choo"
    return Path(f"/tmp/choo-{os.getuid()}")


def default_socket() -> Path:
    return _runtime_dir() / "agent.sock"


def default_state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "choo"


def own_ulimits() -> dict[str, list[int]]:
    """Container ulimits that never exceed the agent's own hard limits.

    Podman's built-in defaults (nofile 1048576) fail on hosts with a lower hard
    limit, and in a user namespace runc cannot set nproc near the caller's
    hard limit either; 4096 processes is ample next to the pids limit.
    """

    def hard(which: int) -> int:
        value = resource.getrlimit(which)[1]
        return 1 << 20 if value == resource.RLIM_INFINITY else min(value, 1 << 20)

    nofile, nproc = hard(resource.RLIMIT_NOFILE), hard(resource.RLIMIT_NPROC)
    return {"nofile": [min(1024, nofile), nofile], "nproc": [min(4096, nproc)] * 2}


@dataclass
class Config:
    """Every setting of the agent. Field names are the TOML keys."""

    socket: Path = field(default_factory=default_socket)
    state_dir: Path = field(default_factory=default_state_dir)
    log_level: str = "info"
    #: Podman API URL; empty means ``$XDG_RUNTIME_DIR/podman/podman.sock``, and
    #: if nothing answers there the agent runs ``podman system service`` itself.
    podman_url: str = ""
    podman_timeout: float = 30.0
    #: The most seconds an image pull may take in all (its replies may trickle).
    pull_timeout: float = 600.0
    #: ``--log-level`` of the Podman service the agent starts itself ("": Podman's default).
    podman_log_level: str = ""
    runtime: str = "runc"
    #: Run a tiny init (catatonit) as PID 1, so a job's process gets SIGTERM even if
    #: it installs no handler. Off by default, as in ``podman run``: with it, a
    #: command that does not exist ends with exit code 1 instead of 127.
    container_init: bool = False
    ulimits: dict[str, list[int]] = field(default_factory=own_ulimits)
    max_concurrent: int = 4
    queue_limit: int = 1000
    name_limits: dict[str, int] = field(default_factory=dict)
    default_timeout: float = 0.0
    #: Stop a running job that printed nothing for this long (reason stalled; 0: never).
    idle_timeout: float = 0.0
    default_stop_timeout: float = DEFAULT_STOP_TIMEOUT
    #: Output each attempt of a job keeps when its spec names no max_log_bytes (0: no cap).
    max_log_bytes: int = 0
    #: Past a job's max_log_bytes: drop the rest ("truncate") or fail the job ("fail").
    log_limit_action: str = LOG_LIMIT_ACTIONS[0]
    keep_containers: bool = False
    stop_containers_on_exit: bool = False
    resync_interval: float = 5.0
    #: Seconds between two looks at each running job's processes (0: no usage recorded).
    usage_interval: float = 1.0
    #: A file rewritten every metrics_interval with the metrics ("": none).
    metrics_textfile: str = ""
    metrics_interval: float = 15.0
    #: Serve the metrics over HTTP on PORT or IP:PORT ("": not at all).
    metrics_listen: str = ""
    #: Allow metrics_listen on an address other hosts reach.
    metrics_listen_public: bool = False
    #: A container labelled as ours whose job is unknown is removed once it is
    #: this old (younger, it may be one whose create call is still returning).
    orphan_grace: float = 30.0
    retry_backoff_base: float = 10.0
    retry_backoff_cap: float = 360.0
    #: Full jitter: wait a random part of each retry's backoff (off: the exact doubling).
    retry_jitter: bool = True
    socket_group: str = "choo"
    allowed_users: list[str] = field(default_factory=list)
    allowed_groups: list[str] = field(default_factory=list)
    #: Groups whose members may read and change every user's jobs and schedules
    #: (root and the agent's own user always may).
    admin_groups: list[str] = field(default_factory=list)
    #: Show other users' jobs (state, name, image, times; never env values or
    #: output) in listings and event streams; false hides them entirely.
    list_others: bool = True
    #: Credential name (or "*", every unlisted one) to the users, groups or
    #: uids who may ask for it; an unlisted credential is the admins' alone.
    secret_access: dict[str, list[str]] = field(default_factory=dict)
    max_request_bytes: int = 1 << 20
    #: Open client connections; when full, the uid holding the most gives way.
    max_connections: int = 256
    #: Connections one uid may hold (root and the agent's user: max_connections).
    max_connections_per_uid: int = 32
    #: Seconds a client may take to finish a request it began, or to read an answer.
    request_timeout: float = 30.0
    #: Agent environment variables a job's ``secrets`` may name (besides the
    #: files of ``$CREDENTIALS_DIRECTORY``).
    secret_env: list[str] = field(default_factory=lambda: list(DEFAULT_SECRET_ENV))
    container_caps: list[str] = field(default_factory=lambda: list(DEFAULT_CAPS))
    no_new_privileges: bool = True
    #: Process-count limit of a job that sets none (0: none).
    default_pids: int = 4096
    #: Memory limit of a job that sets none ("" or 0: none).
    default_memory: str = "4g"
    read_only_rootfs: bool = False
    #: How a job's secrets reach its container: "env" (variables) or "file"
    #: (/run/secrets/NAME, with NAME_FILE in the environment).
    secret_delivery: str = "env"
    #: Host directories under which a job's ``workspace`` may lie.
    workspace_roots: list[str] = field(default_factory=lambda: list(DEFAULT_WORKSPACE_ROOTS))
    #: Largest workspace snapshot, in bytes (0: no limit).
    workspace_max_bytes: int = 1 << 30
    #: Largest content of a job's /out that is packed, in bytes (0: no limit).
    artifacts_max_bytes: int = 1 << 30
    #: Most bytes all workspaces and archives may hold together (0: no limit).
    max_files_bytes: int = 10 << 30
    #: Seconds a finished job (record, archive, workspace) is kept (0: for ever).
    retention: float = 7 * 86400.0
    #: Where notifications go: name -> {webhook = URL, secret = credential name} or
    #: {command = [argv]}, each with an optional timeout (seconds).
    notify_targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Rules for every job (or, with ``name``, the jobs of that name): on which
    #: ends to notify which target; a job's own ``notify`` adds to them.
    notify: list[dict[str, Any]] = field(default_factory=list)
    #: Tries of one delivery before it is left failed.
    notify_max_tries: int = 10
    #: Seconds before the second try of a delivery; each later wait doubles.
    notify_backoff_base: float = 5.0
    #: The longest wait between two tries of a delivery.
    notify_backoff_cap: float = 3600.0
    #: Remove unused images by themselves, hourly (``chooctl prune --images`` always may).
    image_gc: bool = False
    #: Seconds an image is unused (no job used it, else since it was made) before it goes.
    image_gc_age: float = 7 * 86400.0
    #: Free bytes to keep on the image store: under it, unused images go oldest first (0: off).
    image_gc_min_free: int = 0
    #: Images never removed: references, or patterns of full names (``docker.io/library/*``).
    image_gc_keep: list[str] = field(default_factory=list)
    #: A cache (spec ``caches``) past this many bytes is emptied before its next use (0: no cap).
    cache_max_bytes: int = 1 << 30
    #: A cache unused this many seconds is emptied before its next use (0: never).
    cache_max_age: float = 10 * 86400.0

    @property
    def database(self) -> Path:
        return self.state_dir / "choo.db"


def load(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the configuration from defaults, an optional TOML file and overrides.

    Args:
        path: the TOML file; ``None`` reads ``$CHOO_CONFIG``, else
            ``/etc/choo/agent.toml`` (system service) or
            ``~/.config/choo/agent.toml`` if one exists.
        overrides: values from the command line, applied last.

    Raises:
        ConfigError: the file cannot be read or parsed, or a key is unknown or
            has the wrong type.
    """
    if path is None:
        path = _find_file()
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    values.update(overrides or {})
    config = Config()
    known = {f.name for f in dataclasses.fields(Config)}
    for key, value in values.items():
        if key in RETIRED:
            raise ConfigError(
                f"{key!r} in {path} is no longer a setting: {RETIRED[key]}; "
                "remove it (see choo-agent.toml(5))"
            )
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} in {path}; see choo-agent.toml(5)")
        setattr(config, key, coerce(key, value, getattr(config, key)))
    return check(config)


def _find_file() -> Path | None:
    if os.environ.get("CHOO_CONFIG"):
        return Path(os.environ["CHOO_CONFIG"])
    candidates = [Path.home() / ".config" / "choo" / "agent.toml"]
    if os.environ.get("STATE_DIRECTORY") or os.getuid() == 0:
        candidates.insert(0, SYSTEM_CONFIG)
    if os.environ.get("CONFIGURATION_DIRECTORY"):
        candidates.insert(0, Path(os.environ["CONFIGURATION_DIRECTORY"]) / "agent.toml")
    return next((p for p in candidates if p.is_file()), None)

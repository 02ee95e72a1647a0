"""Caches between runs, as a spec names them, and the volume each is kept in (pure).

``"caches": {"pip": "/root/.cache/pip"}`` mounts the cache ``pip`` at that
path; ``{"pip": {"path": "/root/.cache/pip", "shared": true}}`` shares it
between every job, where by default each job ``name`` has its own (jobs with
no name share the group ``UNNAMED``). A cache is an agent-owned Podman
volume, named from a hash of the agent's ID, its group and its name (any
characters there stay unambiguous, and two agents on one Podman never share
one), labelled with all three.
"""

from __future__ import annotations

import re
from typing import Any

from agent.protocol.errors import InvalidParams

CACHE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
#: The group of a shared cache, and of the caches of jobs with no name.
SHARED, UNNAMED = "*", "-"
MAX_CACHES = 16
#: Paths a cache may not be mounted at (the job's own mounts and the system's).
RESERVED = ("/", "/out", "/workspace", "/proc", "/sys", "/dev")
VOLUME_PREFIX = "choo-cache-"


def parse_caches(value: Any) -> dict[str, dict[str, Any]]:
    """Check a spec's ``caches``; each comes back as ``{"path", "shared"}``.

    Raises:
        InvalidParams: naming the first cache that is wrong.
    """
    if not isinstance(value, dict) or len(value) > MAX_CACHES:
        raise InvalidParams(
            f"caches: expected an object of at most {MAX_CACHES} caches like "
            f'{{"pip": "/root/.cache/pip"}}, got {value!r}'
        )
    caches: dict[str, dict[str, Any]] = {}
    paths: set[str] = set()
    for name, entry in value.items():
        if not isinstance(name, str) or not CACHE_NAME_RE.match(name):
            raise InvalidParams(
                f"caches: {name!r} is not a cache name (letters, digits, '_', '.', '-')"
            )
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or set(entry) - {"path", "shared"} or "path" not in entry:
            raise InvalidParams(
                f'caches.{name}: expected a path, or {{"path": ..., "shared": true}}, got {entry!r}'
            )
        path, shared = entry["path"], entry.get("shared", False)
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise InvalidParams(f"caches.{name}: expected an absolute path, got {path!r}")
        path = "/" + path.strip("/")
        if path in RESERVED or path in paths:
            raise InvalidParams(f"caches.{name}: {path} is reserved or another cache's path")
        if not isinstance(shared, bool):
            raise InvalidParams(f"caches.{name}.shared: expected true or false, got {shared!r}")
        paths.add(path)
        caches[name] = {"path": path, "shared": shared}
    return caches


def group_of(cache: dict[str, Any], job_name: str | None) -> str:
    """The group a job's cache belongs to: shared, the job's name, or unnamed."""
    if cache["shared"]:
        return SHARED
    return job_name or UNNAMED


def volume_name(agent_id: str, group: str, name: str) -> str:
    """The Podman volume that keeps cache ``name`` of ``group`` for agent ``agent_id``."""
    import hashlib  # here: OpenSSL's start costs chooctl more than its whole spec check

    digest = hashlib.sha256(f"{agent_id}\0{group}\0{name}".encode()).hexdigest()[:20]
    return f"{VOLUME_PREFIX}{digest}"


def caches_of(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """``(group, name)`` of every cache of a normalised spec: what one writer holds."""
    return {
        (group_of(cache, spec.get("name")), name)
        for name, cache in (spec.get("caches") or {}).items()
    }

"""The cache.list and cache.remove use cases: the caches between runs, listed and cleared.

Anyone the socket lets in may do both: a cache only ever holds what jobs
rebuild (downloads, compiled dependencies), so clearing one costs time, never
data. A cache a running job uses is left as it is. The volumes themselves are
agent/adapters/podman/caches.py's.
"""

from __future__ import annotations

from typing import Any

from agent.api.service import Service
from agent.protocol import methods, types
from agent.protocol.caches import CACHE_NAME_RE
from agent.protocol.errors import InvalidParams


def _shown(cache: dict[str, Any]) -> types.Cache:
    return {key: cache[key] for key in ("name", "group", "volume", "size", "last_used")}


def list_caches(service: Service) -> list[types.Cache]:
    """Every cache, by name then group.

    Raises:
        PodmanUnavailable: Podman did not answer.
    """
    assert service.caches is not None, "the agent wires its Podman adapter"
    return [_shown(cache) for cache in service.caches.list_caches()]


def remove_caches(service: Service, params: methods.CacheRemoveParams) -> types.CachesRemoved:
    """Remove the caches named ``params.name`` (of ``params.group`` only, if given).

    Raises:
        InvalidParams: the name is not a cache name, or no such cache exists.
        PodmanUnavailable: Podman did not answer.
    """
    if not isinstance(params.name, str) or not CACHE_NAME_RE.match(params.name):
        raise InvalidParams(f"name: expected a cache name, got {params.name!r}")
    assert service.caches is not None, "the agent wires its Podman adapter"
    chosen = [
        cache
        for cache in service.caches.list_caches()
        if cache["name"] == params.name and params.group in (None, cache["group"])
    ]
    if not chosen:
        where = f" of group {params.group!r}" if params.group is not None else ""
        raise InvalidParams(f"name: no cache {params.name!r}{where} (see chooctl cache ls)")
    removed, in_use = [], []
    for cache in chosen:
        (removed if service.caches.remove_cache(cache["volume"]) else in_use).append(_shown(cache))
    return {"removed": removed, "in_use": in_use}

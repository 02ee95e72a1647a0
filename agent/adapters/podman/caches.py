"""Cache volumes: an agent-owned Podman volume per cache, kept between runs.

``cache_mounts`` makes each cache of a spec ready to mount: created (labelled
with the agent, the cache's name and its group) when missing, emptied
(removed and made afresh) when it has grown past ``cache_max_bytes`` or was
unused for ``cache_max_age``, and marked used now. Size and last use are read
from the volume's directory on the host, as the agent's user sees it (the
files of a job's root are the agent's own in rootless Podman); what that user
cannot read is not counted. Which job may use a cache when (one at a time) is
rules/admission.py's; this module never decides that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

from agent.adapters.podman.errors import Conflict, NotFound, mapped
from agent.adapters.podman.names import LABEL_AGENT
from agent.adapters.podman.volumes import Volumes
from agent.protocol.caches import group_of, volume_name
from agent.protocol.errors import CreateError

log = logging.getLogger(__name__)

LABEL_CACHE = "io.choo.cache"
LABEL_CACHE_GROUP = "io.choo.cache-group"


def _usage(path: str) -> int:
    """Bytes the files under ``path`` take on disk (what cannot be read: not counted)."""
    total = 0
    for root, dirs, files in os.walk(path, onerror=lambda exc: None):
        for entry in (*dirs, *files):
            try:
                total += os.lstat(os.path.join(root, entry)).st_blocks * 512
            except OSError:
                continue
    return total


class Caches(Volumes):
    """The cache volume calls of ``Podman``."""

    #: Past this many bytes a cache is emptied before its next use (0: no cap).
    cache_max_bytes: int = 0
    #: A cache unused for this many seconds is emptied before its next use (0: never).
    cache_max_age: float = 0.0

    def cache_mounts(self, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """podman-py ``volumes`` entries mounting every cache of ``spec``, each ready.

        Raises:
            CreateError: Podman refused a volume.
            PodmanUnavailable: Podman did not answer.
        """
        mounts = {}
        for name, cache in (spec.get("caches") or {}).items():
            group = group_of(cache, spec.get("name"))
            volume = volume_name(self.agent_id, group, name)
            self._ready(volume, name, group)
            mounts[volume] = {"bind": cache["path"], "mode": "rw"}
        return mounts

    def _ready(self, volume: str, name: str, group: str) -> None:
        found = self._cache(volume)
        if found is not None:
            why = None
            if self.cache_max_bytes and found["size"] > self.cache_max_bytes:
                why = f"it holds {found['size']} bytes, past cache_max_bytes"
            elif self.cache_max_age and time.time() - found["last_used"] > self.cache_max_age:
                why = "it was unused for cache_max_age"
            if why is not None and self.remove_cache(volume):
                log.info("cache %s (%s) emptied: %s", name, group, why)
            else:
                if why is not None:  # the last user's container is not removed yet
                    log.info("cache %s (%s) kept this once (still mounted): %s", name, group, why)
                with contextlib.suppress(OSError):
                    os.utime(found["path"])  # its last use: now
                return
        labels = {LABEL_AGENT: self.agent_id, LABEL_CACHE: name, LABEL_CACHE_GROUP: group}
        try:
            with mapped(f"create the volume of cache {name}", CreateError):
                self.client.volumes.create(volume, labels=labels)
        except CreateError as exc:
            if "already exists" not in exc.message:  # a run of a moment ago made it
                raise

    def _cache(self, volume: str) -> dict[str, Any] | None:
        try:
            with mapped(f"inspect volume {volume}"):
                attrs = self.client.volumes.get(volume).attrs
        except NotFound:
            return None
        return self._described(attrs)

    def _described(self, attrs: dict[str, Any]) -> dict[str, Any]:
        labels = attrs.get("Labels") or {}
        path = attrs.get("Mountpoint") or ""
        try:
            last_used = os.stat(path).st_mtime
        except OSError:
            last_used = 0.0
        return {
            "volume": attrs["Name"],
            "name": labels.get(LABEL_CACHE),
            "group": labels.get(LABEL_CACHE_GROUP),
            "path": path,
            "size": _usage(path) if path else 0,
            "last_used": last_used,
        }

    def list_caches(self) -> list[dict[str, Any]]:
        """Every cache volume of this agent: ``volume``, ``name``, ``group``, ``size``,
        ``last_used``.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        caches = [
            self._described(item)
            for item in self.our_volumes()
            if (item.get("Labels") or {}).get(LABEL_CACHE)
        ]
        return sorted(caches, key=lambda c: (c["name"] or "", c["group"] or ""))

    def remove_cache(self, volume: str) -> bool:
        """Remove a cache volume (never forced).

        Returns:
            False if a container uses it now (it is left as it is).

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        try:
            with mapped(f"remove volume {volume}"):
                self.client.volumes.remove(volume, force=False)
        except NotFound:
            return True
        except Conflict:
            return False
        return True

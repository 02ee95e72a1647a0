"""The image collector: removes local images nothing of this agent will need.

``collect()`` is one pass (``chooctl prune --images`` asks for one; with
``image_gc`` on, a thread of its own runs one every ``INTERVAL``): it reads
which images queued and running jobs and schedules refer to and when jobs
last used each, asks Podman for its images, its free space and what
``image_gc_keep`` names, lets agent/rules/image_gc.py choose, and removes
what was chosen, logging each removal. One pass at a time. It never forces
a removal: an image some container still uses stays. A job submitted during
a pass whose image it removes pulls it again (or, with ``pull: never``,
fails with reason ``image``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agent.adapters.podman import Podman
from agent.config import Config
from agent.rules.image_gc import choose
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: Seconds between two passes of the collector's own thread.
INTERVAL = 3600.0


class ImageCollector:
    """Removes unused images; ``collect()`` on demand, ``start()`` for the hourly pass."""

    def __init__(self, store: Store, podman: Podman, config: Config):
        self.store = store
        self.podman = podman
        self.config = config
        self._one_pass = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self.run, name="image-gc", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        """A pass every ``INTERVAL`` while ``image_gc`` is on (a reload may turn it on)."""
        while not self._stopping.wait(INTERVAL):
            if not self.config.image_gc:
                continue
            try:
                self.collect()
            except Exception as exc:  # Podman or the database may be down: next time
                log.warning("image collection failed: %s; trying again in %.0fs", exc, INTERVAL)

    def collect(self, now: float | None = None) -> dict[str, Any]:
        """One pass.

        Returns:
            ``{"removed": [{"id", "tags", "size", "why"}], "freed": bytes,
            "skipped": [{"id", "tags"}]}``, skipped being those chosen that a
            container still uses.

        Raises:
            PodmanUnavailable: Podman did not answer (what was removed stays removed).
        """
        with self._one_pass:
            return self._collect(time.time() if now is None else now)

    def _collect(self, now: float) -> dict[str, Any]:
        config = self.config
        in_use = self._ids(self.store.images_in_use())
        keep_ids = self._ids(ref for ref in config.image_gc_keep if not _is_pattern(ref))
        last_used: dict[str, float] = {}
        for ref, when in self.store.images_last_used().items():
            image_id = self.podman.image_id(ref) if ref else None
            if image_id is not None:
                last_used[image_id] = max(when, last_used.get(image_id, 0.0))
        chosen = choose(
            self.podman.list_images(),
            in_use=in_use,
            keep=config.image_gc_keep,
            keep_ids=keep_ids,
            last_used=last_used,
            now=now,
            age=config.image_gc_age,
            free=self.podman.storage_free() if config.image_gc_min_free else None,
            min_free=config.image_gc_min_free,
        )
        removed, skipped = [], []
        for image, why in chosen:
            shown = {"id": image["id"], "tags": image["tags"]}
            if not self.podman.remove_image(image):
                log.info("image %s kept: a container still uses it", _name(image))
                skipped.append(shown)
                continue
            log.info(
                "removed image %s (%d bytes): %s",
                _name(image),
                image["size"],
                "unused for image_gc_age" if why == "age" else "free space under image_gc_min_free",
            )
            removed.append({**shown, "size": image["size"], "why": why})
        return {"removed": removed, "freed": sum(i["size"] for i in removed), "skipped": skipped}

    def _ids(self, refs) -> set[str]:
        ids = (self.podman.image_id(ref) for ref in refs)
        return {image_id for image_id in ids if image_id is not None}


def _is_pattern(ref: str) -> bool:
    return any(c in ref for c in "*?[")


def _name(image: dict[str, Any]) -> str:
    return ", ".join(image["tags"]) or image["id"][:12]

"""Which local images the image collector removes (pure).

An image is a candidate when no queued or running job and no schedule
refers to it and ``image_gc_keep`` does not pin it. A candidate goes once it
has been unused for ``image_gc_age`` (its last use by a job of this agent,
else its creation), and, while free space is under ``image_gc_min_free``,
the longest-unused candidates go too until enough would be free.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

AGE, SPACE = "age", "space"


def pinned(image: dict[str, Any], keep: Iterable[str], keep_ids: set[str]) -> bool:
    """Whether ``keep`` pins ``image``: a name pattern (``fnmatch``) matches one of its
    tags, or a reference in it resolved to its ID."""
    if image["id"] in keep_ids:
        return True
    return any(fnmatch.fnmatchcase(tag, pattern) for tag in image["tags"] for pattern in keep)


def choose(
    images: list[dict[str, Any]],
    *,
    in_use: set[str],
    keep: list[str],
    keep_ids: set[str],
    last_used: dict[str, float],
    now: float,
    age: float,
    free: int | None,
    min_free: int,
) -> list[tuple[dict[str, Any], str]]:
    """The images to remove, each with why (``age`` or ``space``), in removal order.

    Args:
        images: every local image (``id``, ``tags``, ``created``, ``size``).
        in_use: IDs of the images that queued or running jobs and schedules refer to.
        keep: the ``image_gc_keep`` patterns.
        keep_ids: IDs those of ``keep`` that name an image resolve to.
        last_used: image ID -> when a job of this agent last used it.
        now: the current time.
        age: seconds unused before an image goes (0: never by age).
        free: bytes free on the image store (None: unknown).
        min_free: free bytes to keep (0: no such floor).
    """
    candidates = [
        image for image in images if image["id"] not in in_use and not pinned(image, keep, keep_ids)
    ]

    def unused_since(image: dict[str, Any]) -> float:
        return max(last_used.get(image["id"], 0.0), image["created"])

    candidates.sort(key=unused_since)
    chosen = [(image, AGE) for image in candidates if age and now - unused_since(image) >= age]
    if min_free and free is not None:
        gained = free + sum(image["size"] for image, _ in chosen)
        taken = {image["id"] for image, _ in chosen}
        for image in candidates:
            if gained >= min_free:
                break
            if image["id"] not in taken:
                chosen.append((image, SPACE))
                gained += image["size"]
    return chosen

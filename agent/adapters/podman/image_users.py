"""Whether a job's process runs as root of the agent's user namespace: its spec's user, else
its image's.

Rootless, that root is the agent's own uid, so such a job's /out can be a
plain directory of the agent's (agent/adapters/files.py): no volume to create
and remove through Podman. The image's configured user takes an image
inspect (about 8 ms, more than the volume create it saves), so the answer is
kept per image reference for ``USER_TTL`` seconds: a stream of jobs of one
image asks about once a minute. An answer gone stale (the tag now names an
image with another user) does no harm: run.py mounts the directory with
``:U``, so Podman hands it to whatever user the container has. Which /out a
job gets is the runtime's call (agent/runtime/launch.py); this module only
answers the question.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import NotFound, mapped

#: How long an image's configured user is trusted before it is asked again.
USER_TTL = 60.0
#: The most image references remembered (past it, all are forgotten at once).
MAX_IMAGES = 256
#: The names of uid 0 in a container's ``user`` (``USER`` of an image too).
ROOT_NAMES = ("", "0", "root")


def is_root_user(user: str) -> bool:
    """Whether ``user`` (``NAME``, ``UID``, ``NAME:GROUP``, ...) is uid 0; "" is the default,
    root. The group does not matter: what a job writes is owned by its uid."""
    return user.split(":", 1)[0].strip() in ROOT_NAMES


class ImageUsers(Connection):
    """``Podman.runs_as_root``, with its cache of images' users."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.monotonic, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._user_clock = clock
        self._users_lock = threading.Lock()
        #: image reference -> (runs as root, when asked on ``clock``).
        self._image_users: dict[str, tuple[bool, float]] = {}

    def runs_as_root(self, spec: dict[str, Any]) -> bool | None:
        """Whether the container of ``spec`` runs its command as root.

        Args:
            spec: the normalised job spec (``user``, ``image``).

        Returns:
            True or False; None when the spec sets no user and the image is
            not present yet (it is pulled at the create).

        Raises:
            PodmanUnavailable: Podman did not answer the image inspect.
        """
        if spec.get("user"):
            return is_root_user(str(spec["user"]))
        image = spec["image"]
        now = self._user_clock()
        with self._users_lock:
            known = self._image_users.get(image)
        if known is not None and now - known[1] < USER_TTL:
            return known[0]
        try:
            with mapped(f"inspect image {image}"):
                response = self.client.api.get(f"/images/{image}/json")
                response.raise_for_status()
        except NotFound:
            return None
        config = response.json().get("Config") or {}
        root = is_root_user(str(config.get("User") or ""))
        with self._users_lock:
            if len(self._image_users) >= MAX_IMAGES:
                self._image_users.clear()
            self._image_users[image] = (root, now)
        return root

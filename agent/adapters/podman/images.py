"""Images: whether one is present, and pulling one with the registry's own error.

Whether to pull (the spec's pull policy) is run.py's reading of the spec;
this module only does what it is asked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import mapped
from agent.protocol.errors import ImageError

log = logging.getLogger(__name__)

#: A pull may be silent for a long time between progress lines (large layers).
PULL_READ_TIMEOUT = 600.0


class Images(Connection):
    """The image calls of ``Podman``."""

    def image_exists(self, image: str) -> bool:
        """Whether ``image`` is present locally.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped(f"look up image {image}"):
            return bool(self.client.images.exists(image))

    def pull(self, image: str, on_pull: Callable[[str], None]) -> None:
        """Pull an image, raising ImageError with the registry's message on failure.

        The API answers a failed pull with 200 and an ``error`` line in its
        stream (podman-py's ``images.pull`` then returns an empty Image), so
        the stream is read here.

        Args:
            image: the reference to pull.
            on_pull: called with ``image`` before the pull begins.

        Raises:
            ImageError: the pull failed.
            PodmanUnavailable: Podman did not answer.
        """
        log.info("pulling image %s", image)
        on_pull(image)
        error, pulled = None, False
        with mapped(f"pull image {image}", ImageError):
            response = self.client.api.post(
                "/images/pull",
                params={"reference": image},
                stream=True,
                timeout=(self.timeout, max(self.timeout, PULL_READ_TIMEOUT)),
            )
            response.raise_for_status()
            for line in response.iter_lines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                error = item.get("error") or error
                pulled = pulled or bool(item.get("id") or item.get("images"))
        if error or not pulled:
            raise ImageError(f"could not pull image {image}: {error or 'Podman reported no image'}")

"""Images: whether one is present, and pulling one with the registry's own error.

Whether to pull (the spec's pull policy) is run.py's reading of the spec;
this module only does what it is asked. A pull has an overall deadline (a
registry may trickle progress for ever) and is watched from the caller's
thread, so the caller can give up on it (a cancel) while it is still streaming.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import Conflict, NotFound, mapped
from agent.protocol.errors import ImageError

log = logging.getLogger(__name__)

#: A pull may be silent for a long time between progress lines (large layers).
PULL_READ_TIMEOUT = 600.0
#: How often the caller's ``checkpoint`` is called while a pull streams.
PULL_POLL = 0.25


class PullTimeout(ImageError):
    """A pull took longer than its deadline (``pull_timeout``); worth retrying."""


class Images(Connection):
    """The image calls of ``Podman``."""

    def image_exists(self, image: str) -> bool:
        """Whether ``image`` is present locally.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped(f"look up image {image}"):
            return bool(self.client.images.exists(image))

    def list_images(self) -> list[dict]:
        """Every local image: ``id``, ``tags``, ``created`` (epoch seconds), ``size`` (bytes).

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped("list images"):
            images = self.client.images.list()
        return [
            {
                "id": image.id,
                "tags": list(image.attrs.get("Names") or image.tags or []),
                "created": float(image.attrs.get("Created") or 0),
                "size": int(image.attrs.get("Size") or 0),
            }
            for image in images
        ]

    def image_id(self, reference: str) -> str | None:
        """The ID of the local image ``reference`` names (None: not present)."""
        try:
            with mapped(f"look up image {reference}"):
                return self.client.images.get(reference).id
        except NotFound:
            return None

    def remove_image(self, image: dict) -> bool:
        """Remove an image of ``list_images`` by each of its names, never forced.

        An image some container (anyone's, any state) was made from is left alone,
        and, not forced, Podman refuses one that is the parent of another.

        Returns:
            Whether it is gone (False: a container uses it, or another image needs it).

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped(f"list the containers of image {image['id'][:12]}"):
            users = self.client.containers.list(all=True, filters={"ancestor": image["id"]})
        if users:  # untagging one name of several would succeed even then: ask first
            return False
        for name in image["tags"] or [image["id"]]:
            try:
                with mapped(f"remove image {name}"):
                    self.client.images.remove(name)
            except NotFound:
                continue
            except Conflict:
                return False
        return True

    def storage_free(self) -> int:
        """Bytes free on the file system of Podman's image store.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped("read its storage information"):
            root = self.client.info()["store"]["graphRoot"]
        stat = os.statvfs(root)
        return stat.f_bavail * stat.f_frsize

    def pull(
        self,
        image: str,
        on_pull: Callable[[str], None],
        *,
        timeout: float = PULL_READ_TIMEOUT,
        checkpoint: Callable[[], None] = lambda: None,
    ) -> None:
        """Pull an image, raising ImageError with the registry's message on failure.

        The pull streams on a thread of its own while this one calls
        ``checkpoint`` every ``PULL_POLL`` seconds and watches the deadline;
        a pull given up on ends by itself at its next line or read timeout.

        Args:
            image: the reference to pull.
            on_pull: called with ``image`` before the pull begins.
            timeout: the most seconds the whole pull may take.
            checkpoint: called while the pull runs; what it raises ends the
                wait (and is raised from here).

        Raises:
            ImageError: the pull failed (``PullTimeout``: took longer than ``timeout``).
            PodmanUnavailable: Podman did not answer.
        """
        log.info("pulling image %s", image)
        on_pull(image)
        deadline = time.monotonic() + timeout
        outcome: dict[str, object] = {}
        done = threading.Event()

        def stream() -> None:
            try:
                outcome["result"] = self._stream_pull(image, deadline)
            except Exception as exc:  # handed to the waiting thread, raised there
                outcome["raised"] = exc
            finally:
                done.set()

        threading.Thread(target=stream, name=f"pull {image}", daemon=True).start()
        while not done.wait(PULL_POLL):
            checkpoint()
            if time.monotonic() >= deadline:
                raise PullTimeout(
                    f"pulling image {image} took longer than pull_timeout ({timeout:g}s); "
                    "check the registry, or raise pull_timeout in choo-agent.toml(5)"
                )
        if "raised" in outcome:
            raise outcome["raised"]  # type: ignore[misc]
        error, pulled = outcome["result"]  # type: ignore[misc]
        if error or not pulled:
            raise ImageError(f"could not pull image {image}: {error or 'Podman reported no image'}")

    def _stream_pull(self, image: str, deadline: float) -> tuple[str | None, bool]:
        """Read a pull's stream until it ends or ``deadline`` (monotonic) passes.

        Returns:
            The stream's last error line (or None), and whether an image came.
        """
        # The API answers a failed pull with 200 and an ``error`` line in its
        # stream (podman-py's ``images.pull`` then returns an empty Image).
        error, pulled = None, False
        # Reads may wait past the deadline: the waiting thread ends the pull
        # there (as a PullTimeout), and this one ends soon after.
        silence = min(max(0.0, deadline - time.monotonic()) + self.timeout, PULL_READ_TIMEOUT)
        with mapped(f"pull image {image}", ImageError):
            response = self.client.api.post(
                "/images/pull",
                params={"reference": image},
                stream=True,
                timeout=(self.timeout, max(self.timeout, silence)),
            )
            try:
                response.raise_for_status()
                for line in response.iter_lines():
                    if time.monotonic() >= deadline:
                        break
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue
                    error = item.get("error") or error
                    pulled = pulled or bool(item.get("id") or item.get("images"))
            finally:
                response.close()
        return error, pulled

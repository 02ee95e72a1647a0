"""The image.prune use case: one pass of the image collector, on demand.

An admin's alone (the agent's user, root or a member of ``admin_groups``):
removing images touches what every user's jobs run. Which images go is
agent/rules/image_gc.py's, the removal runtime/image_gc.py's.
"""

from __future__ import annotations

from agent.api.peers import Peer
from agent.api.service import Service
from agent.protocol import types
from agent.protocol.errors import Unauthorized


def prune_images(service: Service, *, peer: Peer | None = None) -> types.ImagesPruned:
    """Remove the images the collector's rules choose, now.

    Raises:
        Unauthorized: ``peer`` is not an admin.
        PodmanUnavailable: Podman did not answer.
    """
    if not service.owners.is_admin(peer):
        raise Unauthorized(
            "only an admin (the agent's user, root or a member of admin_groups) may "
            "remove images: they are every user's"
        )
    assert service.image_gc is not None, "the agent wires an image collector"
    return service.image_gc.collect()

"""The Podman adapter: the only package that imports podman-py.

It turns a job into a labelled ``choo-<ID>`` container and reports what
Podman says about containers, mapping podman-py's exceptions to ours. It
never decides anything: what to create, stop or remove is the controller's
call. ``Podman`` is put together from one class per resource, as podman-py's
own ``domain/`` is:

* connection.py: the client, timeouts, Podman's version and enforced limits
* containers.py: ``ContainerState``; inspect, list, start, signal, stop, remove, events
* run.py: ``Hardening``; create and start the container of one attempt of a job
* volumes.py: a job's /out volume; images.py: presence and pulls;
  secrets.py: a job's secret values as Podman secrets
* names.py: names and labels; errors.py: podman-py's failures as choo errors
* scrub.py: ``Scrubber``, deleting what a job chowned to a subordinate uid
  through a throwaway container
"""

from __future__ import annotations

from agent.adapters.podman.containers import ContainerState
from agent.adapters.podman.images import PullTimeout
from agent.adapters.podman.names import (
    LABEL_AGENT,
    LABEL_ATTEMPT,
    LABEL_JOB,
    OUT_MOUNT,
    WORKSPACE_MOUNT,
    out_volume_name,
)
from agent.adapters.podman.run import Hardening, JobContainers

__all__ = [
    "LABEL_AGENT",
    "LABEL_ATTEMPT",
    "LABEL_JOB",
    "OUT_MOUNT",
    "WORKSPACE_MOUNT",
    "ContainerState",
    "Hardening",
    "Podman",
    "PullTimeout",
    "out_volume_name",
]


class Podman(JobContainers):
    """A thin, timeout-bounded client for one rootless Podman API service.

    Build it with the arguments of ``Connection``; its methods are those of
    ``JobContainers`` and the parts it is made of.
    """

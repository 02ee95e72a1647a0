"""Jobs and schedules as Kubernetes and Nomad see them (pure: a spec in, manifests out).

``export(source, ...)`` maps a normalised job spec (agent/protocol/spec.py),
and for a schedule its cron settings, onto a Kubernetes ``batch/v1`` Job,
CronJob or Pod (kubernetes.py) or a Nomad batch job in the API's JSON form
(nomad.py), field by field as chooctl(1)'s table says. What the target cannot
express is refused, naming the field and why, unless the caller accepts the
loss (``lossy``); then each loss is a warning, returned and written into the
manifest. Never reads the store, Podman or the clock: agent/api/export.py
finds what is exported and hands it over.
"""

from __future__ import annotations

from typing import Any

from agent.export import kubernetes, nomad
from agent.export.common import Exported, Hardening, Losses, Source
from agent.protocol.errors import InvalidParams
from agent.protocol.exports import DEFAULT_KIND, KINDS, KUBERNETES, NOMAD, TARGETS

__all__ = ["Exported", "Hardening", "Source", "export"]


def export(
    source: Source, *, to: Any, hardening: Hardening, kind: Any = None, lossy: Any = False
) -> Exported:
    """Map ``source`` onto ``to``'s manifests.

    Args:
        source: the normalised spec, and the job or schedule it comes from.
        to: "kubernetes" or "nomad".
        hardening: the agent's container settings every job runs under.
        kind: Kubernetes only: "job" (default; a CronJob for a schedule) or "pod".
        lossy: export what has no equivalent anyway, with a warning for each.

    Returns:
        The documents (one object each) and the warnings.

    Raises:
        InvalidParams: a bad ``to``, ``kind`` or ``lossy``, or (without
            ``lossy``) what ``to`` cannot express, each loss named.
    """
    if to not in TARGETS:
        raise InvalidParams(f"to: expected {' or '.join(TARGETS)}, got {to!r}")
    if not isinstance(lossy, bool):
        raise InvalidParams(f"lossy: expected true or false, got {lossy!r}")
    if to == NOMAD and kind is not None:
        raise InvalidParams("kind: only a Kubernetes export has kinds (job, pod)")
    kind = DEFAULT_KIND if kind is None else kind
    if kind not in KINDS:
        raise InvalidParams(f"kind: expected {' or '.join(KINDS)}, got {kind!r}")
    losses = Losses(to, lossy)
    if to == KUBERNETES:
        return kubernetes.manifests(source, hardening, losses, pod=kind == "pod")
    return nomad.manifests(source, hardening, losses)

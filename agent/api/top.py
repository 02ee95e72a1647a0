"""``job.top``: the starting and running jobs with what each uses now.

The jobs are those ``job.list`` shows the caller (the same rights: another
user's only while ``list_others`` is on); the figures come from the usage
sampler (``agent.runtime.usage``), as of its last look. Reads only.
"""

from __future__ import annotations

from agent.api.peers import Peer
from agent.api.service import MAX_LIST, Service
from agent.protocol import methods, types
from agent.protocol.states import State

_FIGURES = ("cpu_percent", "memory", "memory_peak", "cpu_seconds", "pids_peak")


def top(service: Service, *, peer: Peer | None = None) -> list[types.TopEntry]:
    """The running jobs the peer may see, oldest first, with their live usage.

    Args:
        service: the use cases (its listing and the sampler's figures).
        peer: who asks.

    Returns:
        One entry per starting or running job; a figure is None until the
        sampler has seen the job (cpu_percent after its second look).
    """
    params = methods.ListParams(state=[State.STARTING.value, State.RUNNING.value], limit=MAX_LIST)
    jobs = service.list(params, peer=peer)["jobs"]
    live = service.live_usage()
    entries: list[types.TopEntry] = []
    for job in reversed(jobs):
        figures = live.get(job["id"], {})
        entry = {
            "id": job["id"],
            "name": job["name"],
            "image": job["image"],
            "state": job["state"],
            "started_at": job["started_at"],
            **{key: figures.get(key) for key in _FIGURES},
            "sampled": figures.get("usage_sampled"),
        }
        entries.append(entry)
    return entries

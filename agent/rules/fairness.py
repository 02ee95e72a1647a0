"""Which connection gives way to a newcomer: the connection slots shared fairly between uids.

Pure: it chooses among the open connections (anything with ``uid``, ``busy``
and ``last_active``) and never closes one; agent/api/server.py applies the
choice under its slot lock.

The rules, in order:

1. A uid holds at most ``per_uid`` connections; the privileged uids (root, the
   agent's own user) are not capped. A uid at its cap makes room from its own
   idle connections only, and is refused when all of them are inside calls.
2. When all ``total`` slots are taken, the uid holding the most connections
   (more than the newcomer's uid; for a privileged newcomer, the unprivileged
   uid holding the most) gives one up: the longest-idle, or, when all of its
   connections are inside calls, the one that has been in its call longest.
   A newcomer whose uid holds as many as anyone makes room from its own idle
   connections, and is refused without one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from typing import Protocol


class Slot(Protocol):
    """What the choice needs of a connection."""

    uid: int
    busy: bool
    last_active: float


def victim(
    slots: Collection[Slot],
    uid: int,
    *,
    privileged: Iterable[int],
    per_uid: int,
    total: int,
) -> Slot | str | None:
    """The connection to close so that one of ``uid`` can be admitted.

    Returns:
        None when there is room; the connection to close; or a string saying
        why the newcomer is refused.
    """
    privileged = set(privileged)
    held = Counter(slot.uid for slot in slots)
    if uid not in privileged and held[uid] >= per_uid:
        own = _oldest(s for s in slots if s.uid == uid and not s.busy)
        return own or f"uid {uid} holds max_connections_per_uid ({per_uid}), all inside calls"
    if len(slots) < total:
        return None
    if uid in privileged:  # the reserve: any unprivileged uid gives way to it
        rivals, floor = {u: n for u, n in held.items() if u not in privileged}, 0
    else:
        rivals, floor = {u: n for u, n in held.items() if u != uid}, held[uid]
    heaviest, most = max(rivals.items(), key=lambda item: item[1], default=(None, 0))
    if heaviest is not None and most > floor:
        theirs = [s for s in slots if s.uid == heaviest]
        return _oldest(s for s in theirs if not s.busy) or _oldest(theirs)
    own = _oldest(s for s in slots if s.uid == uid and not s.busy)
    return own or f"all max_connections ({total}) are taken and uid {uid} holds as many as any"


def _oldest(slots: Iterable[Slot]) -> Slot | None:
    """The slot active longest ago (None if there is none)."""
    return min(slots, key=lambda slot: slot.last_active, default=None)

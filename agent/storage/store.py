"""The desired state: ``Store``, the one object the agent keeps its jobs and schedules in.

``Store`` is a facade put together from one class per concern, each in its
own module: ``Database`` (database.py: the file, its schema, the write
transaction), ``JobQueries`` (queries.py: reading jobs through indexes),
``Jobs`` (jobs.py: job transitions and removals, one transaction and one
event per state change), ``Schedules`` (schedules.py), ``ImageRefs``
(images.py: the images jobs and schedules refer to) and ``QueueControls``
(queue.py: pauses and runtime name limits). Callers
import ``Store`` and the names below from here only. The store never talks
to Podman.
"""

from __future__ import annotations

from agent.storage.database import EventSink
from agent.storage.images import ImageRefs
from agent.storage.jobs import Jobs
from agent.storage.models import SCHEMA_VERSION
from agent.storage.queue import QueueControls
from agent.storage.schedules import Schedules

__all__ = ["LOG_TAIL_LINES", "SCHEMA_VERSION", "EventSink", "Store"]

#: How many of a job's last output lines are kept in its record (``log_tail``).
LOG_TAIL_LINES = 100


class Store(Jobs, Schedules, ImageRefs, QueueControls):
    """The jobs database. Thread-safe: peewee keeps one connection per thread.

    Build it with ``Store(path, feed)`` and ``open()`` it; every method of
    ``Jobs`` and ``Schedules`` (and ``Database``'s life cycle) is its own.
    """

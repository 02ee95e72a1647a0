"""The watching use cases: job.wait and events.subscribe, and the cheap state watch.

A part of ``Service`` (agent/api/service.py), which it is mixed into. Both
block on the change feed (agent/runtime/changes.py) until what they wait for
happens, the time is up or the client hangs up; neither writes anything.
Events carry states, reasons and exit codes, never output or env values; who
sees which is decided with owners.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.api.checks import whole
from agent.api.owners import OWNER, Owners
from agent.api.peers import Peer
from agent.config import Config
from agent.protocol import methods, types
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams, NoSuchJob
from agent.protocol.states import TERMINAL
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store

#: The longest one job.wait or events.subscribe call blocks.
MAX_WAIT = 24 * 3600.0


class Watching:
    """job.wait and events.subscribe, over the service's store, feed and owners."""

    store: Store
    feed: ChangeFeed
    config: Config
    owners: Owners
    _visible: Callable[[str, Peer | None], dict[str, Any]]

    def wait(
        self,
        params: methods.WaitParams,
        closed: Callable[[], bool] = lambda: False,
        *,
        peer: Peer | None = None,
    ) -> types.Job:
        """Block until the job ends, ``timeout`` seconds pass or the client hangs
        up; return the job (as ``get`` shows it to ``peer``)."""
        full = self.store.resolve(params.id)
        self._visible(full, peer)
        timeout = params.timeout
        limit = MAX_WAIT if timeout is None else specs.parse_duration(timeout, "timeout")
        job = self._wait_until(
            full, lambda job: job["state"] in TERMINAL, min(limit, MAX_WAIT), closed
        )
        return self.owners.shown(peer, job)

    def subscribe(
        self,
        params: methods.SubscribeParams,
        *,
        emit: Callable[[types.Event], None],
        closed: Callable[[], bool] = lambda: False,
        peer: Peer | None = None,
    ) -> types.Subscribed:
        """Pass each job event committed from now on to ``emit``.

        Events carry states, reasons and exit codes, never output or env
        values, so ``peer`` gets those of others' jobs too, unless
        ``list_others`` is off: then only those of jobs it may touch.

        Ends when ``count`` events were sent, ``timeout`` seconds passed, or the
        client hung up; returns how many were sent and whether any were missed
        (a subscriber more than the feed's window behind).
        """
        name, timeout, count = params.name, params.timeout, params.count
        job_id = self.store.resolve(params.job) if params.job is not None else None
        if job_id is not None:
            self._visible(job_id, peer)
        if name is not None and not isinstance(name, str):
            raise InvalidParams("name: expected a string")
        if count is not None:
            whole(count, "count", 1)
        limit = MAX_WAIT if timeout is None else specs.parse_duration(timeout, "timeout")
        owners: dict[str, int | None] = {}  # job ID -> owner, as the stream meets them
        sent, missed = self.feed.relay(
            lambda event: (
                (job_id is None or event["job_id"] == job_id)
                and (name is None or event["name"] == name)
                and (self.config.list_others or self._event_visible(event, peer, owners))
            ),
            emit,
            deadline=time.monotonic() + limit,
            count=count,
            closed=closed,
        )
        return {"events": sent, "missed": missed}

    def _event_visible(
        self, event: types.Event, peer: Peer | None, owners: dict[str, int | None]
    ) -> bool:
        """Whether ``peer`` may see ``event`` with ``list_others`` off (owners: a cache)."""
        job_id = event["job_id"]
        if job_id not in owners:
            try:
                owners[job_id] = self.store.get(job_id)[OWNER]
            except NoSuchJob:  # removed: its last event says so, to admins only
                owners[job_id] = None
        return self.owners.may_touch(peer, owners[job_id])

    def _wait_until(
        self,
        job_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        closed: Callable[[], bool],
    ) -> dict[str, Any]:
        """The job's record once ``done(record)`` holds, ``timeout`` seconds pass or
        the client hangs up (looked at once a second).

        The record is read again only after an event of this job: the database
        is never read under the feed's lock, and other jobs' events wake no one.
        """
        deadline = time.monotonic() + timeout
        seq = self.feed.seq  # before the read: an event after it wakes the wait
        job = self.store.get(job_id)
        while not done(job) and not closed():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            newest = self.feed.wait_job(job_id, after=seq, timeout=min(remaining, 1.0))
            if newest is not None:
                seq = newest
                job = self.store.get(job_id)
        return job if done(job) else self.store.get(job_id)  # as it is now, if not done

    def _watch_state(self, job_id: str) -> Callable[[], str]:
        """A cheap ``state()`` that reads the database only after a new event."""
        seen = {"seq": -1, "state": None}

        def state() -> str:
            seq = self.feed.seq
            if seq != seen["seq"]:
                seen["seq"] = seq
                seen["state"] = self.store.get(job_id)["state"]
            return seen["state"]

        return state

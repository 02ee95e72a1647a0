"""The Podman event follower: a thread that wakes the loop on our containers' events.

The stream is only a hint (the loop is level-triggered): every (re)connect
wakes the loop for a full pass, which picks up anything that happened while
the stream was down; every event of ours wakes it too, or, given
``on_event``, is handed there (the loop acts on that event's job alone). A
broken stream is reopened with backoff, forever, until the agent stops.
Never reads or changes a job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.protocol.errors import PodmanUnavailable
from agent.runtime.ports import EventSource

log = logging.getLogger(__name__)

#: Seconds the stream may stay silent before it is reopened.
EVENT_READ_TIMEOUT = 300.0
#: The first and the longest pause before reopening a broken stream.
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class EventFollower:
    """Follows one event stream and wakes the loop.

    Args:
        source: the Podman connection whose ``events()`` to follow (one of its
            own: the stream holds it).
        wake: wakes the loop (for a full pass).
        on_event: takes each event instead of ``wake`` (None: each wakes).
        stopped: set when the agent stops; also what the backoff waits on, so
            a stop ends the wait at once.
    """

    def __init__(
        self,
        source: EventSource,
        *,
        wake: Callable[[], None],
        stopped: threading.Event,
        on_event: Callable[[dict], None] | None = None,
    ):
        self.source = source
        self.wake = wake
        self.on_event = on_event
        self.stopped = stopped
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Follow the stream on a daemon thread of its own."""
        self._thread = threading.Thread(target=self.follow, name="podman-events", daemon=True)
        self._thread.start()

    def follow(self) -> None:
        """Wake on every event; reopen a broken stream with backoff until stopped."""
        delay = FIRST_BACKOFF
        while not self.stopped.is_set():
            try:
                for event in self.source.events(EVENT_READ_TIMEOUT):
                    delay = FIRST_BACKOFF
                    if event.get("Status") == "died" or event.get("Action") == "died":
                        log.debug("container %s died", event.get("Actor", {}).get("ID", "?"))
                    if self.on_event is None:
                        self.wake()
                    else:
                        self.on_event(event)
                    if self.stopped.is_set():
                        return
            except PodmanUnavailable as exc:
                log.debug("event stream: %s", exc)
            except Exception:
                log.exception("event stream failed; reconnecting")
            self.wake()
            self.stopped.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF)

"""agent.runtime.podman_events: every event and every reconnect wakes the loop.

The follower runs on the test's thread; its backoff waits on a stop event the
test controls, so nothing really waits.
"""

from __future__ import annotations

import threading

from agent.protocol.errors import PodmanUnavailable
from agent.runtime.podman_events import FIRST_BACKOFF, MAX_BACKOFF, EventFollower


class Stopped(threading.Event):
    """A stop event whose waits return at once; it is set after ``rounds`` waits."""

    def __init__(self, rounds: int):
        super().__init__()
        self.rounds = rounds
        self.waits: list[float] = []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) >= self.rounds:
            self.set()
        return self.is_set()


class Source:
    """Plays one script per connection: a list of events, then an exception (or None)."""

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.opened = 0

    def events(self, read_timeout):
        self.opened += 1
        events, error = self.scripts.pop(0) if self.scripts else ([], None)
        yield from events
        if error is not None:
            raise error


def follow(source, rounds):
    wakes: list[None] = []
    stopped = Stopped(rounds)
    EventFollower(source, wake=lambda: wakes.append(None), stopped=stopped).follow()
    return len(wakes), stopped.waits


def test_each_event_and_each_reconnect_wakes_the_loop():
    died = {"Status": "died", "Actor": {"ID": "c1"}}
    source = Source(([died, {"Action": "start"}], None), ([died], PodmanUnavailable("gone")))
    wakes, waits = follow(source, rounds=2)
    assert source.opened == 2
    assert wakes == 2 + 1 + 1 + 1  # two events, a reconnect, an event, a reconnect
    # A stream that delivered events starts its backoff over.
    assert waits == [FIRST_BACKOFF, FIRST_BACKOFF]


def test_a_broken_stream_is_reopened_with_doubling_backoff_up_to_the_cap():
    failures = [([], PodmanUnavailable("down"))] * 3 + [([], RuntimeError("bug"))] * 8
    wakes, waits = follow(Source(*failures), rounds=len(failures))
    assert wakes == len(failures)
    assert waits[:4] == [FIRST_BACKOFF, 2 * FIRST_BACKOFF, 4 * FIRST_BACKOFF, 8 * FIRST_BACKOFF]
    assert max(waits) == MAX_BACKOFF and waits[-1] == MAX_BACKOFF


def test_a_stop_ends_the_stream_at_the_next_event():
    stopped = threading.Event()
    wakes: list[None] = []

    class Endless:
        def events(self, read_timeout):
            while True:
                stopped.set()  # the agent stops while the stream is open
                yield {"Status": "died"}

    EventFollower(Endless(), wake=lambda: wakes.append(None), stopped=stopped).follow()
    assert len(wakes) == 1


def test_with_on_event_each_event_goes_there_and_only_a_reconnect_wakes():
    died = {"Status": "died", "Actor": {"ID": "c1"}}
    source = Source(([died, {"Action": "start"}], PodmanUnavailable("gone")))
    wakes, events = [], []
    EventFollower(
        source, wake=lambda: wakes.append(None), stopped=Stopped(1), on_event=events.append
    ).follow()
    assert events == [died, {"Action": "start"}]
    assert len(wakes) == 1  # the reconnect: events may have been missed meanwhile

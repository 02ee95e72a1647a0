"""A thread pool whose shutdown waits a bounded time: a hung call cannot hold the agent's exit.

``concurrent.futures.ThreadPoolExecutor`` waits for its work at shutdown and
again at interpreter exit, however long it takes: one image pull from a
trickling registry, or a Podman call that never answers, would hold SIGTERM
for good. ``BoundedPool`` lets the work queued and in flight go on for at
most its ``grace``, and runs on daemon threads, so what is still running (or
not yet begun) after that ends with the process; the next start's recovery
pass picks up from there, as after a crash. It runs what it is given and
decides nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

log = logging.getLogger(__name__)

_Item = tuple[Future, Callable[..., Any], tuple, dict] | None


class BoundedPool(Executor):
    """Up to ``max_workers`` daemon threads; ``shutdown`` waits at most ``grace`` seconds.

    Args:
        max_workers: the most threads (started as work arrives).
        grace: the longest ``shutdown(wait=True)`` waits for work in flight.
        name: the threads' name prefix.
        idle: called on a thread each time it is free again (the agent gives
            back the thread's database connection: fifty threads waiting need none).
    """

    def __init__(
        self,
        max_workers: int,
        *,
        grace: float,
        name: str = "pool",
        idle: Callable[[], None] = lambda: None,
    ):
        self.max_workers = max_workers
        self.grace = grace
        self.name = name
        self.idle = idle
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Released by a thread each time it is free again, as ThreadPoolExecutor does.
        self._idle = threading.Semaphore(0)
        self._closed = False
        #: Work submitted and not yet done (queued or running).
        self._pending: set[Future] = set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a pool thread.

        Raises:
            RuntimeError: the pool is shut down.
        """
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: cannot take work after shutdown")
            self._pending.add(future)
            future.add_done_callback(self._done)
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(timeout=0) and len(self._threads) < self.max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work, and wait at most ``grace`` for the work queued and in flight.

        Args:
            wait: wait (bounded) for the work.
            cancel_futures: drop the work not yet begun instead.
        """
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            for future in list(self._pending):
                future.cancel()  # a running one is not cancelled
        for _ in threads:
            self._queue.put(None)
        if not wait:
            return
        deadline = time.monotonic() + self.grace
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self.unfinished()
        if left:
            log.warning(
                "%s: %d piece(s) of work still running after %.0fs; left to end with the "
                "process (the next start picks up from there)",
                self.name,
                left,
                self.grace,
            )

    def unfinished(self) -> int:
        """How many pieces of work are still queued or running."""
        with self._lock:
            return len(self._pending)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            try:
                self.idle()
            except Exception:  # the thread must go on taking work
                log.exception("%s: a free thread could not give back what it held", self.name)
            self._idle.release()

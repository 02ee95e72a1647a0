"""The notifier: a thread of its own that delivers the outbox's pending notifications.

Deliveries were written by the store in the transaction of each job's end
(storage/notifications.py); this worker tries each when due, one at a time,
marks it delivered, or schedules the next try with a doubling delay, and
after ``notify_max_tries`` leaves it ``failed`` with its last error. After a
restart it simply carries on from the table, so a delivery is made at least
once; every try carries the same idempotency key. It never touches a job's
state and never blocks the controller: a slow target delays only other
deliveries, by at most its ``timeout``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from agent.adapters import hook, webhook
from agent.adapters.secrets import Credentials
from agent.adapters.webhook import DeliveryFailed
from agent.config import Config
from agent.rules.notify import retry_delay
from agent.rules.ownership import withheld
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: Longest wait between looks at the outbox (a stop is noticed within it too).
MAX_SLEEP = 1.0


class Notifier:
    """Delivers pending notifications; ``start()`` it, ``stop()`` it."""

    def __init__(self, store: Store, feed: ChangeFeed, config: Config, credentials: Credentials):
        self.store = store
        self.feed = feed
        self.config = config
        self.credentials = credentials
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop after the try in progress (at most ``timeout`` seconds are waited)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Deliver what is due, then sleep until the next is due or a job event comes."""
        seq = self.feed.seq
        while not self._stopping.is_set():
            try:
                self.deliver_due()
                due = self.store.next_notification_at()
            except Exception:  # the database may be what fails: try again later
                log.exception("notifier: cannot read the outbox; trying again")
                due = None
            wait = MAX_SLEEP if due is None else min(MAX_SLEEP, max(0.0, due - time.time()))
            seq = self.feed.wait_after(seq, wait)

    def deliver_due(self) -> int:
        """Try every delivery due now, once each.

        Returns:
            How many were tried.
        """
        due = self.store.due_notifications(time.time())
        for delivery in due:
            if self._stopping.is_set():
                break
            self._try(delivery)
        return len(due)

    def _try(self, delivery: dict[str, Any]) -> None:
        job_id, name = delivery["job"]["id"], delivery["target"]
        try:
            self._send(delivery)
        except DeliveryFailed as exc:
            tries = delivery["tries"] + 1
            final = tries >= self.config.notify_max_tries
            retry_at = None
            if not final:
                delay = retry_delay(
                    tries, self.config.notify_backoff_base, self.config.notify_backoff_cap
                )
                retry_at = time.time() + delay
            self.store.notification_tried(delivery["id"], error=str(exc), retry_at=retry_at)
            if final:
                log.error(
                    "job %s: notification to %s failed after %d tries: %s", job_id, name, tries, exc
                )
            else:
                log.warning(
                    "job %s: notification to %s failed (try %d): %s; next try in %.0fs",
                    job_id,
                    name,
                    tries,
                    exc,
                    delay,
                )
            return
        self.store.notification_tried(delivery["id"], error=None, retry_at=None)
        log.info("job %s: notified %s (%s)", job_id, name, delivery["event"])

    def _send(self, delivery: dict[str, Any]) -> None:
        """One try. Raises DeliveryFailed saying why it did not deliver."""
        name = delivery["target"]
        target = self.config.notify_targets.get(name)
        if target is None:
            raise DeliveryFailed(
                f"no notify target named {name!r} in the config (notify_targets); "
                "add it and reload the agent"
            )
        job = withheld(delivery["job"])  # receivers see what a non-owner sees
        body = json.dumps(job, sort_keys=True).encode()
        if target["kind"] == "command":
            hook.run(
                target["command"],
                job,
                body,
                event=delivery["event"],
                key=delivery["key"],
                timeout=target["timeout"],
            )
            return
        key = None
        if target["secret"] is not None:
            key = self.credentials.resolve([target["secret"]], job["id"]).get(target["secret"])
            if key is None:
                raise DeliveryFailed(
                    f"the signing credential {target['secret']} is not in the agent's "
                    "credential source ($CREDENTIALS_DIRECTORY or secret_env)"
                )
        webhook.post(
            target["webhook"],
            body,
            key=key,
            idempotency_key=delivery["key"],
            timeout=target["timeout"],
        )

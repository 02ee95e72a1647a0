"""``choo-agent``: the composition root.

Builds every object from the configuration and hands each its
collaborators, runs the recovery pass before reporting ready, reloads and
shuts down, and owns sd_notify. Nothing else in the agent is global. The
command line, signals and exit statuses are agent/entry.py's.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent import config as configuration
from agent.adapters.files import JobFiles
from agent.adapters.joblogs import JobLogs
from agent.adapters.journal import JournalWriter
from agent.adapters.podman import Podman
from agent.adapters.podman.exits import ExitFiles, default_exits_dir
from agent.adapters.podman.scrub import ROOTFS_DIR, Scrubber
from agent.adapters.podman_service import PodmanService, answers, default_url
from agent.adapters.proc_usage import ProcReader
from agent.adapters.secrets import Credentials
from agent.adapters.start_clock import StartClock
from agent.adapters.systemd import Notifier
from agent.api.listener import activated_socket, bind, socket_identity, unlink_if_ours
from agent.api.schedules import Schedules
from agent.api.server import Server
from agent.api.service import Service
from agent.protocol.errors import ChooError
from agent.protocol.states import State
from agent.rules import notify as notify_rules
from agent.runtime.changes import ChangeFeed
from agent.runtime.controller import SPARE_WORKERS, Controller
from agent.runtime.image_gc import ImageCollector
from agent.runtime.notifier import Notifier as Deliveries
from agent.runtime.output_wakes import OutputWakes
from agent.runtime.pool import BoundedPool
from agent.runtime.scheduler import MAX_SLEEP, Scheduler
from agent.runtime.shipped_mark import SHIPPED_MARK
from agent.runtime.shipper import Shipper
from agent.runtime.shutdown import remove_ended_out_dirs, stop_running_jobs
from agent.runtime.usage import UsageSampler, running_job_ids
from agent.storage.store import Store

if TYPE_CHECKING:
    from agent.api.metrics import TextfileWriter

log = logging.getLogger("choo-agent")

#: How long a stopping agent lets calls in flight finish (a long poll is cut).
SHUTDOWN_GRACE = 2.0
#: How long a stopping agent waits for Podman work in flight (a pull, a
#: create); past it the work ends with the process, and the next start's
#: recovery pass picks up from there, as after a crash.
WORK_GRACE = 10.0


class Agent:
    """Every long-lived object of one agent process, wired together."""

    def __init__(
        self,
        config: configuration.Config,
        config_path: Path | None,
        overrides: dict,
        *,
        clock: StartClock | None = None,
    ):
        self.config = config
        self.clock = clock or StartClock()
        self.config_path = config_path
        self.overrides = overrides
        self.notifier = Notifier()
        self.feed = ChangeFeed()
        self.store = Store(config.database, self.feed)
        # A job's end writes its notifications in its own transaction, by the
        # rules of the configuration of the moment (a reload applies at once).
        self.store.notify_plan = lambda job: notify_rules.plan(job, self.config.notify)
        self.deliveries = Deliveries(self.store, self.feed, config, Credentials(config))
        self.files = JobFiles(config.state_dir, config)
        self.logs = JobLogs(config.state_dir / "logs")
        # The controller is made in start(); the shipper only wakes it once running.
        self.shipper = Shipper(
            self.store,
            self.feed,
            self.logs,
            JournalWriter(),
            config=config,
            wake=lambda: self.controller.wake(),
            mark=config.state_dir / SHIPPED_MARK,
        )
        self.wakes = OutputWakes(self.feed)
        self.podman_service: PodmanService | None = None
        self.sock: socket.socket | None = None
        self.bound_path: Path | None = None

    def start(self) -> None:
        """Open everything, recover, listen. Raises ChooError/OSError on failure."""
        self.notifier.status("starting: opening the database")
        self.store.open()
        self.clock.mark("database")
        url = self.config.podman_url or default_url()
        self.notifier.status(f"starting: connecting to Podman at {url}")
        if self.config.podman_url:
            if not answers(url):
                raise ChooError(f"nothing answers at podman_url {url}; is the Podman service up?")
        else:
            self.podman_service = PodmanService(
                url,
                self.config.state_dir,
                runtime=self.config.runtime,
                log_level=self.config.podman_log_level,
            )
            self.podman_service.ensure()
        options = dict(
            agent_id=self.store.agent_id,
            timeout=self.config.podman_timeout,
            runtime=self.config.runtime,
            init=self.config.container_init,
            ulimits=self.config.ulimits,
        )
        self.podman = Podman(url, **options)
        self._cache_limits()
        self.podman_version = self.podman.version()
        self.podman.ask_resource_limits()  # agent.info's; the start does not wait for it
        self.clock.mark("podman")
        self.files.out.choose(url)  # host directories only where Podman sees them
        # Files chowned to a subordinate uid go in a throwaway container (a dead agent's first).
        self.scrubber = Scrubber(self.podman, self.config.state_dir / ROOTFS_DIR)
        self.files.unshare = self.scrubber.remove
        self.scrubber.sweep()
        self.clock.mark("scrub sweep")
        self.controller = Controller(
            self.store,
            self.podman,
            Podman(url, **options),
            self.logs,
            self.config,
            on_tick=self._tick,
            on_podman_down=self._revive_podman,
            files=self.files,
            executor=BoundedPool(
                self.config.max_concurrent + SPARE_WORKERS,
                grace=WORK_GRACE,
                name="podman",
                idle=self.store.release_thread,
            ),
            exit_files=ExitFiles(default_exits_dir()),
        )
        self.usage = UsageSampler(
            ProcReader(), lambda: running_job_ids(self.store), lambda: self.config.usage_interval
        )
        self.controller.finisher.usage = self.usage.take
        self.image_gc = ImageCollector(self.store, Podman(url, **options), self.config)
        if self.notifier.watchdog_interval:
            self.controller.tick_interval = min(5.0, self.notifier.watchdog_interval / 2)
        self.service = Service(
            self.store,
            self.feed,
            self.logs,
            self.config,
            wake=self.controller.wake,
            status=self._status,
            files=self.files,
            live_usage=self.usage.live,
            image_gc=self.image_gc,
            caches=self.podman,
            wakes=self.wakes,
        )
        self.textfile = self._metrics_outputs()
        clock, max_sleep = schedule_clock()
        self.scheduler = Scheduler(
            self.store,
            self.service,
            self.config,
            files=self.files,
            clock=clock,
            max_sleep=max_sleep,
        )
        schedules = Schedules(self.store, self.scheduler, self.service)
        self.sock = activated_socket()
        if self.sock is None:
            self.sock = bind(self.config.socket, self.config.socket_group)
            self.bound_path = self.config.socket
            self.sock_identity = socket_identity(self.bound_path)
        self.server = Server(self.sock, self.service, schedules, self.config)
        self.clock.mark("services and socket")
        # The recovery pass: adopt what happened while the agent was down before
        # READY. Its ends' removals wait: they would compete with its records.
        self.notifier.status("starting: recovery pass")
        self.controller.hold_cleanups()
        self.controller.reconcile_safely(admit=False)
        self.clock.mark("recovery pass")
        # READY waits, within reason, for the pool to record the ends it handed
        # out. Queued jobs are started by the loop's first pass, after READY.
        if not self.controller.settle(self.config.podman_timeout):
            log.info("recovery still busy after %.0fs; ready anyway", self.config.podman_timeout)
        self.clock.mark("recorded ends")
        self.controller.start_event_stream()
        threading.Thread(target=self.server.serve_forever, name="server", daemon=True).start()
        self.notifier.ready(self._status_line())
        self.clock.mark("serving")
        # The rest starts once READY is out. The held removals go to the pool
        # before the loop (or a call) can act on their jobs again.
        self.controller.release_cleanups()
        self.controller_thread = threading.Thread(
            target=self.controller.run, name="controller", daemon=True
        )
        self.controller_thread.start()
        # Fires missed while the agent was down are caught up by its first pass.
        self.scheduler_thread = threading.Thread(
            target=self.scheduler.run, name="scheduler", daemon=True
        )
        self.scheduler_thread.start()
        # Job output to the journal: it first finds where each copy left off.
        self.shipper.start()
        self.wakes.start()
        self.usage.start()
        if self.textfile is not None:
            self.textfile.start()
        # Notifications still pending from before a restart go out first.
        self.deliveries.start()
        self.image_gc.start()
        self.service.start_leftover_sweep()  # folders a removal left when the agent died
        # What the start built lives as long as the agent: out of the collector's
        # passes from now on (agent/__main__.py turned it off).
        gc.freeze()
        gc.enable()
        log.info(
            "choo-agent %s ready in %s: socket %s, Podman %s at %s",
            __version__,
            self.clock.summary(),
            self.config.socket if self.bound_path else "(socket activation)",
            self.podman_version,
            url,
        )

    def _metrics_outputs(self) -> TextfileWriter | None:
        """Start the configured metrics listener; return the textfile writer, if any.

        prometheus_client is imported only when one is configured: it is a
        good part of the agent's start (``agent.metrics`` imports it on its
        first call).
        """
        if not (self.config.metrics_textfile or self.config.metrics_listen):
            return None
        from agent.api import metrics  # noqa: PLC0415

        registry = metrics.registry(self.store, lambda: self.controller.degraded)
        if self.config.metrics_listen:
            metrics.listen(
                self.config.metrics_listen,
                registry,
                public=self.config.metrics_listen_public,
            )
        if not self.config.metrics_textfile:
            return None
        return metrics.TextfileWriter(
            Path(self.config.metrics_textfile).expanduser(),
            registry,
            lambda: self.config.metrics_interval,
        )

    def _cache_limits(self) -> None:
        self.podman.cache_max_bytes = self.config.cache_max_bytes
        self.podman.cache_max_age = self.config.cache_max_age

    def _status(self) -> dict:
        return {
            "podman": {
                "url": self.podman.url,
                "version": self.podman_version,
                "resource_limits": self.podman.resource_limits(),
                "out": self.files.out.info(),
            },
            "degraded": self.controller.degraded,
        }

    def _status_line(self) -> str:
        counts = self.store.counts()
        active = counts[State.RUNNING] + counts[State.STARTING]
        line = f"{active} running, {counts[State.QUEUED]} queued"
        paused = self.store.queue_control().summary()
        if paused:
            line += f"; {paused}"
        if self.controller.degraded:
            line += f"; degraded: {self.controller.degraded}"
        return line

    def _tick(self) -> None:
        self.notifier.pet()
        try:
            line = self._status_line()
        except Exception:  # the database may be what fails: say why without its counts
            line = f"degraded: {self.controller.degraded or 'the job counts cannot be read'}"
        self.notifier.status(line)

    def _revive_podman(self) -> None:
        """With no podman_url configured, run our own Podman service when none answers."""
        if self.podman_service is None:
            return
        try:
            self.podman_service.ensure()
        except ChooError as exc:
            log.error("%s", exc.message)

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            fresh = configuration.load(self.config_path, self.overrides)
        except ChooError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc.message)
        else:
            changed = []
            for key in sorted(configuration.RELOADABLE):
                if getattr(fresh, key) != getattr(self.config, key):
                    setattr(self.config, key, getattr(fresh, key))
                    changed.append(key)
            self.podman.ulimits = self.config.ulimits
            self._cache_limits()
            self.podman.runtime = self.config.runtime
            logging.getLogger().setLevel(self.config.log_level.upper())
            log.info("configuration reloaded; changed: %s", ", ".join(changed) or "nothing")
            self.controller.wake()
        self.notifier.ready(self._status_line())

    def shutdown(self) -> None:
        """Stop accepting, let calls in flight answer, then close down in order.

        Bounded in time, step by step: calls in flight get ``SHUTDOWN_GRACE``,
        the loop's pass in progress ``podman_timeout`` + 5 s, Podman work in
        flight (a pull, a create) ``WORK_GRACE``. Running containers are left
        alone (the next start adopts them) unless ``stop_containers_on_exit``
        is set: then they are all stopped at once and their jobs end
        ``cancelled``/``shutdown`` (runtime/shutdown.py has that bound).
        """
        self.notifier.stopping()
        log.info("stopping")
        self.server.stop(grace=SHUTDOWN_GRACE)
        self.scheduler.stop()
        self.image_gc.stop()
        self.scheduler_thread.join(self.config.podman_timeout + 5)
        self.controller.stop()
        # A pass in progress finishes before the database closes under it.
        self.controller_thread.join(self.config.podman_timeout + 5)
        if self.config.stop_containers_on_exit:
            try:
                stop_running_jobs(
                    self.store,
                    self.podman,
                    self.controller.finisher,
                    clock=time.time,
                    podman_timeout=self.config.podman_timeout,
                    extend=self.notifier.extend_timeout,
                )
            except ChooError as exc:
                log.error("could not stop the running jobs: %s; the next start adopts them", exc)
        remove_ended_out_dirs(self.store, self.files, self.config)  # what a cut cleanup left
        if self.bound_path is not None:
            unlink_if_ours(self.bound_path, self.sock_identity)
        if self.podman_service is not None:
            self.podman_service.stop()
        self.shipper.stop()
        self.wakes.stop()
        self.usage.stop()
        if self.textfile is not None:
            self.textfile.stop()
        self.deliveries.stop(timeout=WORK_GRACE)
        self.store.close()


def schedule_clock() -> tuple[Callable[[], float], float]:
    """The schedules' clock, and the scheduler's longest sleep.

    For tests only, ``CHOO_CLOCK_OFFSET_FILE`` names a file holding a number of
    seconds added to the time the schedules see, re-read at every look; the
    scheduler then looks every quarter second, so a test moves time by
    rewriting the file. Missing or unreadable, the offset is 0.
    """
    path = os.environ.get("CHOO_CLOCK_OFFSET_FILE")
    if not path:
        return time.time, MAX_SLEEP

    def clock() -> float:
        try:
            return time.time() + float(Path(path).read_text().strip() or 0)
        except (OSError, ValueError):
            return time.time()

    log.warning("schedules run on a test clock (CHOO_CLOCK_OFFSET_FILE=%s)", path)
    return clock, 0.25

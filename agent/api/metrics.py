"""The agent's metrics in the Prometheus text format, and the ways out for them.

``Collector`` turns the database's tally (storage/tally.py: counters kept by
triggers, so they survive restarts and prunes), the jobs queued and running
by name and the daemon's status into metric families; prometheus_client
formats them. Three ways out: ``agent.metrics`` over the socket (``render``),
``metrics_textfile`` rewritten atomically every ``metrics_interval`` for
node_exporter's textfile collector (``TextfileWriter``), and the opt-in
``metrics_listen`` HTTP endpoint (``listen``). Reads only; never counts
anything in process memory.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as _Collector
from prometheus_client.utils import floatToGoString

from agent import __version__
from agent.protocol.errors import ChooError
from agent.storage.store import Store
from agent.storage.tally import HISTOGRAM_BUCKETS

log = logging.getLogger(__name__)

#: Every metric's name starts so.
PREFIX = "choo_"
#: counter tally -> (metric name without ``_total``, help, its labels).
COUNTERS = {
    "jobs_submitted": ("jobs_submitted", "Jobs accepted into the queue.", ()),
    "attempts_started": ("jobs_started", "Attempts started (a retry is one more).", ()),
    "jobs_ended": ("jobs_ended", "Jobs ended, by final state and reason.", ("state", "reason")),
    "retries": ("job_retries", "Attempts that were retries of a failed one.", ()),
    "log_bytes": ("log_bytes", "Bytes of job output copied to the journal.", ()),
    "schedule_fires": ("schedule_fires", "Jobs made by a schedule.", ("schedule",)),
    "schedule_catch_ups": (
        "schedule_catch_ups",
        "Schedule runs made for fires missed while the agent was down.",
        ("schedule",),
    ),
    "schedule_skips": (
        "schedule_skips",
        "Schedule fires skipped (concurrency, queue full, missed without catch_up, suspended).",
        ("schedule",),
    ),
}
HISTOGRAMS = {
    "queue_wait_seconds": "Seconds an attempt waited for a slot once its job was due.",
    "run_seconds": "Seconds from an attempt's start to its end.",
}
LAST_SUCCESS = {
    "last_success": ("last_success_timestamp_seconds", "name"),
    "schedule_last_success": ("schedule_last_success_timestamp_seconds", "schedule"),
}


class Collector(_Collector):
    """The agent's metric families, read afresh at each collection.

    Args:
        store: the jobs database.
        degraded: why the agent is degraded (Podman unreachable...), or None.
    """

    def __init__(self, store: Store, degraded: Callable[[], str | None]):
        self.store = store
        self.degraded = degraded

    def collect(self) -> Iterator[Metric]:
        """Every family (prometheus_client calls this at each exposition)."""
        tallies: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for name, labels, value in self.store.tallies():
            tallies[name].append((labels, value))
        for tally, (name, text, label_names) in COUNTERS.items():
            family = CounterMetricFamily(PREFIX + name, text, labels=label_names)
            rows = tallies.get(tally) or ([] if label_names else [({}, 0.0)])
            for labels, value in sorted(rows, key=lambda row: sorted(row[0].items())):
                family.add_metric([labels.get(label, "") for label in label_names], value)
            yield family
        for tally, text in HISTOGRAMS.items():
            yield _histogram(tally, text, tallies)
        for tally, (name, label) in LAST_SUCCESS.items():
            family = GaugeMetricFamily(
                PREFIX + name, f"When a job of each {label} last succeeded.", labels=[label]
            )
            for labels, value in sorted(tallies.get(tally, []), key=lambda row: str(row[0])):
                family.add_metric([labels.get(label, "")], value)
            yield family
        jobs = GaugeMetricFamily(
            PREFIX + "jobs", "Jobs queued, starting or running, by name.", labels=["state", "name"]
        )
        for state, name, count in sorted(self.store.active_by_name(), key=str):
            jobs.add_metric([state, name or ""], count)
        yield jobs
        yield GaugeMetricFamily(
            PREFIX + "podman_degraded",
            "1 while the agent cannot reach Podman (or is otherwise degraded).",
            value=1 if self.degraded() else 0,
        )
        info = InfoMetricFamily(PREFIX + "build", "The agent's version.")
        info.add_metric([], {"version": __version__})
        yield info


def _histogram(tally: str, text: str, tallies: dict[str, list[tuple[dict, float]]]) -> Metric:
    """A histogram of every bucket (one never reached is a row the tally lacks: 0)."""
    counts = {labels["le"]: value for labels, value in tallies.get(f"{tally}_bucket", [])}
    buckets = [
        (floatToGoString(bound), counts.get(f"{bound:g}", 0.0)) for bound in HISTOGRAM_BUCKETS
    ]
    buckets.append(("+Inf", counts.get("+Inf", 0.0)))
    total = sum(value for _, value in tallies.get(f"{tally}_sum", []))
    return HistogramMetricFamily(PREFIX + tally, text, buckets=buckets, sum_value=total)


def registry(store: Store, degraded: Callable[[], str | None]) -> CollectorRegistry:
    """A registry of the agent's metrics alone (no process or platform collectors)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(Collector(store, degraded))
    return found


def render(store: Store, status: Callable[[], dict[str, Any]]) -> str:
    """``agent.metrics``: the metrics, as Prometheus text (format 0.0.4).

    Args:
        store: the jobs database.
        status: the daemon's status (its ``degraded``).
    """
    return generate_latest(registry(store, lambda: status().get("degraded"))).decode()


class TextfileWriter:
    """Rewrites ``metrics_textfile`` every ``metrics_interval``: written beside
    it and renamed over it, so a reader never sees half a file.

    Args:
        path: the file (node_exporter's textfile collector reads ``*.prom``).
        source: the registry to write.
        interval: seconds between writes, read at each one.
    """

    def __init__(self, path: Path, source: CollectorRegistry, interval: Callable[[], float]):
        self.path = path
        self.source = source
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-textfile", daemon=True)

    def write(self) -> None:
        """Write the file once."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_bytes(generate_latest(self.source))
        tmp.replace(self.path)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write the file a last time, so what the agent
        counted up to its stop is on disk (a write in flight may have read the
        registry before the last change)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
            self._write_logged()

    def _run(self) -> None:
        while True:
            self._write_logged()
            if self._stop.wait(self.interval()):
                return

    def _write_logged(self) -> None:
        try:
            self.write()
        except Exception as exc:
            # A full disk or a removed directory: say so, try again later.
            log.warning("could not write metrics_textfile %s: %s", self.path, exc)


def listen(address: str, source: CollectorRegistry, *, public: bool) -> None:
    """Serve ``/metrics`` over HTTP on ``metrics_listen`` (a thread of its own).

    Args:
        address: ``PORT`` (on 127.0.0.1) or ``HOST:PORT``.
        source: the registry to serve.
        public: whether a non-loopback host is allowed (``metrics_listen_public``).

    Raises:
        ChooError: a bad address, a non-loopback one without ``public``, or a
            port that cannot be bound.
    """
    host, port = parse_listen(address)
    if not public and not ipaddress.ip_address(host).is_loopback:
        raise ChooError(
            f"metrics_listen {address!r} is not a loopback address; set "
            "metrics_listen_public = true to serve metrics to other hosts"
        )
    try:
        start_http_server(port, addr=host, registry=source)
    except OSError as exc:
        raise ChooError(f"metrics_listen {address!r}: {exc.strerror or exc}") from None


def parse_listen(address: str) -> tuple[str, int]:
    """``"9464"`` -> ``("127.0.0.1", 9464)``; ``"[::1]:9464"``, ``"0.0.0.0:9464"``.

    Raises:
        ChooError: not a port, or not an IP address and port.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ChooError(
            f"metrics_listen {address!r}: expected PORT or IP:PORT, like 9464 or 127.0.0.1:9464"
        ) from None
    if not 0 < number < 65536:
        raise ChooError(f"metrics_listen {address!r}: port must be 1 to 65535")
    return host, number

"""The metrics: counters from the database's tally (through restarts and prunes),
gauges by name, histograms, parsed back by prometheus_client's own parser."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.api import metrics
from agent.protocol import spec as specs
from agent.protocol.errors import ChooError
from agent.protocol.states import State
from agent.runtime.changes import ChangeFeed
from agent.storage.store import Store


def samples(text):
    """{(sample name, sorted labels): value} of a text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def open_store(path):
    store = Store(path, ChangeFeed())
    store.open()
    return store


def run(store, name, end, *, reason=None, retry=False, schedule=None):
    job = store.add_job(
        specs.normalize({"image": "alpine", "command": ["true"], "name": name}),
        trigger="rpc",
        queue_limit=100,
        fields={"schedule": schedule} if schedule else None,
    )
    store.transition(job["id"], State.STARTING, new_attempt="rpc")
    store.transition(job["id"], State.RUNNING)
    if retry:
        store.transition(job["id"], State.QUEUED, attempt_fields={"ended_at": 1e12})
        store.transition(job["id"], State.STARTING, new_attempt="retry")
        store.transition(job["id"], State.RUNNING)
    store.transition(job["id"], end, reason=reason, attempt_fields={"ended_at": 1e12})
    return job["id"]


def test_counters_gauges_and_histograms_survive_a_reopen_and_a_prune(tmp_path):
    path = tmp_path / "state" / "choo.db"
    store = open_store(path)
    ok = run(store, "build", State.SUCCEEDED)
    run(store, "build", State.FAILED, reason="exit", retry=True)
    run(store, "nightly", State.SUCCEEDED, schedule="nightly")
    store.add_job(
        specs.normalize({"image": "alpine", "command": ["true"], "name": "build"}),
        trigger="rpc",
        queue_limit=100,
    )
    before = samples(metrics.render(store, lambda: {"degraded": "podman is down"}))
    store.close()
    store = open_store(path)
    try:
        store.remove_jobs([ok])
        after = samples(metrics.render(store, lambda: {"degraded": None}))
    finally:
        store.close()
    for seen in (before, after):
        assert seen[("choo_jobs_submitted_total", ())] == 4
        assert seen[("choo_jobs_started_total", ())] == 4
        assert seen[("choo_job_retries_total", ())] == 1
        assert seen[("choo_jobs_ended_total", (("reason", ""), ("state", "succeeded")))] == 2
        assert seen[("choo_jobs_ended_total", (("reason", "exit"), ("state", "failed")))] == 1
        assert seen[("choo_schedule_fires_total", (("schedule", "nightly"),))] == 1
        assert seen[("choo_jobs", (("name", "build"), ("state", "queued")))] == 1
        assert seen[("choo_run_seconds_count", ())] == 4
        assert seen[("choo_run_seconds_bucket", (("le", "+Inf"),))] == 4
        assert seen[("choo_run_seconds_bucket", (("le", "86400.0"),))] == 0
        assert seen[("choo_queue_wait_seconds_count", ())] == 4
        assert seen[("choo_queue_wait_seconds_bucket", (("le", "+Inf"),))] == 4
        assert seen[("choo_last_success_timestamp_seconds", (("name", "build"),))] > 0
        assert seen[("choo_schedule_last_success_timestamp_seconds", (("schedule", "nightly"),))]
        assert seen[("choo_build_info", (("version", __version__),))] == 1
    assert before[("choo_podman_degraded", ())] == 1 and after[("choo_podman_degraded", ())] == 0


def test_schedule_skips_and_log_bytes_are_counted(tmp_path):
    store = open_store(tmp_path / "s" / "choo.db")
    try:
        job_id = run(store, "x", State.SUCCEEDED)
        store.update_attempt(job_id, 1, log_shipped=100)
        store.update_attempt(job_id, 1, log_shipped=250)
        store.add_schedule(
            name="hourly",
            cron="0 * * * *",
            spec=specs.normalize({"image": "alpine", "command": ["true"]}),
            created_at=0.0,
            last_fire=0.0,
        )
        store.update_schedule("hourly", last_skip="t1: a run is still going")
        store.update_schedule("hourly", last_skip="t2: a run is still going")
        store.update_schedule("hourly", last_skip=None)  # a run made: no skip
        seen = samples(metrics.render(store, lambda: {}))
        assert seen[("choo_log_bytes_total", ())] == 250
        assert seen[("choo_schedule_skips_total", (("schedule", "hourly"),))] == 2
    finally:
        store.close()


def test_textfile_is_replaced_whole(tmp_path):
    store = open_store(tmp_path / "s" / "choo.db")
    target = tmp_path / "choo.prom"
    writer = metrics.TextfileWriter(target, metrics.registry(store, lambda: None), lambda: 0.001)
    seen_bad = []
    done = threading.Event()

    def read():
        while not done.is_set():
            if target.exists():
                text = target.read_text()
                if not text.rstrip().endswith(f'choo_build_info{{version="{__version__}"}} 1.0'):
                    seen_bad.append(text[-200:])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        writer.start()
        for _ in range(200):
            run(store, "n", State.SUCCEEDED)
    finally:
        writer.stop()
        done.set()
        reader.join()
        store.close()
    assert not seen_bad
    assert samples(target.read_text())[("choo_jobs_submitted_total", ())] == 200


@pytest.mark.parametrize(
    "address, expected",
    [("9464", ("127.0.0.1", 9464)), ("[::1]:80", ("::1", 80)), ("0.0.0.0:1", ("0.0.0.0", 1))],
)
def test_listen_addresses(address, expected):
    assert metrics.parse_listen(address) == expected


@pytest.mark.parametrize("address", ["host:80", "x", "127.0.0.1:0", "127.0.0.1:70000"])
def test_bad_listen_addresses_are_refused(address):
    with pytest.raises(ChooError, match="metrics_listen"):
        metrics.parse_listen(address)


def test_a_public_address_needs_the_public_setting(tmp_path):
    with pytest.raises(ChooError, match="metrics_listen_public"):
        metrics.listen("0.0.0.0:1", None, public=False)

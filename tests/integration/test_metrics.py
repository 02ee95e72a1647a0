"""Metrics against a real agent: after a known sequence of jobs, the text of
``chooctl metrics``, of ``metrics_textfile`` and of ``metrics_listen``, parsed
by prometheus_client's own parser, carry the right counts, before and after a
restart of the agent (the counters live in the database)."""

from __future__ import annotations

import socket
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import wait_until

pytestmark = pytest.mark.podman


def samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def chooctl(agent, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*agent.chooctl_argv(), *args], capture_output=True, timeout=300, check=False, text=True
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check(seen: dict) -> None:
    assert seen[("choo_jobs_submitted_total", ())] == 3
    assert seen[("choo_jobs_started_total", ())] == 3
    assert seen[("choo_jobs_ended_total", (("reason", ""), ("state", "succeeded")))] == 2
    assert seen[("choo_jobs_ended_total", (("reason", "exit"), ("state", "failed")))] == 1
    assert seen[("choo_run_seconds_count", ())] == 3
    assert seen[("choo_queue_wait_seconds_count", ())] == 3
    assert seen[("choo_last_success_timestamp_seconds", (("name", "ok"),))] > 0
    assert seen[("choo_podman_degraded", ())] == 0


def test_metrics_count_a_known_sequence_of_jobs_across_a_restart(make_agent, image, tmp_path):
    textfile = tmp_path / "choo.prom"
    port = free_port()
    agent = make_agent(
        metrics_textfile=str(textfile), metrics_interval=0.2, metrics_listen=str(port)
    ).start()
    for name, command in (("ok", "true"), ("ok", "echo hi"), ("bad", "exit 3")):
        chooctl(agent, "run", "--name", name, image, "sh", "-c", command)
    over_socket = chooctl(agent, "metrics")
    assert over_socket.returncode == 0, over_socket.stderr
    check(samples(over_socket.stdout))
    # The file is rewritten every 0.2 s: one may be from between the last
    # submit and its end. Wait for one written after the last end.
    failed = ("choo_jobs_ended_total", (("reason", "exit"), ("state", "failed")))
    wait_until(
        lambda: samples(textfile.read_text()).get(failed) == 1,
        what="the textfile to count the jobs' ends",
    )
    check(samples(textfile.read_text()))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        check(samples(answer.read().decode()))
    agent.stop()
    agent.start()
    check(samples(chooctl(agent, "metrics").stdout))
    # One more after the restart counts on from there.
    chooctl(agent, "run", "--name", "ok", image, "true")
    after = samples(chooctl(agent, "metrics").stdout)
    assert after[("choo_jobs_submitted_total", ())] == 4
    assert after[("choo_jobs_ended_total", (("reason", ""), ("state", "succeeded")))] == 3

"""The agent is killed, restarted, and surprised; no job is lost, none runs twice.

Real agent processes, real signals, real rootless Podman. Whether a job ran is
read from the journal: each job prints one "ran" line, so a job that ran twice
would have two entries under its container name. A job that must still be
running at some point of a test is held there (``HOLD``) and released by the
test, rather than given a sleep long enough to outlast it.
"""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest

from tests.harness import HOLD, journal_lines, podman, release, wait_until

pytestmark = pytest.mark.podman

TERMINAL = ("succeeded", "failed", "cancelled")


def _ran_once(agent, job_id: str) -> None:
    """The job printed "ran" exactly once: in its output, and in the journal's
    copy (shipped a moment after the job wrote it; a second run would have
    left a second copy there even if its file had been replaced)."""
    assert agent.output_lines(job_id) == ["ran"], f"job {job_id}: its output"
    lines = wait_until(lambda: journal_lines(job_id), what=f"the journal copy of job {job_id}")
    assert lines == ["ran"], f"job {job_id} ran more or less than once"


def _states(agent) -> dict[str, str]:
    return {j["id"]: j["state"] for j in agent.call("job.list", all=True, limit=1000)["jobs"]}


def _release_each_as_it_runs(agent, ids) -> None:
    """Release every held job once it runs, until all have ended."""
    released = set()

    def all_ended() -> bool:
        states = _states(agent)
        for job_id in ids:
            if states[job_id] == "running" and job_id not in released:
                release(agent.podman_url, job_id)
                released.add(job_id)
        return all(states[i] in TERMINAL for i in ids)

    wait_until(all_ended, timeout=120, what="every job released and ended")


def test_sigkill_with_running_and_queued_jobs_loses_nothing(make_agent, image):
    agent = make_agent(max_concurrent=10).start()
    expected = {}
    for i in range(20):
        code = i % 4
        job = agent.call(
            "job.submit",
            spec={"image": image, "command": ["sh", "-c", f"echo ran; {HOLD}; exit {code}"]},
        )
        expected[job["id"]] = code
    wait_until(
        lambda: list(_states(agent).values()).count("running") == 10,
        what="10 jobs running at once",
    )
    agent.stop(signal.SIGKILL)
    assert agent.process.returncode == -signal.SIGKILL
    agent.start()
    _release_each_as_it_runs(agent, list(expected))
    for job_id, code in expected.items():
        job = agent.call("job.get", id=job_id)
        assert job["exit_code"] == code, job
        assert job["state"] == ("succeeded" if code == 0 else "failed")
        assert len(job["attempts"]) == 1
        _ran_once(agent, job_id)
    wait_until(lambda: agent.containers() == [], what="no container left")


def test_container_removed_behind_our_back_is_lost(agent, image):
    job = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    agent.wait_state(job["id"], "running")
    podman("--url", agent.podman_url, "rm", "-f", f"choo-{job['id']}")
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert (ended["state"], ended["reason"]) == ("failed", "lost")
    assert agent.call("job.get", id=job["id"])["attempts"][0]["reason"] == "lost"


def test_lost_job_is_retried_when_it_has_retries(make_agent, image):
    agent = make_agent(retry_backoff_base=0.1).start()
    job = agent.call(
        "job.submit",
        # Held, so the removal below always lands while it runs.
        spec={"image": image, "command": ["sh", "-c", HOLD], "retries": 1},
    )
    agent.wait_state(job["id"], "running")
    podman("--url", agent.podman_url, "rm", "-f", f"choo-{job['id']}")
    agent.wait_job(
        job["id"],
        lambda j: len(j["attempts"]) == 2 and j["state"] == "running",
        "its retry running",
    )
    release(agent.podman_url, job["id"])
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert ended["state"] == "succeeded"
    attempts = agent.call("job.get", id=job["id"])["attempts"]
    assert [a["reason"] for a in attempts] == ["lost", None]
    assert [a["trigger"] for a in attempts] == ["rpc", "retry"]


def test_podman_service_restart_while_jobs_run(make_agent, podman_service, image):
    agent = make_agent().start()
    spec = {"image": image, "command": ["sh", "-c", f"{HOLD}; exit 5"]}
    ids = [agent.call("job.submit", spec=spec)["id"] for _ in range(3)]
    for job_id in ids:
        agent.wait_state(job_id, "running")
    podman_service.restart()
    # They end only now, so the agent must see it through the new service.
    for job_id in ids:
        release(agent.podman_url, job_id)
    for job_id in ids:
        ended = agent.call("job.wait", id=job_id, timeout=60)
        assert (ended["state"], ended["exit_code"]) == ("failed", 5)
    # The agent follows events again: a new job's end is seen.
    fresh = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert agent.call("job.wait", id=fresh["id"], timeout=60)["state"] == "succeeded"


def test_sigterm_leaves_jobs_running_and_restart_adopts_them(make_agent, image):
    agent = make_agent().start()
    short, long = (
        agent.call(
            "job.submit",
            spec={"image": image, "command": ["sh", "-c", f"echo ran; {HOLD}; exit {code}"]},
        )
        for code in (4, 6)
    )
    for job in (short, long):
        agent.wait_state(job["id"], "running")
    assert agent.stop(signal.SIGTERM) == 0
    running = {c["Names"][0] for c in agent.containers() if c["State"] == "running"}
    assert running == {f"choo-{short['id']}", f"choo-{long['id']}"}
    # The short job ends while the agent is down; the long one outlives the restart.
    release(agent.podman_url, short["id"])
    podman("--url", agent.podman_url, "wait", f"choo-{short['id']}")
    agent.start()
    assert agent.call("job.get", id=long["id"])["state"] == "running"
    release(agent.podman_url, long["id"])
    ended_short = agent.call("job.get", id=short["id"])
    assert (ended_short["state"], ended_short["exit_code"]) == ("failed", 4)
    ended_long = agent.call("job.wait", id=long["id"], timeout=60)
    assert (ended_long["state"], ended_long["exit_code"]) == ("failed", 6)
    for job_id in (short["id"], long["id"]):
        _ran_once(agent, job_id)
    wait_until(lambda: agent.containers() == [], what="no container left")


def test_orphan_container_is_removed_after_its_grace(make_agent, image):
    agent = make_agent(orphan_grace=3600.0).start()
    name = f"choo-orphan-{agent.agent_id}"
    podman(
        "--url",
        agent.podman_url,
        "create",
        "--name",
        name,
        "--label",
        f"io.choo.agent={agent.agent_id}",
        "--label",
        "io.choo.job=NOSUCHJOB",
        image,
        "true",
    )
    # Younger than the grace: it may be a container whose create is still returning.
    job = agent.call("job.submit", spec={"image": image})["id"]
    assert agent.call("job.wait", id=job, timeout=60)["state"] == "succeeded"
    # Passes go on (the job's own container goes once its end is recorded), the orphan stays.
    wait_until(
        lambda: [c["Names"] for c in agent.containers()] == [[name]],
        what="the job's container gone",
    )
    agent.stop()
    agent.write_config(orphan_grace=0.0)
    agent.start()
    wait_until(lambda: agent.containers() == [], what="the orphan removed")


def test_capacity_is_never_exceeded(make_agent, image):
    agent = make_agent(max_concurrent=4).start()
    seen = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            out = podman(
                "--url",
                agent.podman_url,
                "ps",
                "-q",
                "--filter",
                f"label=io.choo.agent={agent.agent_id}",
                check=False,
            ).stdout
            seen.append(len(out.split()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        ids = [
            agent.call("job.submit", spec={"image": image, "command": ["true"]})["id"]
            for _ in range(200)
        ]
        for job_id in ids:
            assert agent.call("job.wait", id=job_id, timeout=300)["state"] == "succeeded"
    finally:
        stop.set()
        sampler.join()
    assert len(seen) > 20
    assert max(seen) <= 4, f"saw {max(seen)} containers running at once"


def test_podman_down_keeps_jobs_queued_and_work_resumes(make_agent, podman_service, image):
    agent = make_agent().start()
    podman_service.stop()
    try:
        job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
        wait_until(lambda: agent.call("agent.info")["degraded"], what="the agent degraded")
        info = agent.call("agent.info")
        assert "Podman" in info["degraded"]
        assert agent.call("job.get", id=job["id"])["state"] == "queued"
    finally:
        podman_service.start()
    assert agent.call("job.wait", id=job["id"], timeout=60)["state"] == "succeeded"
    wait_until(lambda: agent.call("agent.info")["degraded"] is None, what="degraded cleared")


def test_queue_full_is_refused_and_nothing_is_stored(make_agent, image):
    from agent.protocol.errors import QueueFull

    agent = make_agent(max_concurrent=1, queue_limit=2).start()
    running = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    agent.wait_state(running["id"], "running")
    queued = [agent.call("job.submit", spec={"image": image})["id"] for _ in range(2)]
    with pytest.raises(QueueFull, match="queue is full"):
        agent.call("job.submit", spec={"image": image})
    done = agent.chooctl("submit", image, "true")
    assert done.returncode == 125 and "queue is full" in done.stderr
    assert len(agent.call("job.list", all=True)["jobs"]) == 3
    for job_id in [running["id"], *queued]:
        agent.call("job.cancel", id=job_id)
    agent.call("job.wait", id=running["id"], timeout=60)
    wait_until(lambda: agent.containers() == [], what="no container left")


def test_chooctl_run_rides_out_an_agent_restart(make_agent, image):
    agent = make_agent().start()
    run = subprocess.Popen(
        [*agent.chooctl_argv(), "run", image, "sh", "-c", f"echo one; {HOLD}; echo two; exit 5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout.readline() == "one\n"
    assert agent.stop(signal.SIGTERM) == 0
    agent.start()
    release(agent.podman_url, agent.call("job.list")["jobs"][0]["id"])
    out, err = run.communicate(timeout=60)
    assert run.returncode == 5
    assert out == "two\n"  # resumed after the last line shown: nothing lost, nothing twice
    assert "reconnecting" in err

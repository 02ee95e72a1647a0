"""A slow, lossy Podman and an agent killed mid-start: every job runs its command
exactly once, and nothing of it is left behind.

The agent talks to Podman through the fault-injecting relay (tests/podman_relay.py):
replies come later than ``podman_timeout``, are lost after Podman acted, a
pull never answers, or the agent is SIGKILLed the moment Podman answered a
step of a start. Whether a job ran twice is read from its /out volume, which
every container of the job mounts: each run appends a line there and prints
how many lines it found, so a second run, even one whose output was lost,
prints ``runs=2``. The journal's copy of the output is counted too.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import tarfile
import threading

import pytest

from agent.adapters.files import ARCHIVE_NAME
from tests.harness import journal_lines, podman, wait_until
from tests.podman_relay import Rule

pytestmark = pytest.mark.podman

#: Each run of a job appends to /out (shared by all its containers) and says how many ran.
COUNT_RUNS = 'echo ran >> /out/runs; echo "runs=$(wc -l < /out/runs)"'
CREATE = r"/containers/create"
START = r"/containers/[^/]+/start"
SECRET = "CHOO_TEST_TOKEN"
TERMINAL = ("succeeded", "failed", "cancelled")


def _ran_once(agent, job_id: str) -> None:
    """One run: its output says so, and so does the journal's copy of it."""
    job = agent.call("job.get", id=job_id)
    assert job["attempt"] == 1, f"job {job_id} made {job['attempt']} attempts"
    assert agent.output_lines(job_id) == ["runs=1"], f"job {job_id}: its output"
    lines = wait_until(lambda: journal_lines(job_id), what=f"the journal copy of job {job_id}")
    assert lines == ["runs=1"], f"job {job_id} ran more or less than once: {lines}"


def _leftovers(agent, url: str, job_ids) -> dict[str, list[str]]:
    """The agent's containers, volumes and secrets still in Podman."""
    ours = f"label=io.choo.agent={agent.agent_id}"
    containers = json.loads(
        podman("--url", url, "ps", "-a", "--format", "json", "--filter", ours).stdout or "[]"
    )
    volumes = json.loads(
        podman("--url", url, "volume", "ls", "--format", "json", "--filter", ours).stdout or "[]"
    )
    # Podman 4.3's `secret ls --format json` prints "json" for each secret: ask for names.
    secrets = podman("--url", url, "secret", "ls", "--format", "{{.Name}}").stdout.split()
    prefixes = tuple(f"choo-{job_id}-" for job_id in job_ids)
    return {
        "containers": [c["Names"][0] for c in containers],
        "volumes": [v["Name"] for v in volumes],
        "secrets": [name for name in secrets if name.startswith(prefixes)],
    }


def _nothing_left(agent, url: str, job_ids) -> None:
    left: dict = {}

    def clean() -> bool:
        left.update(_leftovers(agent, url, job_ids))
        return not any(left.values())

    try:
        wait_until(clean, timeout=60, what="no container, volume or secret left")
    except AssertionError:
        raise AssertionError(f"left behind: {left}") from None


def _wait_ended(agent, ids, timeout: float) -> dict[str, dict]:
    """Wait until every job in ``ids`` ended; their full records (``job.get``)."""
    jobs: dict[str, dict] = {}

    def ended() -> bool:
        jobs.update({j["id"]: j for j in agent.call("job.list", all=True, limit=1000)["jobs"]})
        return all(jobs[i]["state"] in TERMINAL for i in ids)

    try:
        wait_until(ended, timeout=timeout, what="every job ended")
        return {i: agent.call("job.get", id=i) for i in ids}
    except AssertionError as exc:
        states = {i: jobs[i]["state"] for i in ids if jobs[i]["state"] not in TERMINAL}
        raise AssertionError(f"{exc}: {states}; the agent's log:\n{agent.log()[-6000:]}") from None


def test_late_and_lost_create_and_start_replies_run_each_job_once(
    podman_relay, make_agent, podman_service, image
):
    jobs = int(os.environ.get("CHOO_SLOW_PODMAN_JOBS", "40"))
    # Every fifth create and start is answered by Podman and then lost; every
    # other one of the rest comes two seconds after podman_timeout.
    late: list = []
    for path in (CREATE, START):
        podman_relay.add(
            Rule("POST", path, drop=True, when=lambda n: n % 5 == 0, after=late.append)
        )
        podman_relay.add(
            Rule("POST", path, delay=6.0, when=lambda n: n % 2 == 0, after=late.append)
        )
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=4, max_concurrent=8).start()
    ids = [
        agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", COUNT_RUNS]})["id"]
        for _ in range(jobs)
    ]
    ended = _wait_ended(agent, ids, timeout=60 + 15 * jobs)
    states = [ended[i]["state"] for i in ids]
    creates, starts = podman_relay.count("POST", CREATE), podman_relay.count("POST", START)
    print(
        f"\n{jobs} jobs: {states.count('succeeded')} succeeded; {creates} creates and "
        f"{starts} starts sent, {len(late)} of them answered late or lost"
    )
    others = {i: ended[i] for i in ids if ended[i]["state"] != "succeeded"}
    assert not others, [(i, j["state"], j["reason"], j["log_tail"]) for i, j in others.items()]
    for job_id in ids:
        _ran_once(agent, job_id)
    assert len(late) >= jobs // 2  # the faults happened (about half of all the replies)
    _nothing_left(agent, podman_service.url, ids)


@pytest.mark.parametrize("step", ["secrets/create", "volumes/create", "containers/create", "start"])
def test_sigkill_right_after_each_step_of_a_start_runs_the_job_once(
    podman_relay, make_agent, podman_service, image, step
):
    # Podman itself is slow on a busy machine: this test is about the kill, not lateness.
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=15, secret_env=[SECRET])
    env = {SECRET: "s3cret"}
    killed = threading.Event()

    def kill(request) -> None:
        os.kill(agent.process.pid, signal.SIGKILL)
        killed.set()

    path = START if step == "start" else f"/{step}"
    podman_relay.add(Rule("POST", path, after=kill, when=lambda n: n == 1))
    agent.start(env=env)
    command = f'test "${SECRET}" = s3cret || exit 99; {COUNT_RUNS}; exit 3'
    spec = {"image": image, "command": ["sh", "-c", command], "secrets": [SECRET]}
    if step == "volumes/create":
        # A job running as root gets a host directory at /out, no volume.
        spec["user"] = "1000"
    job = agent.call("job.submit", spec=spec)
    wait_until(killed.is_set, what=f"the agent killed as Podman answered {step}")
    agent.process.wait(30)
    agent.start(env=env)
    done = agent.wait_job(job["id"], lambda j: j["state"] == "failed", "failed", timeout=60)
    assert (done["reason"], done["exit_code"]) == ("exit", 3), done
    _ran_once(agent, job["id"])
    _nothing_left(agent, podman_service.url, [job["id"]])


def test_sigkill_after_the_terminal_commit_before_removal_keeps_the_recorded_end(
    podman_relay, make_agent, podman_service, image
):
    # The finish commits the end, then removes the container (agent/runtime/
    # finish.py): its first DELETE of a container is that removal. The agent is
    # killed as it asks, and the request never reaches Podman.
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=15, secret_env=[SECRET])
    env = {SECRET: "s3cret"}
    killed = threading.Event()

    def kill(request) -> None:
        os.kill(agent.process.pid, signal.SIGKILL)
        killed.set()

    podman_relay.add(
        Rule("DELETE", r"/containers/", before=kill, refuse=True, when=lambda n: n == 1)
    )
    agent.start(env=env)
    command = f'test "${SECRET}" = s3cret || exit 99; {COUNT_RUNS}; exit 3'
    job = agent.call(
        "job.submit", spec={"image": image, "command": ["sh", "-c", command], "secrets": [SECRET]}
    )
    wait_until(killed.is_set, what="the agent killed as it removes the ended container")
    agent.process.wait(30)
    # Killed between the two: the container, its volume and its secret are all still there.
    left = _leftovers(agent, podman_service.url, [job["id"]])
    assert left["containers"] == [f"choo-{job['id']}"], left
    agent.start(env=env)
    done = agent.wait_job(job["id"], lambda j: j["state"] == "failed", "failed", timeout=60)
    assert (done["reason"], done["exit_code"]) == ("exit", 3), done
    _ran_once(agent, job["id"])
    _nothing_left(agent, podman_service.url, [job["id"]])
    # The end the killed agent committed stood: the new one only swept what it left.
    assert f"removing stray container choo-{job['id']}" in agent.log()


def test_sigkill_while_packing_out_records_one_end_and_a_whole_archive(
    make_agent, podman_service, image
):
    agent = make_agent().start()
    # 300 MB for /out: packing it takes a moment, and the agent is killed in it.
    command = f"{COUNT_RUNS}; dd if=/dev/zero of=/out/zeros bs=1M count=300 2>/dev/null; exit 3"
    job_id = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", command]})["id"]
    archive = agent.state_dir / "jobs" / job_id / ARCHIVE_NAME
    # agent/adapters/archive.py writes the archive beside its final name first.
    partial = archive.with_name(archive.name + ".partial")
    wait_until(partial.exists, timeout=120, interval=0.01, what="the archive being written")
    os.kill(agent.process.pid, signal.SIGKILL)
    agent.process.wait(30)
    assert not archive.exists(), "the agent was killed after packing, not during it"
    agent.start()
    done = agent.wait_job(job_id, lambda j: j["state"] == "failed", "failed", timeout=120)
    assert (done["reason"], done["exit_code"]) == ("exit", 3), done
    _ran_once(agent, job_id)
    record = done["artifacts"]
    assert record["state"] == "packed", record
    assert record["path"] == str(archive)
    assert not partial.exists(), "a partial archive was left behind"
    data = archive.read_bytes()  # zeros pack small
    assert (len(data), hashlib.sha256(data).hexdigest()) == (record["size"], record["sha256"])
    as_json = json.loads(agent.chooctl("artifacts", "--json", job_id).stdout)
    assert as_json["sha256"] == record["sha256"]
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["runs", "zeros"]
        assert tar.getmember("zeros").size == 300 << 20
        assert tar.extractfile("runs").read() == b"ran\n"
    _nothing_left(agent, podman_service.url, [job_id])


def test_a_cancel_during_a_stalled_pull_means_the_command_never_runs(
    podman_relay, make_agent, podman_service, image
):
    pulling = threading.Event()
    podman_relay.add(Rule("POST", r"/images/pull", hang=True, before=lambda r: pulling.set()))
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=5).start()
    job = agent.call(
        "job.submit",
        spec={"image": image, "pull": "always", "command": ["sh", "-c", COUNT_RUNS]},
    )
    wait_until(pulling.is_set, what="the pull to begin")
    agent.call("job.cancel", id=job["id"])
    done = agent.wait_state(job["id"], "cancelled", timeout=30)
    assert done["stop_reason"] == "cancel"
    assert podman_relay.count("POST", CREATE) == 0
    assert podman_relay.count("POST", START) == 0
    assert agent.output_lines(job["id"]) == []
    _nothing_left(agent, podman_service.url, [job["id"]])


def test_a_hung_pull_ends_at_pull_timeout_or_at_the_jobs_own_timeout(
    podman_relay, make_agent, podman_service, image
):
    podman_relay.add(Rule("POST", r"/images/pull", hang=True))
    agent = make_agent(
        podman_url=podman_relay.url, podman_timeout=5, pull_timeout=2, retry_backoff_base=0.1
    ).start()
    pull = {"image": image, "pull": "always", "command": ["sh", "-c", COUNT_RUNS]}
    once = agent.call("job.submit", spec=pull)["id"]
    retried = agent.call("job.submit", spec={**pull, "retries": 1})["id"]
    ids = [once, retried]
    ended = _wait_ended(agent, ids, timeout=60)
    for job_id, attempts in ((once, 1), (retried, 2)):
        job = ended[job_id]
        assert (job["state"], job["reason"], job["attempt"]) == ("failed", "image", attempts)
        assert "took longer than pull_timeout (2s)" in job["log_tail"], job["log_tail"]
    _nothing_left(agent, podman_service.url, ids)
    # The job's own timeout covers its start: a pull within pull_timeout but
    # past the job's timeout ends it failed/timeout.
    agent.stop()
    podman_relay.clear()
    podman_relay.add(Rule("POST", r"/images/pull", hang=True))
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=5).start()
    slow = agent.call("job.submit", spec={**pull, "timeout": 2})["id"]
    job = agent.wait_job(slow, lambda j: j["state"] == "failed", "failed", timeout=60)
    assert job["reason"] == "timeout", job
    assert "while starting" in job["log_tail"]
    assert podman_relay.count("POST", START) == 0
    _nothing_left(agent, podman_service.url, [slow])


def test_a_container_of_an_earlier_attempt_is_never_taken_for_the_next(
    podman_relay, make_agent, podman_service, image
):
    # The first attempt fails (exit 1) and its container's removals (the
    # finish's, then the stray sweep's of the next pass) never reach Podman:
    # it is still there, exited 1, when attempt 2 begins in that same pass.
    podman_relay.add(Rule("DELETE", r"/containers/", refuse=True, when=lambda n: n <= 2))
    agent = make_agent(podman_url=podman_relay.url, podman_timeout=15, retry_backoff_base=0).start()
    command = f'{COUNT_RUNS}; test "$(wc -l < /out/runs)" -gt 1'
    job = agent.call(
        "job.submit", spec={"image": image, "command": ["sh", "-c", command], "retries": 1}
    )
    done = agent.wait_job(job["id"], lambda j: j["state"] == "succeeded", "succeeded", timeout=60)
    # Had attempt 2 taken the old container for its own, it would have
    # recorded its exit 1 and failed.
    assert (done["attempt"], done["exit_code"]) == (2, 0), done
    assert agent.output_lines(job["id"]) == ["runs=1", "runs=2"]
    # It was there: the start of attempt 2 removed it.
    assert f"removing container choo-{job['id']} of attempt 1" in agent.log(), [
        line for line in agent.log().splitlines() if "DEBUG" not in line
    ]
    _nothing_left(agent, podman_service.url, [job["id"]])

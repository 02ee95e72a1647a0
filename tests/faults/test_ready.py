"""READY after a restart over running and exited containers: the ends are recorded
first, the removals come after, and a kill in between loses nothing.

Real agent processes, real signals and real rootless Podman, behind the
fault-injecting relay (tests/podman_relay.py) where a test must hold the
removals: a hold shows READY did not wait for them, and the agent can be
killed while they are in flight. ``AgentProcess.start`` returns once the
agent answers on its socket, which it does only after the recovery pass,
just before READY.
"""

from __future__ import annotations

import signal
import threading

import pytest

from agent.adapters.podman import out_volume_name
from tests.harness import HOLD, podman, release, wait_until
from tests.podman_relay import Rule

pytestmark = pytest.mark.podman

#: Jobs of each kind: still running across the restart, and ended while the agent was down.
N = 5


def _down_with_ends(agent, image) -> tuple[list[str], dict[str, int]]:
    """Start N held jobs and N more, stop the agent (SIGTERM: containers stay),
    and let the second N end while it is down, each with its own exit code.

    Returns:
        The IDs of the running jobs, and each ended job's exit code.
    """
    agent.start()
    spec = {"image": image, "command": ["sh", "-c", f"echo ran; {HOLD}"]}
    runners = [agent.call("job.submit", spec=spec)["id"] for _ in range(N)]
    codes = {}
    for code in range(N):
        command = ["sh", "-c", f"echo ran; {HOLD}; exit {code}"]
        codes[agent.call("job.submit", spec={"image": image, "command": command})["id"]] = code
    for job_id in [*runners, *codes]:
        agent.wait_state(job_id, "running", timeout=120)
    assert agent.stop(signal.SIGTERM) == 0
    for job_id in codes:
        release(agent.podman_url, job_id)
        podman("--url", agent.podman_url, "wait", f"choo-{job_id}")
    return runners, codes


def _assert_recorded(agent, codes: dict[str, int]) -> None:
    """Each ended job is recorded, at once, with its exit code (job.get and job.wait)."""
    with agent.client() as client:
        for job_id, code in codes.items():
            job = client.call("job.get", id=job_id)
            state = "succeeded" if code == 0 else "failed"
            assert (job["state"], job["exit_code"]) == (state, code), job
            assert client.call("job.wait", id=job_id, timeout=0)["state"] == state


def _names(agent, job_ids) -> set[str]:
    wanted = {f"choo-{job_id}" for job_id in job_ids}
    return {name for c in agent.containers() for name in c["Names"] if name in wanted}


def _ended_once(agent, job_id: str) -> None:
    """One attempt, one terminal event, and the job printed "ran" once."""
    job = agent.call("job.get", id=job_id)
    assert len(job["attempts"]) == 1, job_id
    states = [e["state"] for e in job["events"]]
    assert sum(s in ("succeeded", "failed", "cancelled") for s in states) == 1, states
    assert agent.output_lines(job_id) == ["ran"], job_id


def _end_the_runners(agent, runners) -> None:
    for job_id in runners:
        release(agent.podman_url, job_id)
    for job_id in runners:
        assert agent.call("job.wait", id=job_id, timeout=60)["state"] == "succeeded"
        _ended_once(agent, job_id)


def test_ready_finds_the_ends_recorded_and_the_removals_follow(make_agent, image):
    agent = make_agent(max_concurrent=2 * N)
    runners, codes = _down_with_ends(agent, image)
    agent.start()
    _assert_recorded(agent, codes)
    for job_id in runners:
        assert agent.call("job.get", id=job_id)["state"] == "running"
    wait_until(lambda: not _names(agent, codes), what="the ended jobs' containers removed")
    for job_id in codes:
        _ended_once(agent, job_id)
    _end_the_runners(agent, runners)


def test_sigkill_while_the_removals_run_after_ready_ends_each_job_once(
    podman_relay, make_agent, image
):
    agent = make_agent(podman_url=podman_relay.url, max_concurrent=2 * N)
    runners, codes = _down_with_ends(agent, image)
    # Every container removal is held before it reaches Podman, then refused.
    gate = threading.Event()
    podman_relay.add(Rule("DELETE", r"/containers/", before=lambda _: gate.wait(), refuse=True))
    try:
        agent.start()
        _assert_recorded(agent, codes)
        # READY came while no removal had gone through: they run after it.
        assert _names(agent, codes) == {f"choo-{job_id}" for job_id in codes}
        wait_until(
            lambda: podman_relay.count("DELETE", r"/containers/") > 0,
            what="a removal in flight",
        )
        agent.stop(signal.SIGKILL)
    finally:
        podman_relay.clear()
        gate.set()
    # The next start's sweeps remove what the killed agent left; no end twice.
    agent.start()
    _assert_recorded(agent, codes)
    wait_until(lambda: not _names(agent, codes), what="the strays of the ended jobs removed")

    def out_gone() -> bool:
        return all(
            not (agent.state_dir / "out" / job_id).exists()
            and podman(
                "--url", agent.podman_url, "volume", "exists", out_volume_name(job_id), check=False
            ).returncode
            for job_id in codes
        )

    # /out goes with its stray container's removal (or the minute's sweep).
    wait_until(out_gone, timeout=90, what="the ended jobs' /out directories and volumes removed")
    for job_id in codes:
        _ended_once(agent, job_id)
    _end_the_runners(agent, runners)

"""Every chooctl command against a real agent, with and without --json."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from tests.harness import wait_until

pytestmark = pytest.mark.podman


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_submit_plain_quiet_and_json(agent, image):
    plain = _ok(agent.chooctl("submit", image, "true")).strip()
    quiet = _ok(agent.chooctl("submit", "-q", image, "true")).strip()
    record = json.loads(_ok(agent.chooctl("submit", "--json", "--name", "n1", image, "true")))
    assert len(plain) == len(quiet) == 26
    assert record["name"] == "n1" and record["state"] == "queued" and record["trigger"] == "cli"
    _ok(agent.chooctl("wait", plain, quiet, record["id"]))


def test_ps_filters_since_and_list_alias(agent, image):
    ok = _ok(agent.chooctl("run", "-d", "--name", "a", "-l", "team=ci", image, "true")).strip()
    bad = _ok(agent.chooctl("run", "-d", "--name", "b", image, "false")).strip()
    agent.chooctl("wait", ok, bad)
    assert _ok(agent.chooctl("ps", "-q", "--filter", "state=failed")).split() == [bad]
    assert _ok(agent.chooctl("ps", "-aq", "--filter", "name=a")).split() == [ok]
    assert _ok(agent.chooctl("ps", "-aq", "-f", "label=team=ci")).split() == [ok]
    both = _ok(agent.chooctl("ps", "-aq", "-f", "state=failed", "-f", "state=succeeded")).split()
    assert set(both) == {ok, bad}
    assert _ok(agent.chooctl("list", "-aq", "--since", "1h")).split() == [bad, ok]
    assert _ok(agent.chooctl("list", "-aq", "--since", "0s")).split() == []
    rows = json.loads(_ok(agent.chooctl("ps", "-a", "--json", "-f", "name=b")))
    assert [r["id"] for r in rows] == [bad]
    wrong = agent.chooctl("ps", "--filter", "colour=red")
    assert wrong.returncode == 125 and "--filter" in wrong.stderr
    # Off a terminal there is no colour in the table.
    assert "\x1b[" not in _ok(agent.chooctl("ps", "-a"))


def test_logs_tail_json_and_follow(agent, image):
    job_id = _ok(agent.chooctl("run", "-d", image, "sh", "-c", "seq 1 5; echo e >&2")).strip()
    agent.chooctl("wait", job_id)
    assert _ok(agent.chooctl("logs", "--tail", "2", job_id)) == "5\n"
    entries = [json.loads(x) for x in _ok(agent.chooctl("logs", "--json", job_id)).splitlines()]
    assert [(x["stream"], x["text"]) for x in entries] == [
        ("stdout", "1\n2\n3\n4\n5\n"),
        ("stderr", "e\n"),
    ]
    assert all(x["cursor"] and x["time"] for x in entries)
    assert _ok(agent.chooctl("logs", "-f", job_id)) == "1\n2\n3\n4\n5\n"


def test_wait_several_ids_exit_rule_json_and_timeout(agent, image):
    ok = _ok(agent.chooctl("run", "-d", image, "true")).strip()
    three = _ok(agent.chooctl("run", "-d", image, "sh", "-c", "exit 3")).strip()
    four = _ok(agent.chooctl("run", "-d", image, "sh", "-c", "exit 4")).strip()
    done = agent.chooctl("wait", ok, three, four)
    assert done.returncode == 3  # the first job, in the order given, that did not succeed
    assert [line.split()[1] for line in done.stdout.splitlines()] == [
        "succeeded",
        "failed",
        "failed",
    ]
    assert agent.chooctl("wait", ok).returncode == 0
    records = json.loads(agent.chooctl("wait", "--json", four, ok).stdout)
    assert [r["exit_code"] for r in records] == [4, 0]
    slow = _ok(agent.chooctl("run", "-d", image, "sleep", "300")).strip()
    done = agent.chooctl("wait", "--timeout", "1s", slow, slow)
    assert done.returncode == 125 and "timed out" in done.stderr
    _ok(agent.chooctl("cancel", slow))
    assert agent.call("job.wait", id=slow, timeout=60)["state"] == "cancelled"
    wait_until(lambda: agent.containers() == [], message="container left behind")


def test_cancel_several_and_errors(agent, image):
    ids = [_ok(agent.chooctl("submit", image, "sleep", "300")).strip() for _ in range(2)]
    assert _ok(agent.chooctl("cancel", *ids)).split() == ids
    for job_id in ids:
        assert agent.call("job.wait", id=job_id, timeout=60)["state"] == "cancelled"
    again = agent.chooctl("cancel", ids[0])
    assert again.returncode == 125 and "already ended" in again.stderr


def test_inspect_and_info(agent, image):
    job_id = _ok(agent.chooctl("run", "-d", image, "true")).strip()
    agent.chooctl("wait", job_id)
    records = json.loads(_ok(agent.chooctl("inspect", job_id, job_id[:15])))
    assert [r["id"] for r in records] == [job_id, job_id]
    info = json.loads(_ok(agent.chooctl("info", "--json")))
    assert info["jobs"]["succeeded"] == 1 and info["degraded"] is None
    text = _ok(agent.chooctl("info"))
    assert "1 succeeded" in text and "health:     ok" in text


def _line(process: subprocess.Popen, timeout: float) -> bytes | None:
    """The next line ``process`` prints (unbuffered stdout), or None after ``timeout``."""
    if not select.select([process.stdout], [], [], timeout)[0]:
        return None
    return process.stdout.readline()


def test_events_stream_json_and_text(agent, image):
    subscribers = [
        subprocess.Popen(
            [*agent.chooctl_argv(), "events", *form, "--name", "t"],
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        for form in (["--json"], [])
    ]
    # Each one is known to be subscribed once it printed the event of a probe
    # (a held job of the same name): no guess at how long chooctl takes to start.
    waiting = list(subscribers)
    for _ in range(60):
        if not waiting:
            break
        _ok(agent.chooctl("submit", "--hold", "--name", "t", image, "true"))
        waiting = [p for p in waiting if _line(p, 1.0) is None]
    assert not waiting, "a chooctl events never printed a probe's event"
    job_id = _ok(agent.chooctl("run", "-d", "--name", "t", image, "true")).strip()
    seen = []
    for process in subscribers:
        lines: list[str] = []
        while not lines or "succeeded" not in lines[-1]:
            line = _line(process, 60)
            assert line, f"chooctl events stopped after {lines}"
            if job_id.encode() in line:
                lines.append(line.decode())
        process.terminate()
        process.wait(10)
        seen.append(lines)
    events = [json.loads(x) for x in seen[0]]
    assert [e["state"] for e in events] == ["queued", "starting", "running", "succeeded"]
    assert [line.split()[4] for line in seen[1]] == [
        "queued",
        "starting",
        "running",
        "succeeded",
    ]
    # Filters and a timeout.
    done = agent.chooctl("events", "--job", job_id, "--timeout", "0.5")
    assert done.returncode == 0 and done.stdout == ""


def test_completion_scripts(agent):
    for shell in ("bash", "zsh", "fish"):
        assert "_CHOOCTL_COMPLETE" in _ok(agent.chooctl("completion", shell))


def _read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_run_on_a_terminal_streams_live_and_ctrl_c_cancels(agent, image):
    argv = [*agent.chooctl_argv(), "run", image, "sh", "-c", "echo first; sleep 300"]
    pid, master = pty.fork()
    if pid == 0:  # the child: chooctl with the pty as its controlling terminal
        os.execv(argv[0], argv)
    status = None
    try:
        assert b"first" in _read_until(master, b"first")  # live, while the job still runs
        job = agent.call("job.list")["jobs"][0]
        # Output read from the job's file can arrive before the agent has
        # recorded the start it comes from.
        agent.wait_state(job["id"], "running")
        os.write(master, b"\x03")  # Ctrl-C, through the terminal's line discipline
        assert b"cancelling job" in _read_until(master, b"cancelling")
        status = os.waitpid(pid, 0)[1]
    finally:
        os.close(master)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert ended["state"] == "cancelled"
    wait_until(lambda: agent.containers() == [], message="container left behind")


def test_run_on_a_terminal_says_when_it_pulls(agent):
    # Nothing listens on port 1: the pull starts (and is announced), then fails.
    argv = [*agent.chooctl_argv(), "run", "--pull", "always", "localhost:1/nothing", "true"]
    pid, master = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    try:
        output = _read_until(master, b"failed: image")
    finally:
        status = os.waitpid(pid, 0)[1]
        os.close(master)
    assert b"pulling image localhost:1/nothing" in output
    assert os.waitstatus_to_exitcode(status) == 125
    job = agent.call("job.list", all=True)["jobs"][0]
    assert (job["state"], job["reason"]) == ("failed", "image")
    assert "pulling" in [e["kind"] for e in agent.call("job.get", id=job["id"])["events"]]

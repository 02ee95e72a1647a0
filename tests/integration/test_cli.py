"""Every chooctl command against a real agent, with and without --json."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import threading
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


class _Lines:
    """A subprocess's stdout lines, gathered by a thread as they come."""

    def __init__(self, argv: list[str]):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def mentioning(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)


def _subscribed(agent, image, *streams: _Lines) -> None:
    """Return once every stream shows an event: held probe jobs are submitted
    until each stream has seen one (a subscription made is not yet visible)."""
    probes: list[str] = []

    def seen() -> bool:
        probes.append(_ok(agent.chooctl("submit", "-q", "--hold", image, "true")).strip())
        return all(any(s.mentioning(p) for p in probes) for s in streams)

    wait_until(seen, timeout=30, interval=0.2, message="events subscriptions never saw a probe")
    for probe in probes:
        _ok(agent.chooctl("cancel", probe))


def test_events_stream_json_and_text(agent, image):
    as_json = _Lines([*agent.chooctl_argv(), "events", "--json"])
    as_text = _Lines([*agent.chooctl_argv(), "events"])
    try:
        _subscribed(agent, image, as_json, as_text)
        job_id = _ok(agent.chooctl("run", "-d", image, "true")).strip()
        wait_until(
            lambda: len(as_json.mentioning(job_id)) == 4 and len(as_text.mentioning(job_id)) == 4,
            timeout=60,
            message="four events of the job in both streams",
        )
        events = [json.loads(line) for line in as_json.mentioning(job_id)]
        assert [e["state"] for e in events] == ["queued", "starting", "running", "succeeded"]
        assert [line.split()[4] for line in as_text.mentioning(job_id)] == [
            "queued",
            "starting",
            "running",
            "succeeded",
        ]
    finally:
        as_json.close()
        as_text.close()
    # --count ends the stream after that many events.
    counted = _Lines([*agent.chooctl_argv(), "events", "--json", "--count", "1"])
    try:
        _subscribed(agent, image, counted)
        assert counted.process.wait(timeout=30) == 0
        assert len(counted.lines) == 1
    finally:
        counted.close()
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

"""chooctl run and logs: exact bytes on each stream, and a job whose output cannot
be shown is still waited for (its exit status is chooctl's). No agent: the
client is a script."""

from __future__ import annotations

import base64

from click.testing import CliRunner

from agent.cli import jobs, main
from agent.protocol.errors import ChooError

ENDED = {"id": "J", "state": "failed", "reason": "exit", "exit_code": 3}


class Script:
    """The calls chooctl makes, answered from a script."""

    def __init__(self, *, follow_error: ChooError | None = None, ended=ENDED):
        self.follow_error = follow_error
        self.ended = ended
        self.waits = 0

    def get(self, job_id):
        return self.ended

    def submit(self, spec, trigger):
        return {"id": "J"}

    def follow(self, job_id, on_entry, *, tail=None, since=None, after=None, on_lost=None):
        if self.follow_error is not None:
            raise self.follow_error
        on_entry({"stream": "stdout", "text": "abc", "cursor": "1:1"})
        on_entry({"stream": "stderr", "data": base64.b64encode(b"\xff\r").decode()})
        on_entry({"stream": "stdout", "text": "\n", "cursor": "1:2"})
        return {"entries": 3, "job": self.ended}

    def wait(self, job_id, timeout=None):
        self.waits += 1
        return ENDED if self.waits > 1 else {**ENDED, "state": "running"}

    def output(self, job_id, *, tail=None, since=None):
        yield {"stream": "stdout", "data": base64.b64encode(b"\x00\x01").decode()}

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def invoke(monkeypatch, client, *args):
    monkeypatch.setattr(jobs, "connect", lambda ctx: client)
    return CliRunner().invoke(main, ["--socket", "/nonexistent", *args])


def test_run_writes_each_streams_exact_bytes_and_exits_with_the_jobs_code(monkeypatch):
    done = invoke(monkeypatch, Script(), "run", "img", "cmd")
    assert done.exit_code == 3
    assert done.stdout_bytes == b"abc\n"
    assert done.stderr_bytes == b"\xff\r"


def test_run_waits_for_the_job_when_its_output_cannot_be_shown(monkeypatch):
    client = Script(follow_error=ChooError("cannot read the output of job J: denied"))
    done = invoke(monkeypatch, client, "run", "img", "cmd")
    assert done.exit_code == 3 and client.waits == 2
    assert "cannot show the output of job J" in done.stderr
    assert "chooctl logs J" in done.stderr and "CONTAINER_NAME=choo-J" in done.stderr


def test_logs_writes_exact_bytes(monkeypatch):
    done = invoke(monkeypatch, Script(), "logs", "J")
    assert done.exit_code == 0 and done.stdout_bytes == b"\x00\x01"


CUT = {**ENDED, "log_dropped": 4096, "spec": {"max_log_bytes": 10240}}
NOTICE = "chooctl: job J: output past max_log_bytes (10240) was dropped (4096 bytes)"


def test_run_and_logs_say_on_stderr_that_output_was_dropped(monkeypatch):
    for args in (["run", "img", "cmd"], ["logs", "J"], ["logs", "-f", "J"]):
        done = invoke(monkeypatch, Script(ended=CUT), *args)
        assert NOTICE in done.stderr, args
        assert NOTICE.encode() not in done.stdout_bytes
        quiet = invoke(monkeypatch, Script(), *args)
        assert "max_log_bytes" not in quiet.stderr, args


def test_wait_gives_all_the_jobs_one_deadline(monkeypatch):
    """--timeout is one deadline for every ID, not a timeout each: the second
    wait gets what the first left of it."""
    now = [100.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now[0])
    timeouts = []

    class Slow(Script):
        def wait(self, job_id, timeout=None):
            timeouts.append(timeout)
            now[0] += 3.0  # each wait takes 3 s of the deadline
            return ENDED

    done = invoke(monkeypatch, Slow(), "wait", "--timeout", "10s", "A", "B", "C")
    assert done.exit_code == 3
    assert timeouts == [10.0, 7.0, 4.0]


def test_the_status_says_when_output_is_not_all_there():
    from agent.cli.output import status_text

    assert status_text({**ENDED, "log_dropped": 10}) == "failed (exit, 3), output cut"
    assert status_text({**ENDED, "log_lost": 5}) == "failed (exit, 3), output lost"
    assert status_text({"state": "succeeded", "log_dropped": 0, "log_lost": None}) == (
        "succeeded (0)"
    )

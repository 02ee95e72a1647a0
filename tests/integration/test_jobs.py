"""A job's whole life through the real agent, real Podman and the real journal."""

from __future__ import annotations

import json
import subprocess

import pytest

from agent.protocol.errors import InvalidTransition, NoSuchJob
from tests.harness import journal_entries, wait_until

pytestmark = pytest.mark.podman


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["true"], 0),
        (["sh", "-c", "exit 3"], 3),
    ],
)
def test_run_propagates_exit_code(agent, image, command, code):
    done = agent.chooctl("run", image, *command)
    assert done.returncode == code, done.stderr
    job = agent.call("job.list", all=True)["jobs"][0]
    assert job["state"] == ("succeeded" if code == 0 else "failed")
    assert job["exit_code"] == code
    assert [a["exit_code"] for a in agent.call("job.get", id=job["id"])["attempts"]] == [code]


def test_run_of_a_killed_job_exits_137(agent, image):
    run = subprocess.Popen(
        [*agent.chooctl_argv(), "run", image, "sh", "-c", "echo started; sleep 300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert run.stdout.readline() == "started\n"
    job = agent.call("job.list")["jobs"][0]
    subprocess.run(
        ["podman", "--url", agent.podman_url, "kill", "-s", "KILL", job["container"]], check=True
    )
    assert run.wait(30) == 137
    job = agent.call("job.get", id=job["id"])
    assert (job["state"], job["reason"], job["exit_code"]) == ("failed", "exit", 137)


def test_run_streams_stdout_and_stderr_and_exit_code(agent, image):
    done = agent.chooctl("run", image, "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == "hi\n"
    assert done.stderr == "oops\n"


def test_output_is_in_chooctl_logs_and_in_the_journal(agent, image):
    job_id = agent.chooctl(
        "run", "-d", image, "sh", "-c", "echo to-out; echo to-err >&2"
    ).stdout.strip()
    agent.call("job.wait", id=job_id, timeout=60)
    logs = agent.chooctl("logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "to-out\n" and logs.stderr == "to-err\n"

    entries = wait_until(
        lambda: len(journal_entries(job_id)) == 2 and journal_entries(job_id), what="both lines"
    )
    by_text = {e["MESSAGE"].strip(): e["PRIORITY"] for e in entries}
    assert by_text == {"to-out": "6", "to-err": "3"}
    # The container is gone, the output is not.
    wait_until(lambda: agent.containers() == [], what="no container left")


def test_failed_job_keeps_its_log_tail(agent, image):
    script = "for i in $(seq 1 150); do echo line$i; done; exit 1"
    job_id = agent.chooctl("run", "-d", image, "sh", "-c", script).stdout.strip()
    job = agent.call("job.wait", id=job_id, timeout=60)
    assert job["state"] == "failed" and job["reason"] == "exit"
    tail = job["log_tail"].splitlines()
    assert len(tail) == 100 and tail[0] == "line51" and tail[-1] == "line150"


def test_wait_returns_on_every_terminal_state(agent, image):
    ok = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    bad = agent.call("job.submit", spec={"image": image, "command": ["false"]})
    slow = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    assert agent.call("job.wait", id=ok["id"], timeout=60)["state"] == "succeeded"
    assert agent.call("job.wait", id=bad["id"], timeout=60)["state"] == "failed"
    agent.wait_state(slow["id"], "running")
    agent.call("job.cancel", id=slow["id"])
    assert agent.call("job.wait", id=slow["id"], timeout=60)["state"] == "cancelled"
    # And it returns the unfinished job when its own timeout passes first.
    pending = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    assert agent.call("job.wait", id=pending["id"], timeout=0.3)["state"] in (
        "queued",
        "starting",
        "running",
    )
    agent.call("job.cancel", id=pending["id"])
    agent.call("job.wait", id=pending["id"], timeout=60)


def test_cancel_running_job_stops_and_removes_it(agent, image):
    job = agent.call(
        "job.submit", spec={"image": image, "command": ["sleep", "300"], "stop_timeout": 2}
    )
    agent.wait_state(job["id"], "running")
    done = agent.chooctl("cancel", job["id"][:20])
    assert done.returncode == 0, done.stderr
    ended = agent.call("job.wait", id=job["id"], timeout=30)
    assert ended["state"] == "cancelled"  # how soon: tests/bench.py's "cancel" figure
    wait_until(lambda: agent.containers() == [], what="no container left")
    with pytest.raises(InvalidTransition):
        agent.call("job.cancel", id=job["id"])


def test_cancel_escalates_to_sigkill_after_grace(agent, image):
    job = agent.call(
        "job.submit",
        spec={
            "image": image,
            "command": ["sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"],
            "stop_timeout": 1,
        },
    )
    agent.wait_state(job["id"], "running")
    agent.call("job.cancel", id=job["id"])
    ended = agent.call("job.wait", id=job["id"], timeout=30)
    assert ended["state"] == "cancelled" and ended["exit_code"] == 137


def test_cancel_queued_job_is_immediate(make_agent, image):
    agent = make_agent(max_concurrent=1).start()
    blocker = agent.call("job.submit", spec={"image": image, "command": ["sleep", "300"]})
    queued = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert agent.call("job.cancel", id=queued["id"])["state"] == "cancelled"
    agent.call("job.cancel", id=blocker["id"])
    agent.call("job.wait", id=blocker["id"], timeout=30)
    assert agent.call("job.get", id=queued["id"])["attempts"] == []


def test_prefixes_and_unknown_ids(agent, image):
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    assert agent.call("job.get", id=job["id"][:18].lower())["id"] == job["id"]
    with pytest.raises(NoSuchJob):
        agent.call("job.get", id="0" * 26)
    done = agent.chooctl("inspect", "ZZZZ")
    assert done.returncode == 125 and "no job matches" in done.stderr
    agent.call("job.wait", id=job["id"], timeout=60)


def test_ps_json_quiet_and_inspect(agent, image):
    job_id = agent.chooctl(
        "run", "-d", "--name", "demo", "-l", "team=ci", image, "true"
    ).stdout.strip()
    agent.call("job.wait", id=job_id, timeout=60)
    assert agent.chooctl("ps", "-q").stdout == ""  # finished jobs need -a
    assert agent.chooctl("ps", "-a", "-q").stdout.split() == [job_id]
    rows = json.loads(agent.chooctl("ps", "-a", "--json").stdout)
    assert rows[0]["id"] == job_id and rows[0]["name"] == "demo"
    assert rows[0]["labels"] == {"team": "ci"} and "spec" not in rows[0]  # a summary
    table = agent.chooctl("ps", "-a").stdout
    assert "demo" in table and "succeeded" in table
    record = json.loads(agent.chooctl("inspect", job_id).stdout)[0]
    assert [e["state"] for e in record["events"]] == ["queued", "starting", "running", "succeeded"]
    assert record["attempts"][0]["container_id"]


def test_bad_image_fails_with_reason_image(agent):
    done = agent.chooctl("run", "--pull", "never", "localhost/no-such-image", "true")
    assert done.returncode == 125
    assert "image" in done.stderr
    job = agent.call("job.list", all=True)["jobs"][0]
    assert job["state"] == "failed" and job["reason"] == "image"


def test_missing_command_fails_with_127(agent, image):
    done = agent.chooctl("run", image, "/no/such/binary")
    assert done.returncode == 127, done.stderr
    job = agent.call("job.list", all=True)["jobs"][0]
    assert job["reason"] == "create"


def test_logs_follow_streams_until_the_job_ends(agent, image):
    job_id = agent.chooctl(
        "run", "-d", image, "sh", "-c", "echo one; sleep 1; echo two"
    ).stdout.strip()
    done = agent.chooctl("logs", "-f", job_id)
    assert done.returncode == 0
    assert done.stdout == "one\ntwo\n"
    assert agent.call("job.get", id=job_id)["state"] == "succeeded"

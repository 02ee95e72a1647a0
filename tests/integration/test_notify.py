"""Notifications against the real stack: a real agent, a loopback HTTP receiver
(a thread of the test), real signals, a real hook command.

The receiver refuses as told, and can hold a request until the test lets it
answer, so the agent can be SIGKILLed while a delivery is in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import signal
import threading

import pytest

from tests.harness import wait_until

pytestmark = pytest.mark.podman

KEY = b"integration-signing-key"


class Receiver:
    """A loopback webhook receiver: each request is answered from ``answers``
    (then 200); with ``hold`` set, the first waits for ``release``."""

    def __init__(self, answers=(), hold=False):
        self.answers = list(answers)
        self.requests: list[tuple[dict, bytes, int]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                first = not outer.arrived.is_set()
                outer.arrived.set()
                if first and outer.hold:
                    outer.release.wait(120)
                code = outer.answers.pop(0) if outer.answers else 200
                outer.requests.append((dict(self.headers), body, code))
                try:
                    self.send_response(code)
                    self.end_headers()
                except OSError:
                    pass  # the agent is gone

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/choo"

    def accepted(self) -> list[tuple[dict, bytes, int]]:
        return [r for r in self.requests if r[2] == 200]

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def credentials(tmp_path):
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700)
    (directory / "HOOK_KEY").write_bytes(KEY)
    return {"CREDENTIALS_DIRECTORY": str(directory)}


def _webhook_agent(make_agent, receiver, credentials):
    agent = make_agent(
        notify_targets={"ops": {"webhook": receiver.url, "secret": "HOOK_KEY"}},
        notify_backoff_base=0.2,
    )
    return agent.start(env=credentials)


def _delivery(agent, job_id, status):
    return agent.wait_job(
        job_id,
        lambda job: bool(job["notifications"]) and job["notifications"][0]["status"] == status,
        f"its notification {status}",
        timeout=60,
    )["notifications"][0]


def test_a_refused_webhook_is_tried_until_it_arrives_signed(make_agent, image, credentials):
    receiver = Receiver(answers=[503, 500])
    try:
        agent = _webhook_agent(make_agent, receiver, credentials)
        job = agent.call(
            "job.submit",
            spec={
                "image": image,
                "command": ["sh", "-c", "exit 3"],
                "notify": [{"target": "ops", "on": ["failed"]}],
            },
        )
        delivery = _delivery(agent, job["id"], "delivered")
        assert delivery["tries"] == 3 and delivery["last_error"] is None
        assert [code for _, _, code in receiver.requests] == [503, 500, 200]
        assert {h["Idempotency-Key"] for h, _, _ in receiver.requests} == {f"{job['id']}.ops"}
        headers, body, _ = receiver.accepted()[0]
        expected = "sha256=" + hmac.new(KEY, body, hashlib.sha256).hexdigest()
        assert headers["X-Choo-Signature"] == expected
        record = json.loads(body)
        assert (record["id"], record["state"], record["exit_code"]) == (job["id"], "failed", 3)
        shown = json.loads(agent.chooctl("inspect", job["id"]).stdout)[0]["notifications"]
        assert shown[0]["status"] == "delivered" and shown[0]["target"] == "ops"
        assert "notification to ops failed (try 1)" in agent.log()
    finally:
        receiver.close()


def test_a_delivery_cut_by_sigkill_is_made_after_restart(make_agent, image, credentials):
    receiver = Receiver(answers=[503], hold=True)
    try:
        agent = _webhook_agent(make_agent, receiver, credentials)
        job = agent.call(
            "job.submit",
            spec={"image": image, "command": ["true"], "notify": [{"target": "ops"}]},
        )
        # The first try reaches the receiver only once the end is committed.
        wait_until(receiver.arrived.is_set, 60, "the first delivery to arrive")
        agent.stop(signal.SIGKILL)
        receiver.release.set()  # the held try is refused, to an agent that is gone
        wait_until(lambda: len(receiver.requests) == 1, 30, "the held try to be answered")
        agent.start(env=credentials)
        delivery = _delivery(agent, job["id"], "delivered")
        assert len(receiver.accepted()) == 1
        assert {h["Idempotency-Key"] for h, _, _ in receiver.requests} == {f"{job['id']}.ops"}
        assert json.loads(receiver.accepted()[0][1])["state"] == "succeeded"
        assert delivery["tries"] == 1  # the cut try was never recorded
    finally:
        receiver.close()


def test_a_hook_command_sees_the_jobs_end_in_its_environment(make_agent, image, tmp_path):
    seen = tmp_path / "seen"
    script = tmp_path / "hook.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"env | grep ^CHOO_ | sort > {seen}.tmp\n"
        "echo hook says hi\n"
        f"mv {seen}.tmp {seen}\n"
    )
    script.chmod(0o755)
    agent = make_agent(
        notify_targets={"page": {"command": [str(script)], "timeout": 30}},
        notify=[{"target": "page", "name": "nightly", "on": ["retries_exhausted"]}],
        retry_backoff_base=0.5,
    ).start()
    other = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", "exit 4"]})
    job = agent.call(
        "job.submit",
        spec={"image": image, "name": "nightly", "command": ["sh", "-c", "exit 4"], "retries": 1},
    )
    wait_until(seen.exists, 120, "the hook to run")
    assert seen.read_text().splitlines() == [
        "CHOO_EVENT=retries_exhausted",
        "CHOO_EXIT_CODE=4",
        f"CHOO_IDEMPOTENCY_KEY={job['id']}.page",
        f"CHOO_JOB_ID={job['id']}",
        "CHOO_NAME=nightly",
        "CHOO_REASON=exit",
        "CHOO_STATE=failed",
    ]
    assert _delivery(agent, job["id"], "delivered")["event"] == "retries_exhausted"
    wait_until(lambda: "hook says hi" in agent.log(), 30, "the hook's output in the agent's log")
    assert agent.call("job.get", id=other["id"])["notifications"] == []  # another name

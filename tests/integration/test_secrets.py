"""Secrets reach the container and nothing else: not the database, the events,
the journal, the agent's log or any RPC response; and they are cleaned up.

The container proves it saw each value by printing its sha256 (printing the
value itself would put it in the journal, through the job's own output).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import HOLD, podman, release, wait_until

pytestmark = pytest.mark.podman

JOURNAL_DIRS = (Path("/run/log/journal"), Path("/var/log/journal"))


class Recorder:
    """A raw JSON-RPC client that keeps every byte the agent sends back."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")
        self.received = bytearray()
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            line = self.reader.readline()
            self.received += line
            message = json.loads(line)
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def close(self):
        self.sock.close()


def _sha(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _podman_secrets(url: str) -> list[str]:
    out = podman("--url", url, "secret", "ls", "--format", "{{.Name}}").stdout
    return out.split()


def _journal_bytes(since: float) -> bytes:
    """Every journal file's raw bytes, plus the decoded entries since ``since``
    (journald compresses large fields, which a raw search would miss)."""
    data = bytearray()
    for root in JOURNAL_DIRS:
        for path in root.rglob("*.journal*") if root.is_dir() else ():
            try:
                data += path.read_bytes()
            except PermissionError:
                pytest.fail(f"cannot read {path}: the test user must be in systemd-journal")
    export = subprocess.run(
        ["journalctl", "--no-pager", "-o", "export", f"--since=@{int(since) - 1}"],
        capture_output=True,
        timeout=120,
    )
    return bytes(data) + export.stdout


def _journal_lines_of(job_id: str) -> int:
    done = subprocess.run(
        ["journalctl", "--no-pager", "-q", "-o", "cat", f"CHOO_JOB_ID={job_id}"],
        capture_output=True,
    )
    return len(done.stdout.splitlines())


def _state_bytes(state_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file())


@pytest.fixture
def values(tmp_path):
    token = f"ghp_{secrets.token_hex(16)}".encode()
    key = f"deploy-{secrets.token_hex(16)}".encode()
    hidden = f"hidden-{secrets.token_hex(16)}".encode()
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "DEPLOY_KEY").write_bytes(key)
    return {"token": token, "key": key, "hidden": hidden, "credentials": credentials}


def test_a_secret_reaches_the_container_and_nothing_else(make_agent, podman_service, image, values):
    started = time.time()
    agent = make_agent().start(
        env={
            "GITHUB_TOKEN": values["token"].decode(),
            "NOT_ALLOWED": values["hidden"].decode(),  # not in secret_env: never handed out
            "CREDENTIALS_DIRECTORY": str(values["credentials"]),
        }
    )
    client = Recorder(agent.socket)
    info = client.call("agent.info")
    assert {"GITHUB_TOKEN", "DEPLOY_KEY"} <= set(info["secrets"])
    assert "NOT_ALLOWED" not in info["secrets"]
    script = (
        'printf %s "$GITHUB_TOKEN" | sha256sum; printf %s "$DEPLOY_KEY" | sha256sum; '
        'echo "missing=${MISSING_ONE-unset} notallowed=${NOT_ALLOWED-unset}"'
    )
    job = client.call(
        "job.submit",
        spec={
            "image": image,
            "command": ["sh", "-c", script],
            "secrets": ["GITHUB_TOKEN", "DEPLOY_KEY", "MISSING_ONE", "NOT_ALLOWED"],
            "labels": {"kind": "secret-test"},
        },
    )
    ended = client.call("job.wait", id=job["id"], timeout=60)
    assert ended["state"] == "succeeded", ended
    entries = client.call("job.logs", id=job["id"])["entries"]
    lines = "".join(entry["text"] for entry in entries).splitlines()
    assert lines[0].split()[0] == _sha(values["token"])
    assert lines[1].split()[0] == _sha(values["key"])
    assert lines[2] == "missing=unset notallowed=unset"
    record = client.call("job.get", id=job["id"])
    assert record["spec"]["secrets"] == ["GITHUB_TOKEN", "DEPLOY_KEY", "MISSING_ONE", "NOT_ALLOWED"]
    client.call("job.list", all=True, label="kind=secret-test")
    client.call("agent.info")
    client.close()

    # Cleaned up with the container, once the end is recorded: no secret of the job left.
    wait_until(
        lambda: not [s for s in _podman_secrets(podman_service.url) if job["id"] in s],
        what="the job's secrets removed with its container",
    )

    # The journal's copy of the output is shipped a moment after the job wrote it.
    wait_until(
        lambda: _journal_lines_of(job["id"]) >= 3, what="the journal copy of the job's output"
    )
    haystacks = {
        "RPC responses": bytes(client.received),
        "the state directory (database, WAL, job files)": _state_bytes(agent.state_dir),
        "the agent's log": agent.log_path.read_bytes(),
        "the journal": _journal_bytes(started),
    }
    # The searches can see: what was meant to be written is found.
    assert _sha(values["token"]).encode() in haystacks["the journal"]  # the job's output
    assert job["id"].encode() in haystacks["the state directory (database, WAL, job files)"]
    assert b"DEPLOY_KEY" in haystacks["RPC responses"]
    for value in (values["token"], values["key"], values["hidden"]):
        for where, data in haystacks.items():
            assert value not in data, f"a secret value leaked into {where}"


def test_secrets_are_removed_when_the_container_cannot_start(
    make_agent, podman_service, image, values
):
    agent = make_agent().start(env={"GITHUB_TOKEN": values["token"].decode()})
    job = agent.call(
        "job.submit",
        spec={
            "image": image,
            "command": ["true"],
            "user": "no-such-user",  # Podman fails to start it
            "secrets": ["GITHUB_TOKEN"],
        },
    )
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert (ended["state"], ended["reason"]) == ("failed", "create")
    assert not [s for s in _podman_secrets(podman_service.url) if job["id"] in s]
    assert values["token"] not in _state_bytes(agent.state_dir)
    assert values["token"] not in agent.log_path.read_bytes()


def test_chooctl_passes_secrets_by_name(make_agent, image, values):
    agent = make_agent().start(env={"GITHUB_TOKEN": values["token"].decode()})
    done = agent.chooctl(
        "run",
        "--secret",
        "GITHUB_TOKEN",
        image,
        "sh",
        "-c",
        'printf %s "$GITHUB_TOKEN" | sha256sum',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == _sha(values["token"])
    assert values["token"].decode() not in done.stdout + done.stderr


def _stored_config(url: str, name: str) -> bytes:
    """What Podman keeps of a container on disk: its inspect and its runtime config."""
    inspect = podman("--url", url, "inspect", name).stdout.encode()
    static = podman("--url", url, "inspect", "--format", "{{.StaticDir}}", name).stdout.strip()
    config = Path(static, "config.json")
    return inspect + (config.read_bytes() if config.exists() else b"")


def test_file_delivery_keeps_a_secret_out_of_podmans_stored_config(
    make_agent, podman_service, image, values
):
    """``secret_delivery = "file"``: the value is a file under /run/secrets, in no
    ``podman inspect`` and no config.json of the container; env delivery, on this
    Podman (before 5.3), is in both: the reason for the file mode."""
    token = values["token"]
    env = {"GITHUB_TOKEN": token.decode()}
    script = (
        'printf %s "$(cat "$GITHUB_TOKEN_FILE")" | sha256sum; '
        'echo "file=$GITHUB_TOKEN_FILE env=${GITHUB_TOKEN-unset}"; ' + HOLD
    )
    spec = {"image": image, "command": ["sh", "-c", script], "secrets": ["GITHUB_TOKEN"]}
    agent = make_agent(secret_delivery="file").start(env=env)
    job = agent.call("job.submit", spec=spec)["id"]
    wait_until(lambda: len(agent.output_lines(job)) >= 2, 60, "the job's first lines")
    assert token not in _stored_config(podman_service.url, f"choo-{job}")
    release(podman_service.url, job)  # podman exec needs the file secret: kept while it runs
    assert agent.call("job.wait", id=job, timeout=60)["state"] == "succeeded"
    wait_until(
        lambda: not [s for s in _podman_secrets(podman_service.url) if job in s],
        what="the job's secret removed with its container",
    )
    lines = agent.output_lines(job)
    assert lines[0].split()[0] == _sha(token)
    assert lines[1] == "file=/run/secrets/GITHUB_TOKEN env=unset"

    agent.stop()
    agent.write_config(secret_delivery="env")
    agent.start(env=env)
    spec = {**spec, "command": ["sh", "-c", HOLD]}
    job = agent.call("job.submit", spec=spec)["id"]
    agent.wait_state(job, "running")
    assert token in _stored_config(podman_service.url, f"choo-{job}")  # what the docs warn of
    release(podman_service.url, job)
    agent.call("job.wait", id=job, timeout=60)


def test_a_secret_left_by_an_agent_killed_mid_start_is_swept(
    podman_relay, make_agent, podman_service, image, values
):
    """SIGKILL once the container is created (its secret made, not yet removed),
    and the container removed behind the agent's back: the next agent's passes
    leave no secret of the job in Podman."""
    from tests.podman_relay import Rule

    env = {"GITHUB_TOKEN": values["token"].decode()}
    agent = make_agent(podman_url=podman_relay.url).start(env=env)
    killed = []

    def kill(request) -> None:
        if not killed:
            killed.append(request)
            agent.process.kill()

    podman_relay.add(Rule("POST", r"/containers/create", after=kill))
    spec = {"image": image, "command": ["false"], "secrets": ["GITHUB_TOKEN"], "retries": 0}
    job = agent.call("job.submit", spec=spec)["id"]
    agent.process.wait(60)
    assert [s for s in _podman_secrets(podman_service.url) if job in s]  # left behind
    podman("--url", podman_service.url, "rm", "-f", f"choo-{job}")
    podman_relay.clear()
    agent.start(env=env)
    agent.call("job.wait", id=job, timeout=60)
    wait_until(
        lambda: not [s for s in _podman_secrets(podman_service.url) if job in s],
        timeout=120,
        what="the job's secret swept",
    )


def test_a_secret_whose_removal_failed_is_swept_later(
    podman_relay, make_agent, podman_service, image, values
):
    """Podman refuses every secret removal while the job runs and ends: the secret
    stays, and a later sweep (once removals work again) takes it."""
    from tests.podman_relay import Rule

    agent = make_agent(podman_url=podman_relay.url).start(
        env={"GITHUB_TOKEN": values["token"].decode()}
    )
    refused = podman_relay.add(Rule("DELETE", r"/secrets/", refuse=True))
    spec = {"image": image, "command": ["true"], "secrets": ["GITHUB_TOKEN"]}
    job = agent.call("job.submit", spec=spec)["id"]
    assert agent.call("job.wait", id=job, timeout=60)["state"] == "succeeded"
    # The end removes the secret after it records the end: wait for that
    # removal (the second refused, after the one before the create).
    wait_until(lambda: refused.matched >= 2, timeout=60, what="the end's removal refused")
    assert [s for s in _podman_secrets(podman_service.url) if job in s]  # left behind
    podman_relay.clear()
    wait_until(
        lambda: not [s for s in _podman_secrets(podman_service.url) if job in s],
        timeout=150,
        what="the job's secret swept",
    )

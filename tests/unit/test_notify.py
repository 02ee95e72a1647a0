"""Notifications: rule and target shapes, which deliveries an end makes, the outbox
written with the end (a real SQLite file), and the notifier's tries against a
real loopback HTTP server and a real hook command."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import sqlite3
import threading

import pytest

from agent import config as configuration
from agent.adapters.secrets import Credentials
from agent.adapters.webhook import signature
from agent.api.checks import job_spec
from agent.config import Config, ConfigError
from agent.protocol import spec as specs
from agent.protocol.errors import InvalidParams
from agent.protocol.notify import parse_rules, parse_targets
from agent.protocol.states import State
from agent.rules import notify as rules
from agent.runtime.changes import ChangeFeed
from agent.runtime.notifier import Notifier
from agent.storage.store import Store

KEY = b"k3y-for-tests"


def finished(state="failed", *, retries=0, retries_left=0, name="nightly", notify=()):
    return {
        "id": "01JD0000000000000000000001",
        "name": name,
        "state": state,
        "retries_left": retries_left,
        "spec": {"retries": retries, "notify": list(notify)},
    }


# -- shapes ----------------------------------------------------------------------


def test_a_rule_defaults_to_any_end_and_keeps_its_events_once():
    assert parse_rules([{"target": "ops"}], "notify", named=False) == [
        {"on": ["any"], "target": "ops"}
    ]
    assert parse_rules([{"target": "ops", "on": "failed"}], "notify", named=True)[0]["on"] == [
        "failed"
    ]
    rule = parse_rules([{"target": "o", "on": ["failed", "failed"], "name": "n"}], "x", named=True)
    assert rule == [{"on": ["failed"], "target": "o", "name": "n"}]


@pytest.mark.parametrize(
    "value, words",
    [
        ({"target": "ops"}, "list"),
        ([{"on": ["failed"]}], "target"),
        ([{"target": "ops", "on": ["exploded"]}], "exploded"),
        ([{"target": "ops", "on": []}], "on"),
        ([{"target": "../x"}], "target name"),
        ([{"target": "ops", "name": "nightly"}], "name"),  # a job's rule has no name
        ([{"target": "ops", "command": ["/bin/sh"]}], "command"),
    ],
)
def test_a_bad_rule_of_a_spec_is_refused_naming_what(value, words):
    with pytest.raises(InvalidParams, match=words):
        specs.normalize({"image": "alpine", "notify": value})


def test_targets_are_webhooks_or_absolute_commands():
    targets = parse_targets(
        {
            "ops": {"webhook": "http://127.0.0.1:9/x", "secret": "HOOK_KEY"},
            "page": {"command": ["/usr/bin/env"], "timeout": 3},
        }
    )
    assert targets["ops"] == {
        "kind": "webhook",
        "webhook": "http://127.0.0.1:9/x",
        "secret": "HOOK_KEY",
        "timeout": 10.0,
    }
    assert targets["page"] == {"kind": "command", "command": ["/usr/bin/env"], "timeout": 3.0}
    for bad, words in [
        ({"x": {}}, "one of"),
        ({"x": {"webhook": "ftp://h", "command": ["/x"]}}, "one of"),
        ({"x": {"webhook": "ftp://h"}}, "http"),
        ({"x": {"command": ["env"]}}, "absolute"),
        ({"x": {"webhook": "http://h", "secret": "a-b"}}, "credential"),
        ({"x": {"command": ["/x"], "timeout": 0}}, "timeout"),
        ({"x": {"command": ["/x"], "url": "http://h"}}, "unknown"),
    ]:
        with pytest.raises(InvalidParams, match=words):
            parse_targets(bad)


def test_the_config_checks_its_rules_name_a_target(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[notify_targets.ops]\nwebhook = "http://h/"\n[[notify]]\ntarget = "nope"\n')
    with pytest.raises(ConfigError, match="'nope' names no target"):
        configuration.load(path)
    path.write_text('[notify_targets.ops]\nwebhook = "http://h/"\n[[notify]]\ntarget = "ops"\n')
    config = configuration.load(path)
    assert config.notify == [{"on": ["any"], "target": "ops"}]
    assert config.notify_targets["ops"]["kind"] == "webhook"
    path.write_text('[notify_targets.ops]\nhook = "/bin/true"\n')
    with pytest.raises(ConfigError, match="notify_targets.ops"):
        configuration.load(path)


def test_a_submit_naming_an_unknown_target_is_refused_with_the_known_ones():
    config = Config(notify_targets=parse_targets({"ops": {"webhook": "http://h/"}}))
    with pytest.raises(InvalidParams, match=r"no target named 'pager'.*ops"):
        job_spec({"image": "alpine", "notify": [{"target": "pager"}]}, config)
    assert job_spec({"image": "alpine", "notify": [{"target": "ops"}]}, config)["notify"]


# -- which deliveries ------------------------------------------------------------


def test_retries_exhausted_is_a_failure_after_every_retry():
    assert rules.events_of(finished(retries=2)) == {"any", "failed", "retries_exhausted"}
    assert rules.events_of(finished(retries=0)) == {"any", "failed"}
    assert rules.events_of(finished("succeeded", retries=2)) == {"any", "succeeded"}


def test_one_delivery_per_target_from_config_and_job_rules():
    config_rules = [
        {"on": ["succeeded"], "target": "ops"},
        {"on": ["failed"], "target": "ops"},
        {"on": ["any"], "target": "page", "name": "other"},
        {"on": ["retries_exhausted"], "target": "page", "name": "nightly"},
    ]
    job = finished(retries=1, notify=[{"on": ["any"], "target": "mine"}])
    assert rules.plan(job, config_rules) == [
        ("ops", "failed"),
        ("page", "retries_exhausted"),
        ("mine", "any"),
    ]
    assert rules.plan(finished("cancelled"), config_rules) == []


def test_retry_delays_double_up_to_the_cap():
    assert [rules.retry_delay(n, 5, 30) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


# -- the outbox --------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "choo.db", ChangeFeed())
    store.notify_plan = lambda job: rules.plan(job, [{"on": ["failed"], "target": "ops"}])
    store.open()
    yield store
    store.close()


def _run_to(store, state, **fields):
    job = store.add_job(specs.normalize({"image": "alpine"}), trigger="cli", queue_limit=10)
    store.transition(job["id"], State.STARTING, new_attempt="cli")
    store.transition(job["id"], State.RUNNING)
    store.transition(job["id"], state, **fields)
    return job["id"]


def test_an_end_and_its_deliveries_are_committed_together(store, tmp_path):
    failed = _run_to(store, State.FAILED, reason="exit", exit_code=3)
    succeeded = _run_to(store, State.SUCCEEDED)
    [delivery] = store.notifications(failed)
    assert delivery["target"] == "ops" and delivery["status"] == "pending"
    assert delivery["key"] == f"{failed}.ops" and delivery["event"] == "failed"
    assert store.notifications(succeeded) == []

    def broken_plan(job):
        raise RuntimeError("the plan failed")

    store.notify_plan = broken_plan
    job = store.add_job(specs.normalize({"image": "alpine"}), trigger="cli", queue_limit=10)
    store.transition(job["id"], State.STARTING, new_attempt="cli")
    with pytest.raises(RuntimeError):
        store.transition(job["id"], State.FAILED, reason="create")
    assert store.get(job["id"])["state"] == "starting"  # no end without its notifications
    with sqlite3.connect(tmp_path / "choo.db") as con:
        assert con.execute("SELECT COUNT(*) FROM notification").fetchone() == (1,)


def test_removing_a_job_removes_its_deliveries(store, tmp_path):
    first, second = _run_to(store, State.FAILED), _run_to(store, State.FAILED)
    store.remove_job(first)
    store.remove_jobs([second])
    with sqlite3.connect(tmp_path / "choo.db") as con:
        assert con.execute("SELECT COUNT(*) FROM notification").fetchone() == (0,)


# -- the notifier against real receivers -------------------------------------------


class Receiver(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []
    got: list[tuple[dict, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((dict(self.headers), body))
        code = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"busy" if code >= 400 else b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.answers, Receiver.got = [503, 500], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def _notifier(store, tmp_path, targets, **settings):
    credentials = tmp_path / "credentials"
    credentials.mkdir(exist_ok=True)
    (credentials / "HOOK_KEY").write_bytes(KEY)
    config = Config(notify_targets=parse_targets(targets), **settings)
    return Notifier(store, store.feed, config, Credentials(config, directory=credentials))


def test_refused_twice_then_delivered_signed_with_one_key(store, tmp_path, receiver):
    job_id = _run_to(store, State.FAILED, reason="exit", exit_code=3)
    notifier = _notifier(
        store, tmp_path, {"ops": {"webhook": receiver, "secret": "HOOK_KEY"}}, notify_backoff_base=0
    )
    for _ in range(3):
        assert notifier.deliver_due() == 1
    assert notifier.deliver_due() == 0
    [delivery] = store.notifications(job_id)
    assert delivery["status"] == "delivered" and delivery["tries"] == 3
    assert len(Receiver.got) == 3
    keys = {headers["Idempotency-Key"] for headers, _ in Receiver.got}
    assert keys == {f"{job_id}.ops"}
    headers, body = Receiver.got[-1]
    expected = "sha256=" + hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert headers["X-Choo-Signature"] == expected == signature(body, KEY)
    record = json.loads(body)
    assert record["id"] == job_id and record["state"] == "failed" and record["exit_code"] == 3


def test_a_delivery_out_of_tries_is_failed_with_its_last_error(store, tmp_path, receiver):
    job_id = _run_to(store, State.FAILED)
    notifier = _notifier(
        store, tmp_path, {"ops": {"webhook": receiver}}, notify_max_tries=2, notify_backoff_base=0
    )
    notifier.deliver_due()
    assert store.notifications(job_id)[0]["status"] == "pending"
    notifier.deliver_due()
    [delivery] = store.notifications(job_id)
    assert delivery["status"] == "failed" and delivery["tries"] == 2
    assert "answered 500" in delivery["last_error"] and "busy" in delivery["last_error"]
    assert "X-Choo-Signature" not in Receiver.got[0][0]  # no secret: unsigned


def test_a_missing_credential_or_target_says_what_to_do(store, tmp_path):
    job_id = _run_to(store, State.FAILED)
    notifier = _notifier(
        store,
        tmp_path,
        {"ops": {"webhook": "http://127.0.0.1:9/", "secret": "ABSENT"}},
        notify_backoff_base=0,
    )
    notifier.deliver_due()
    assert (
        "ABSENT is not in the agent's credential source"
        in (store.notifications(job_id)[0]["last_error"])
    )
    notifier.config.notify_targets = {}
    notifier.deliver_due()
    assert "no notify target named 'ops'" in store.notifications(job_id)[0]["last_error"]


def test_a_hook_command_gets_the_jobs_variables_and_its_record(store, tmp_path):
    job_id = _run_to(store, State.FAILED, reason="exit", exit_code=7)
    out = tmp_path / "seen"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\nenv | grep ^CHOO_ | sort > {out}\ncat >> {out}\necho said hi\n")
    script.chmod(0o755)
    notifier = _notifier(store, tmp_path, {"ops": {"command": [str(script)]}})
    notifier.deliver_due()
    assert store.notifications(job_id)[0]["status"] == "delivered"
    lines = out.read_text().splitlines()
    assert lines[:7] == [
        "CHOO_EVENT=failed",
        "CHOO_EXIT_CODE=7",
        f"CHOO_IDEMPOTENCY_KEY={job_id}.ops",
        f"CHOO_JOB_ID={job_id}",
        "CHOO_NAME=",
        "CHOO_REASON=exit",
        "CHOO_STATE=failed",
    ]
    assert json.loads(lines[7])["id"] == job_id


def test_a_hook_that_fails_or_hangs_is_tried_again(store, tmp_path):
    job_id = _run_to(store, State.FAILED)
    notifier = _notifier(
        store, tmp_path, {"ops": {"command": ["/bin/false"]}}, notify_backoff_base=0
    )
    notifier.deliver_due()
    assert "exited with status 1" in store.notifications(job_id)[0]["last_error"]
    notifier.config.notify_targets = parse_targets(
        {"ops": {"command": ["/bin/sleep", "30"], "timeout": 0.2}}
    )
    notifier.deliver_due()
    [delivery] = store.notifications(job_id)
    assert (
        delivery["status"] == "pending" and "did not finish within 0.2s" in delivery["last_error"]
    )

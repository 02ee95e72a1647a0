"""chooctl's exit status for a finished job, and the spec it builds from options."""

from __future__ import annotations

import click
import pytest

from agent.cli.output import exit_status
from agent.cli.spec_options import build_spec as _build_spec
from agent.protocol import spec as specs


def finished(state: str, reason: str | None = None, exit_code=None, log_tail=None) -> dict:
    return {
        "id": "01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "state": state,
        "reason": reason,
        "exit_code": exit_code,
        "log_tail": log_tail,
    }


# -- exit_status ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "status"),
    [
        pytest.param(finished("succeeded", exit_code=0), 0, id="succeeded"),
        pytest.param(finished("succeeded"), 0, id="succeeded-no-code"),
        pytest.param(finished("failed", "exit", 1), 1, id="exit-1"),
        pytest.param(finished("failed", "exit", 3), 3, id="exit-3"),
        pytest.param(finished("failed", "exit", 255), 255, id="exit-255"),
        pytest.param(finished("failed", "oom", 137), 137, id="oom-killed"),
        pytest.param(finished("failed", "timeout", 143), 143, id="timeout-with-code"),
        pytest.param(finished("failed", "timeout"), 125, id="timeout-no-code"),
        pytest.param(finished("failed", "lost"), 125, id="lost"),
        pytest.param(finished("failed", "image", log_tail="manifest unknown"), 125, id="image"),
        pytest.param(finished("cancelled"), 130, id="cancelled"),
        pytest.param(finished("cancelled", exit_code=143), 143, id="cancelled-with-code"),
        pytest.param(
            finished("failed", "create", log_tail='"nosuchcmd": executable file not found'),
            127,
            id="create-not-found",
        ),
        pytest.param(
            finished("failed", "create", log_tail="/bin/x: No such file or directory"),
            127,
            id="create-no-such-file",
        ),
        pytest.param(
            finished("failed", "create", log_tail="exec /data/run.sh: Permission denied"),
            126,
            id="create-permission-denied",
        ),
        pytest.param(
            finished("failed", "create", log_tail="OCI runtime error: cgroup"),
            125,
            id="create-other",
        ),
        pytest.param(finished("failed", "create"), 125, id="create-no-tail"),
        pytest.param(
            finished("failed", "exit", 2, log_tail="sh: foo: not found"),
            2,
            id="own-code-wins-over-tail",
        ),
        pytest.param(
            finished("failed", "lost", log_tail="executable file not found"),
            125,
            id="tail-matters-only-for-create",
        ),
    ],
)
def test_exit_status(job, status):
    assert exit_status(job) == status


def test_exit_status_works_without_optional_members():
    assert exit_status({"state": "failed"}) == 125
    assert exit_status({"state": "cancelled"}) == 130
    assert exit_status({"state": "failed", "exit_code": 9}) == 9


# -- _build_spec ---------------------------------------------------------------

NO_OPTIONS = {
    "env": (),
    "secrets": (),
    "labels": (),
    "memory": None,
    "cpus": None,
    "pids": None,
    "name": None,
    "timeout": None,
    "idle_timeout": None,
    "stop_timeout": None,
    "max_log_bytes": None,
    "pull": None,
    "retries": None,
    "network": None,
    "workdir": None,
    "workspace": None,
    "user": None,
    "priority": None,
    "notify": (),
    "caches": (),
    "after": (),
    "retry_on": (),
}


def build(image="alpine", command=(), **options):
    unknown = set(options) - set(NO_OPTIONS)
    assert not unknown, f"not a chooctl option: {unknown}"
    return _build_spec(image, command, {**NO_OPTIONS, **options})


def test_no_options_give_image_and_command_only():
    assert build("alpine", ("echo", "hi there")) == {
        "image": "alpine",
        "command": ["echo", "hi there"],
    }


def test_every_option_reaches_the_spec():
    spec = build(
        "localhost/app",
        ("sh", "-c", "exit 3"),
        env=("A=1", "B=x=y", "EMPTY="),
        secrets=("GITHUB_TOKEN", "DEPLOY_KEY"),
        labels=("team=infra", "tier=gold"),
        memory="512m",
        cpus=1.5,
        pids=64,
        name="nightly",
        timeout="30m",
        stop_timeout="5s",
        max_log_bytes="10k",
        pull="always",
        retries=2,
        network="default",
        workdir="/src",
        workspace="/home/me/project/",
        user="1000",
        priority=-3,
        notify=("ops", "pager:failed,retries_exhausted"),
        caches=("pip=/root/.cache/pip",),
        after=("01JABC", "01JDEF:failed"),
        retry_on=("lost", "exit:75,76", "not-exit:1"),
    )
    assert spec == {
        "image": "localhost/app",
        "command": ["sh", "-c", "exit 3"],
        "env": {"A": "1", "B": "x=y", "EMPTY": ""},
        "secrets": ["GITHUB_TOKEN", "DEPLOY_KEY"],
        "labels": {"team": "infra", "tier": "gold"},
        "resources": {"memory": "512m", "cpus": 1.5, "pids": 64},
        "name": "nightly",
        "timeout": "30m",
        "stop_timeout": "5s",
        "max_log_bytes": "10k",
        "pull": "always",
        "retries": 2,
        "network": "default",
        "workdir": "/src",
        "workspace": "/home/me/project",
        "user": "1000",
        "priority": -3,
        "notify": [
            {"target": "ops", "on": ["any"]},
            {"target": "pager", "on": ["failed", "retries_exhausted"]},
        ],
        "caches": {"pip": "/root/.cache/pip"},
        "after": ["01JABC", "01JDEF:failed"],
        "retry_on": {"reasons": ["lost", "exit"], "exit_codes": [75, 76], "not_exit_codes": [1]},
    }
    normalized = specs.normalize(spec)
    assert normalized["timeout"] == 1800.0
    assert normalized["max_log_bytes"] == 10 * 1024
    assert normalized["resources"] == {"memory": 512 * 1024**2, "cpus": 1.5, "pids": 64}


def test_only_the_given_resources_are_sent():
    assert build(cpus=2.0)["resources"] == {"cpus": 2.0}
    assert "resources" not in build()


def test_zero_values_are_sent_not_dropped():
    spec = build(priority=0, retries=0, cpus=0.0)
    assert spec["priority"] == 0
    assert spec["retries"] == 0
    assert spec["resources"] == {"cpus": 0.0}


def test_later_env_value_wins():
    assert build(env=("A=1", "A=2"))["env"] == {"A": "2"}


def test_env_name_alone_passes_the_callers_value(monkeypatch):
    monkeypatch.setenv("CHOO_TEST_PASSED", "from-caller")
    assert build(env=("CHOO_TEST_PASSED",))["env"] == {"CHOO_TEST_PASSED": "from-caller"}


def test_env_name_alone_that_is_not_set_is_refused(monkeypatch):
    monkeypatch.delenv("CHOO_TEST_UNSET", raising=False)
    with pytest.raises(click.BadParameter, match="CHOO_TEST_UNSET"):
        build(env=("CHOO_TEST_UNSET",))


def test_label_needs_a_value_even_if_an_env_var_has_its_name(monkeypatch):
    monkeypatch.setenv("team", "infra")
    with pytest.raises(click.BadParameter, match="label"):
        build(labels=("team",))


def test_command_is_a_new_list():
    command = ("echo", "a")
    spec = build(command=command)
    assert spec["command"] == ["echo", "a"]
    assert isinstance(spec["command"], list)


def test_a_relative_workspace_is_sent_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert build(workspace="src")["workspace"] == str(tmp_path / "src")


@pytest.mark.parametrize("rule", ["exit:seventy", "weather:1", "not-exit:"])
def test_a_bad_retry_on_rule_is_refused_before_sending(rule):
    with pytest.raises(click.BadParameter, match="--retry-on|exit codes|a reason"):
        build(retry_on=(rule,))

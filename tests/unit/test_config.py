"""agent.config: the Config dataclass, loaded from TOML plus defaults and overrides."""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as configuration
from agent.config import RELOADABLE, Config, ConfigError, load, own_ulimits


@pytest.fixture
def toml(tmp_path):
    """Write a TOML file and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "agent.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No config file anywhere the agent looks, and no systemd directories."""
    for var in (
        "CHOO_CONFIG",
        "CONFIGURATION_DIRECTORY",
        "STATE_DIRECTORY",
        "RUNTIME_DIRECTORY",
        "XDG_STATE_HOME",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    # Running as root, the system file is a candidate too; keep it out of reach.
    monkeypatch.setattr(configuration, "SYSTEM_CONFIG", tmp_path / "etc" / "agent.toml")
    return tmp_path


# -- defaults ------------------------------------------------------------------


def test_defaults_with_no_file(clean_env):
    config = load()
    assert config.socket == clean_env / "run" / "choo" / "agent.sock"
    assert config.state_dir == clean_env / "home" / ".local" / "state" / "choo"
    assert config.database == config.state_dir / "choo.db"
    assert config.max_concurrent == 4
    assert config.queue_limit == 1000
    assert config.name_limits == {}
    assert config.log_level == "info"
    assert config.default_stop_timeout == 10.0
    assert config.stop_containers_on_exit is False
    assert config.ulimits == own_ulimits()


def test_empty_file_gives_the_defaults(clean_env, toml):
    assert load(toml("")) == load()


def test_user_config_file_is_found(clean_env):
    path = clean_env / "home" / ".config" / "choo" / "agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text("max_concurrent = 7\n")
    assert load().max_concurrent == 7


def test_choo_config_env_names_the_file(clean_env, toml, monkeypatch):
    monkeypatch.setenv("CHOO_CONFIG", str(toml("queue_limit = 3\n")))
    assert load().queue_limit == 3


def test_systemd_directories_pick_the_defaults(clean_env, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/choo:/var/lib/other")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/choo")
    config = load()
    assert config.state_dir == Path("/var/lib/choo")
    assert config.socket == Path("/run/choo/agent.sock")


def test_xdg_state_home_is_honoured(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(clean_env / "xdg"))
    assert load().state_dir == clean_env / "xdg" / "choo"


# -- reading a file ------------------------------------------------------------


def test_values_from_file(toml, tmp_path):
    config = load(
        toml(
            """
            socket = "/tmp/x/agent.sock"
            state_dir = "~/choo-state"
            log_level = "debug"
            max_concurrent = 2
            queue_limit = 50
            name_limits = { build = 1, test = 3 }
            default_timeout = 60
            retry_backoff_base = 0.5
            keep_containers = true
            allowed_users = ["alice", "bob"]
            ulimits = { nofile = [64, 128] }
            """
        )
    )
    assert config.socket == Path("/tmp/x/agent.sock")
    assert config.state_dir == Path.home() / "choo-state"
    assert config.log_level == "debug"
    assert config.max_concurrent == 2
    assert config.queue_limit == 50
    assert config.name_limits == {"build": 1, "test": 3}
    assert config.default_timeout == 60.0 and isinstance(config.default_timeout, float)
    assert config.retry_backoff_base == 0.5
    assert config.keep_containers is True
    assert config.allowed_users == ["alice", "bob"]
    assert config.ulimits == {"nofile": [64, 128]}


def test_missing_file_is_an_error(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=str(path)):
        load(path)


def test_invalid_toml_is_an_error(toml):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(toml("max_concurrent = = 3\n"))


@pytest.mark.parametrize("key", ["max_concurent", "Max_concurrent", "podman", "timeout"])
def test_unknown_key_is_named(toml, key):
    with pytest.raises(ConfigError) as excinfo:
        load(toml(f"{key} = 1\n"))
    assert repr(key) in excinfo.value.message


def test_log_driver_is_retired_with_a_reason(toml):
    with pytest.raises(ConfigError) as excinfo:
        load(toml('log_driver = "journald"\n'))
    assert "'log_driver'" in excinfo.value.message
    assert "always kept by the agent" in excinfo.value.message


def test_unknown_table_is_named(toml):
    with pytest.raises(ConfigError, match="'agent'"):
        load(toml("[agent]\nmax_concurrent = 2\n"))


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('max_concurrent = "4"', "max_concurrent"),
        ("max_concurrent = 2.5", "max_concurrent"),
        ("max_concurrent = true", "max_concurrent"),
        ("queue_limit = -1", "queue_limit"),
        ('default_timeout = "30m"', "default_timeout"),
        ("default_timeout = -1.0", "default_timeout"),
        ("resync_interval = false", "resync_interval"),
        ('keep_containers = "yes"', "keep_containers"),
        ("keep_containers = 1", "keep_containers"),
        ("socket = 5", "socket"),
        ('state_dir = ""', "state_dir"),
        ("log_level = 3", "log_level"),
        ('log_level = "verbose"', "log_level"),
        ('allowed_users = "alice"', "allowed_users"),
        ("allowed_groups = [1000]", "allowed_groups"),
        ("name_limits = [1]", "name_limits"),
        ("name_limits = { build = 0 }", "name_limits.build"),
        ('name_limits = { build = "1" }', "name_limits.build"),
        ("name_limits = { build = true }", "name_limits.build"),
        ("max_concurrent = 0", "max_concurrent"),
        ("ulimits = [1, 2]", "ulimits"),
        ("ulimits = { nofile = 1024 }", "ulimits.nofile"),
        ("ulimits = { nofile = [1024] }", "ulimits.nofile"),
        ("ulimits = { nofile = [1, 2, 3] }", "ulimits.nofile"),
        ("ulimits = { nofile = [2048, 1024] }", "ulimits.nofile"),
        ("ulimits = { nofile = [-1, 1024] }", "ulimits.nofile"),
        ('ulimits = { nofile = ["1", "2"] }', "ulimits.nofile"),
    ],
)
def test_wrong_values_are_refused_naming_the_key(toml, line, key):
    with pytest.raises(ConfigError) as excinfo:
        load(toml(line + "\n"))
    assert excinfo.value.message.startswith(key)


# -- overrides -----------------------------------------------------------------


def test_overrides_win_over_the_file(toml):
    path = toml('max_concurrent = 2\nlog_level = "error"\n')
    config = load(path, {"max_concurrent": 9, "state_dir": "/tmp/st"})
    assert config.max_concurrent == 9
    assert config.state_dir == Path("/tmp/st")
    assert config.log_level == "error"


def test_overrides_are_validated(toml):
    with pytest.raises(ConfigError, match="^log_level"):
        load(toml(""), {"log_level": "loud"})
    with pytest.raises(ConfigError, match="'nonsense'"):
        load(toml(""), {"nonsense": 1})


def test_each_load_starts_from_fresh_defaults(toml):
    first = load(toml('name_limits = { a = 1 }\nallowed_users = ["x"]\n'))
    second = load(toml(""))
    assert first.name_limits == {"a": 1}
    assert second.name_limits == {} and second.allowed_users == []


# -- the table of settings -----------------------------------------------------


def test_reloadable_settings_are_real_fields():
    assert {f.name for f in dataclasses.fields(Config)} >= RELOADABLE


def test_settings_that_bind_resources_are_not_reloadable():
    assert not RELOADABLE & {"socket", "state_dir", "podman_url"}


# -- ulimits -------------------------------------------------------------------


def _hard_limit(which: int) -> int:
    value = resource.getrlimit(which)[1]
    return 1 << 20 if value == resource.RLIM_INFINITY else value


def test_own_ulimits_never_exceed_the_process_hard_limits():
    limits = own_ulimits()
    assert set(limits) == {"nofile", "nproc"}
    for key, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = limits[key]
        assert 0 < soft <= hard <= _hard_limit(which)
    assert limits["nofile"][0] <= 1024
    assert limits["nproc"][1] <= 4096


def test_own_ulimits_follow_a_lowered_hard_limit():
    # Lower the hard limits in a child process (they cannot be raised again).
    code = (
        "import json, resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
        "resource.setrlimit(resource.RLIMIT_NPROC, (100, 100))\n"
        "from agent.config import own_ulimits\n"
        "print(json.dumps(own_ulimits()))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == {"nofile": [300, 300], "nproc": [100, 100]}


def test_own_ulimits_pass_the_config_check(toml):
    limits = own_ulimits()
    text = "ulimits = { " + ", ".join(f"{k} = {v}" for k, v in limits.items()) + " }\n"
    assert load(toml(text)).ulimits == limits


# -- the output cap ------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected", [('"100m"', 100 * 1024**2), ("4096", 4096), ("0", 0), ('"0"', 0)]
)
def test_max_log_bytes_is_a_size_kept_as_bytes(toml, value, expected):
    assert load(toml(f"max_log_bytes = {value}\n")).max_log_bytes == expected


@pytest.mark.parametrize(
    "text",
    [
        'max_log_bytes = "lots"',
        "max_log_bytes = -1",
        'log_limit_action = "drop"',
        "log_limit_action = 1",
    ],
)
def test_a_bad_output_cap_setting_is_named(toml, text):
    with pytest.raises(ConfigError, match=text.split()[0]):
        load(toml(text + "\n"))


def test_the_output_cap_is_off_and_truncates_by_default():
    assert (Config().max_log_bytes, Config().log_limit_action) == (0, "truncate")

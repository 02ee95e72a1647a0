"""agent.config: the socket limits, container hardening and secrets keys."""

from __future__ import annotations

import pytest

from agent import config as configuration
from agent.config import ConfigError
from agent.runtime.launch import hardening


def load(tmp_path, text: str):
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return configuration.load(path)


def test_defaults():
    config = configuration.Config()
    assert (config.max_connections, config.request_timeout) == (256, 30.0)
    assert config.no_new_privileges and not config.read_only_rootfs
    assert "SETPCAP" not in config.container_caps
    assert config.secret_env == [
        "GITHUB_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "SSH_AUTH_SOCK",
    ]


def test_default_memory_takes_bytes_or_a_size(tmp_path):
    assert load(tmp_path, "default_memory = 1073741824\n").default_memory == "1073741824"
    assert hardening(load(tmp_path, 'default_memory = "1g"\n')).memory == 1024**3
    assert hardening(load(tmp_path, 'default_memory = ""\n')).memory == 0
    assert hardening(load(tmp_path, "default_memory = 0\n")).memory == 0


def test_hardening_from_config(tmp_path):
    config = load(
        tmp_path,
        'container_caps = ["cap_chown", "KILL"]\nno_new_privileges = false\n'
        "default_pids = 0\nread_only_rootfs = true\n",
    )
    policy = hardening(config)
    assert policy.caps == ("CHOWN", "KILL")
    assert (policy.no_new_privileges, policy.pids, policy.read_only) == (False, 0, True)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('default_memory = "lots"\n', "default_memory"),
        ("default_memory = true\n", "default_memory"),
        ('container_caps = ["CHOWN; rm"]\n', "container_caps"),
        ('secret_env = ["NOT-A-NAME"]\n', "secret_env"),
        ("max_connections = 0\n", "max_connections"),
        ("max_request_bytes = 10\n", "max_request_bytes"),
        ("request_timeout = -1\n", "request_timeout"),
    ],
)
def test_bad_values_name_their_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path, text)
    assert excinfo.value.message.startswith(key), excinfo.value.message

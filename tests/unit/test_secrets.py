"""agent.adapters.secrets.Credentials: where a job's secret values come from."""

from __future__ import annotations

import logging
import re

import pytest

from agent import config as configuration
from agent.adapters.secrets import MAX_SECRET_BYTES, Credentials
from agent.config import Config


@pytest.fixture
def creds_dir(tmp_path):
    path = tmp_path / "credentials"
    path.mkdir()
    (path / "DEPLOY_KEY").write_bytes(b"from-file")
    (path / "GITHUB_TOKEN").write_bytes(b"file-wins")
    (path / "EMPTY").write_bytes(b"")
    (path / "HUGE").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    (path / "NUL").write_bytes(b"a\0b")
    (path / "ADIR").mkdir()
    return path


ENVIRON = {b"GITHUB_TOKEN": b"from-env", b"OPENAI_API_KEY": b"sk-1", b"HOME": b"/root"}


def credentials(directory=None, **settings):
    return Credentials(Config(**settings), environ=ENVIRON, directory=directory or "")


def test_directory_first_then_allowed_environment(creds_dir):
    values = credentials(creds_dir).resolve(["DEPLOY_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY"])
    assert values == {
        "DEPLOY_KEY": b"from-file",
        "GITHUB_TOKEN": b"file-wins",
        "OPENAI_API_KEY": b"sk-1",
    }


def test_environment_only_for_names_in_secret_env():
    assert credentials().resolve(["HOME", "GITHUB_TOKEN"]) == {"GITHUB_TOKEN": b"from-env"}
    assert credentials(secret_env=["HOME"]).resolve(["HOME", "GITHUB_TOKEN"]) == {"HOME": b"/root"}


def test_missing_empty_huge_or_nul_values_are_left_out(creds_dir, caplog):
    caplog.set_level(logging.INFO)
    names = ["MISSING", "EMPTY", "HUGE", "NUL", "ADIR"]
    assert credentials(creds_dir).resolve(names, "JOB1") == {}
    text = caplog.text
    for name in names:
        assert name in text
    assert "a\0b" not in text and "xxxx" not in text  # names only, never values


def test_available_lists_names_only(creds_dir):
    names = credentials(creds_dir).available()
    assert {"DEPLOY_KEY", "GITHUB_TOKEN", "OPENAI_API_KEY"} <= set(names)
    assert "HOME" not in names and "ADIR" not in names


def test_no_directory_no_file_lookups(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert Credentials(Config(), environ={}).directory is None
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert Credentials(Config(), environ={}).directory == tmp_path


@pytest.mark.parametrize(
    ("access", "message"),
    [
        ({"not a name": ["ci"]}, "'not a name' is not a credential name"),
        ({"GITHUB_TOKEN": "ci"}, "secret_access.GITHUB_TOKEN: expected a list"),
        ({"GITHUB_TOKEN": [""]}, "secret_access.GITHUB_TOKEN: expected a list"),
        ({"*": [1001]}, "secret_access.*: expected a list"),
    ],
)
def test_secret_access_is_checked_when_the_config_loads(tmp_path, access, message):
    path = tmp_path / "agent.toml"
    path.write_text("")
    with pytest.raises(configuration.ConfigError, match=re.escape(message)):
        configuration.load(path, {"secret_access": access})


def test_secret_access_takes_names_uids_and_the_wildcard(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text('[secret_access]\nGITHUB_TOKEN = ["ci", "alice", "1001"]\n"*" = ["*"]\n')
    loaded = configuration.load(path)
    assert loaded.secret_access == {"GITHUB_TOKEN": ["ci", "alice", "1001"], "*": ["*"]}

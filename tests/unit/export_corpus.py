"""Specs for the export tests: each field alone, then fields together.

Every spec here is valid for job.submit; ``LOSSLESS`` ones export to both
engines without --lossy, the others need it (see ``LOSSY``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import kubernetes_validate.utils

from agent.config import Config
from agent.export import Hardening, Source
from agent.protocol.spec import normalize

IMAGE = "registry.example.com/team/tool:1.2"
JOB_ID = "01JDQ8Z6X3K7M9N2P4R5T6V7W8"

#: One field at a time (with the image every spec needs).
ALONE = {
    "image": {},
    "command": {"command": ["sh", "-c", "echo hi; exit 3"]},
    "name": {"name": "Nightly_Build.v2"},
    "env": {"env": {"A": "1", "EMPTY": "", "MULTI": "two\nlines"}},
    "secrets": {"secrets": ["GITHUB_TOKEN", "API_KEY"]},
    "workdir": {"workdir": "/src"},
    "user_numeric": {"user": "1000:1000"},
    "user_uid": {"user": "65534"},
    "timeout": {"timeout": "90s"},
    "timeout_fraction": {"timeout": 0.2},
    "stop_timeout": {"stop_timeout": "25s"},
    "memory": {"resources": {"memory": "512m"}},
    "cpus_whole": {"resources": {"cpus": 2}},
    "pull_always": {"pull": "always"},
    "pull_missing": {"pull": "missing"},
    "retries": {"retries": 4},
    "network_default": {"network": "default"},
    "labels": {"labels": {"team": "infra", "example.com/tier": "batch", "empty": ""}},
    "digest": {"image": "registry.example.com/tool@sha256:" + "ab" * 32},
}

#: Fields that one engine or both cannot express, each alone.
LOSSY = {
    "workspace": {"workspace": "/srv/src"},
    "localhost_image": {"image": "localhost/choo-test"},
    "max_log_bytes": {"max_log_bytes": "1m"},
    "timeout_with_retries": {"timeout": "1m", "retries": 2},
    "user_name": {"user": "nobody"},
    "priority": {"priority": 200},
    "pids": {"resources": {"pids": 64}},
    "cpus_fraction": {"resources": {"cpus": 0.5}},
    "pull_never": {"pull": "never"},
    "label_value": {"labels": {"note": "not a label value!"}},
    "label_key": {"labels": {"trailing_": "x"}},
}

#: Several fields at once.
TOGETHER = {
    "everything_mappable": {
        "name": "build",
        "command": ["make", "-j2", "check"],
        "env": {"CI": "1"},
        "secrets": ["GITHUB_TOKEN"],
        "workdir": "/src",
        "user": "1000",
        "timeout": "30m",
        "stop_timeout": 5,
        "resources": {"memory": "1g", "cpus": 1},
        "pull": "always",
        "labels": {"team": "ci"},
        "network": "default",
    },
    "retries_no_timeout": {"retries": 3, "resources": {"memory": "64m"}, "network": "none"},
    "everything_lost": {
        "workspace": "/srv/src",
        "image": "localhost/x",
        "max_log_bytes": 1024,
        "user": "daemon",
        "priority": -5,
        "resources": {"pids": 10, "cpus": 0.25},
        "pull": "never",
        "timeout": 10,
        "retries": 1,
    },
}

SCHEDULE = {
    "name": "nightly",
    "cron": "0 3 * * *",
    "timezone": "Europe/Paris",
    "concurrency": "forbid",
    "catch_up": False,
    "history_limit": 7,
}


def spec(fields: dict) -> dict:
    """A normalised spec: ``fields`` over the corpus image."""
    return normalize({"image": IMAGE, **fields})


def hardening(**changes) -> Hardening:
    """The agent's default hardening, with ``changes`` to its Config."""
    return Hardening.of(Config(**changes))


def source(fields: dict, **kwargs) -> Source:
    return Source(spec=spec(fields), **kwargs)


ALL = {**ALONE, **LOSSY, **TOGETHER}


@contextlib.contextmanager
def schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files (megabytes) on every
    call; they never change, so meanwhile each is read once."""
    read = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(read)
    try:
        yield
    finally:
        kubernetes_validate.utils.schema_contents = read

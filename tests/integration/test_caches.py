"""Caches between runs against real rootless Podman: what one run leaves in its
cache the next run of the same name sees; another name has its own; past
``cache_max_bytes`` a cache is emptied before its next use; ``chooctl cache rm``
clears it."""

from __future__ import annotations

import json

import pytest

from tests.harness import wait_until

pytestmark = pytest.mark.podman

CAP = 64 * 1024


def _run(agent, image, script, name="build", shared=False):
    cache = {"path": "/root/.cache/pip", "shared": shared}
    job = agent.call(
        "job.submit",
        spec={
            "image": image,
            "name": name,
            "command": ["sh", "-c", script],
            "caches": {"pip": cache},
        },
    )
    ended = agent.call("job.wait", id=job["id"], timeout=120)
    return ended, agent.output_lines(job["id"])


def _containers_gone(agent):
    """A job's container goes after its end is recorded; till then it holds the cache."""
    wait_until(lambda: not agent.containers(), 60, "the jobs' containers to be removed")


def test_a_cache_is_kept_between_runs_capped_and_cleared(make_agent, image):
    agent = make_agent(cache_max_bytes=CAP).start()
    ended, _ = _run(agent, image, "echo first > /root/.cache/pip/mark")
    assert ended["state"] == "succeeded", ended
    ended, lines = _run(agent, image, "cat /root/.cache/pip/mark")
    assert ended["state"] == "succeeded" and lines == ["first"]
    ended, lines = _run(agent, image, "ls -A /root/.cache/pip | wc -l", name="other")
    assert lines == ["0"]  # another job name: a cache of its own

    listed = json.loads(agent.chooctl("cache", "ls", "--json").stdout)
    build = [c for c in listed if c["group"] == "build"]
    assert [c["name"] for c in build] == ["pip"] and build[0]["size"] > 0
    assert {c["group"] for c in listed} == {"build", "other"}

    ended, _ = _run(agent, image, f"head -c {4 * CAP} /dev/zero > /root/.cache/pip/big")
    assert ended["state"] == "succeeded", ended
    _containers_gone(agent)  # a cache still mounted is emptied the time after
    ended, lines = _run(agent, image, "ls -A /root/.cache/pip | wc -l")
    assert lines == ["0"]  # past cache_max_bytes: emptied before this run
    assert "past cache_max_bytes" in agent.log()

    _run(agent, image, "echo again > /root/.cache/pip/mark")
    _containers_gone(agent)
    done = agent.chooctl("cache", "rm", "pip", "--group", "build")
    assert done.returncode == 0 and "removed cache pip (build" in done.stdout, done.stderr
    ended, lines = _run(agent, image, "ls -A /root/.cache/pip | wc -l")
    assert lines == ["0"]
    missing = agent.chooctl("cache", "rm", "nope")
    assert missing.returncode != 0 and "no cache 'nope'" in missing.stderr
    _containers_gone(agent)
    for group in ("build", "other"):
        agent.chooctl("cache", "rm", "pip", "--group", group)
    assert json.loads(agent.chooctl("cache", "ls", "--json").stdout) == []


def test_a_shared_cache_is_one_for_every_job_name(make_agent, image):
    agent = make_agent().start()
    _run(agent, image, "echo shared > /root/.cache/pip/mark", name="a", shared=True)
    ended, lines = _run(agent, image, "cat /root/.cache/pip/mark", name="b", shared=True)
    assert lines == ["shared"], ended
    assert [c["group"] for c in agent.call("cache.list")] == ["*"]
    _containers_gone(agent)
    assert agent.call("cache.remove", name="pip")["removed"][0]["group"] == "*"

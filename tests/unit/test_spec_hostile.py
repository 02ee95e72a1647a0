"""agent.protocol.spec against hostile values: secrets, image references, huge numbers."""

from __future__ import annotations

import time

import pytest

from agent.protocol import spec
from agent.protocol.errors import InvalidParams


def _refused(raw, field):
    with pytest.raises(InvalidParams) as excinfo:
        spec.normalize({"image": "alpine", **raw})
    assert excinfo.value.message.split(":", 1)[0] == field, excinfo.value.message
    return excinfo.value.message


def test_secrets_are_names_deduplicated_in_order():
    raw = {"image": "a", "secrets": ["B", "A_1", "B"]}
    assert spec.normalize(raw)["secrets"] == ["B", "A_1"]
    assert spec.normalize({"image": "a"})["secrets"] == []


@pytest.mark.parametrize(
    "value",
    ["GITHUB_TOKEN", {"A": 1}, [1], [""], ["A-B"], ["1A"], ["A B"], ["A\0"], ["X"] * 65],
)
def test_bad_secrets_are_refused(value):
    _refused({"secrets": value}, "secrets")


def test_a_secret_may_not_also_be_in_env():
    message = _refused({"secrets": ["TOKEN"], "env": {"TOKEN": "x"}}, "secrets")
    assert "also set in env" in message


@pytest.mark.parametrize(
    "image",
    [
        "alpine:3.19",
        "localhost:5000/a/b_c__d-e:tag-1.x",
        "[::1]:5000/foo",
        "a.b-c.d/e",
        "alpine:latest@sha256:" + "0" * 64,
    ],
)
def test_more_good_image_references(image):
    assert spec.normalize({"image": image})["image"] == image


@pytest.mark.parametrize(
    "image",
    ["Alpine", "alpine:", "alpine::x", ":x", "x/", "a//b", "foo@", "foo@sha256:zz", "x-", "a/B"],
)
def test_more_bad_image_references(image):
    _refused({"image": image}, "image")


@pytest.mark.parametrize(
    "evil", ["a" * 500 + "!", "a-" * 250 + "!", "a." * 250 + "!", ("a" * 50 + "/") * 9 + "!"]
)
def test_image_matching_stays_linear(evil):
    start = time.perf_counter()
    assert spec.IMAGE_RE.match(evil) is None
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"timeout": 10**400}, "timeout"),
        ({"timeout": -(10**400)}, "timeout"),
        ({"stop_timeout": "9" * 400}, "stop_timeout"),
        ({"resources": {"cpus": 10**400}}, "resources.cpus"),
        ({"resources": {"memory": "9" * 400 + "g"}}, "resources.memory"),
        ({"resources": {"pids": 10**400}}, "resources.pids"),
        ({"priority": 10**400}, "priority"),
        ({"retries": -(10**400)}, "retries"),
    ],
)
def test_huge_numbers_are_refused_not_crashed_on(raw, field):
    _refused(raw, field)

"""agent.protocol.spec: the single gate between a submitted job spec and what is stored."""

from __future__ import annotations

import math

import pytest

from agent.protocol import spec
from agent.protocol.caches import caches_of, volume_name
from agent.protocol.errors import INVALID_PARAMS, InvalidParams

MIB = 1024**2
GIB = 1024**3


def _field_of(exc: InvalidParams) -> str:
    """The field an error message starts with ('env.A: ...' -> 'env.A')."""
    return exc.message.split(":", 1)[0]


# -- defaults and good specs ----------------------------------------------------


def test_minimal_spec_gets_every_default():
    assert spec.normalize({"image": "alpine"}) == {
        "image": "alpine",
        "command": [],
        "name": None,
        "env": {},
        "secrets": [],
        "workdir": None,
        "workspace": None,
        "user": None,
        "timeout": None,
        "idle_timeout": None,
        "stop_timeout": 10.0,
        "resources": {},
        "pull": "missing",
        "retries": 0,
        "network": "none",
        "labels": {},
        "priority": 0,
        "max_log_bytes": 0,
        "notify": [],
        "caches": {},
        "after": [],
        "retry_on": None,
    }


def test_normalized_spec_has_exactly_the_known_fields():
    assert set(spec.normalize({"image": "alpine"})) == set(spec.FIELDS)


def test_full_spec_is_normalized():
    raw = {
        "image": "docker.io/library/alpine:3.19",
        "command": ["sh", "-c", "echo hi"],
        "name": "nightly-build.v2",
        "env": {"HOME": "/root", "_X1": ""},
        "secrets": ["GITHUB_TOKEN"],
        "workdir": "/src",
        "workspace": "/home/me/project",
        "user": "1000:1000",
        "timeout": "2h",
        "idle_timeout": "10m",
        "stop_timeout": 3,
        "resources": {"memory": "512m", "cpus": 2, "pids": 100},
        "pull": "always",
        "retries": 3,
        "network": "default",
        "labels": {"team": "infra", "example.com/tier": "gold"},
        "priority": -5,
        "max_log_bytes": "10k",
        "notify": [{"target": "ops", "on": ["failed", "retries_exhausted"]}],
        "caches": {"pip": {"path": "/root/.cache/pip", "shared": False}},
        "after": [{"id": "01JAAAAAAAAAAAAAAAAAAAAAAA", "condition": "failed"}],
        "retry_on": {"reasons": ["exit", "lost"], "exit_codes": [75], "not_exit_codes": []},
    }
    assert spec.normalize(raw) == {
        **raw,
        "max_log_bytes": 10 * 1024,
        "timeout": 7200.0,
        "idle_timeout": 600.0,
        "stop_timeout": 3.0,
        "resources": {"memory": 512 * MIB, "cpus": 2.0, "pids": 100},
    }


def test_null_optional_fields_mean_default():
    raw = {field: None for field in spec.FIELDS if field not in ("image", "command")}
    raw["image"] = "alpine"
    assert spec.normalize(raw) == spec.normalize({"image": "alpine"})


def test_default_timeout_applies_only_when_spec_names_none():
    assert spec.normalize({"image": "alpine"}, default_timeout=60)["timeout"] == 60
    assert (
        spec.normalize({"image": "alpine", "timeout": "5m"}, default_timeout=60)["timeout"] == 300.0
    )


def test_zero_timeout_means_no_timeout():
    assert spec.normalize({"image": "alpine", "timeout": 0}, default_timeout=60)["timeout"] is None


def test_cpus_integer_becomes_float():
    cpus = spec.normalize({"image": "a", "resources": {"cpus": 1}})["resources"]["cpus"]
    assert cpus == 1.0 and isinstance(cpus, float)


def test_normalize_copies_instead_of_aliasing_input():
    raw = {"image": "alpine", "command": ["echo", "a"], "env": {"A": "1"}}
    out = spec.normalize(raw)
    raw["command"].append("b")
    raw["env"]["B"] = "2"
    assert out["command"] == ["echo", "a"]
    assert out["env"] == {"A": "1"}
    assert "B" not in out["env"]


@pytest.mark.parametrize(
    "image",
    [
        "alpine",
        "localhost/choo-test",
        "docker.io/library/alpine:3.19",
        "registry.example.com:5000/team/app:v1.2_rc-1",
        "quay.io/x/y@sha256:" + "a" * 64,
    ],
)
def test_good_image_references(image):
    assert spec.normalize({"image": image})["image"] == image


# -- bad specs: every error is InvalidParams and names its field ---------------


BAD_SPECS = [
    # image
    pytest.param({}, "image", id="image-missing"),
    pytest.param({"image": ""}, "image", id="image-empty"),
    pytest.param({"image": None}, "image", id="image-null"),
    pytest.param({"image": 42}, "image", id="image-int"),
    pytest.param({"image": ["alpine"]}, "image", id="image-list"),
    pytest.param({"image": " alpine"}, "image", id="image-leading-space"),
    pytest.param({"image": "alpine latest"}, "image", id="image-space"),
    pytest.param({"image": "-alpine"}, "image", id="image-leading-dash"),
    pytest.param({"image": "/alpine"}, "image", id="image-leading-slash"),
    pytest.param({"image": "alpine;rm -rf /"}, "image", id="image-shell"),
    pytest.param({"image": "alp\x00ine"}, "image", id="image-nul"),
    pytest.param({"image": "a" * 5000}, "image", id="image-too-long"),
    # command
    pytest.param({"image": "a", "command": "echo hi"}, "command", id="command-string"),
    pytest.param({"image": "a", "command": ["echo", 1]}, "command", id="command-int-arg"),
    pytest.param({"image": "a", "command": [["echo"]]}, "command", id="command-nested"),
    pytest.param({"image": "a", "command": {"0": "echo"}}, "command", id="command-object"),
    pytest.param({"image": "a", "command": ["a\x00b"]}, "command", id="command-nul"),
    pytest.param({"image": "a", "command": ["x"] * 5000}, "command", id="command-too-many"),
    # name
    pytest.param({"image": "a", "name": ""}, "name", id="name-empty"),
    pytest.param({"image": "a", "name": "-x"}, "name", id="name-leading-dash"),
    pytest.param({"image": "a", "name": "a b"}, "name", id="name-space"),
    pytest.param({"image": "a", "name": "a/b"}, "name", id="name-slash"),
    pytest.param({"image": "a", "name": "a" * 65}, "name", id="name-too-long"),
    pytest.param({"image": "a", "name": 5}, "name", id="name-int"),
    # env
    pytest.param({"image": "a", "env": ["A=1"]}, "env", id="env-list"),
    pytest.param({"image": "a", "env": "A=1"}, "env", id="env-string"),
    pytest.param({"image": "a", "env": {"1ABC": "x"}}, "env", id="env-leading-digit"),
    pytest.param({"image": "a", "env": {"A-B": "x"}}, "env", id="env-dash"),
    pytest.param({"image": "a", "env": {"A B": "x"}}, "env", id="env-space"),
    pytest.param({"image": "a", "env": {"A=B": "x"}}, "env", id="env-equals"),
    pytest.param({"image": "a", "env": {"": "x"}}, "env", id="env-empty-name"),
    pytest.param({"image": "a", "env": {"ÄB": "x"}}, "env", id="env-non-ascii"),
    pytest.param({"image": "a", "env": {"A": 1}}, "env.A", id="env-int-value"),
    pytest.param({"image": "a", "env": {"A": None}}, "env.A", id="env-null-value"),
    pytest.param({"image": "a", "env": {"A": "x\x00"}}, "env.A", id="env-nul-value"),
    # workdir, user
    pytest.param({"image": "a", "workdir": "src"}, "workdir", id="workdir-relative"),
    pytest.param({"image": "a", "workdir": ""}, "workdir", id="workdir-empty"),
    pytest.param({"image": "a", "workdir": 1}, "workdir", id="workdir-int"),
    pytest.param({"image": "a", "user": ""}, "user", id="user-empty"),
    pytest.param({"image": "a", "user": 1000}, "user", id="user-int"),
    # durations
    pytest.param({"image": "a", "timeout": -1}, "timeout", id="timeout-negative"),
    pytest.param({"image": "a", "timeout": -0.5}, "timeout", id="timeout-negative-float"),
    pytest.param({"image": "a", "timeout": "-5m"}, "timeout", id="timeout-negative-string"),
    pytest.param({"image": "a", "timeout": "soon"}, "timeout", id="timeout-word"),
    pytest.param({"image": "a", "timeout": "5y"}, "timeout", id="timeout-bad-unit"),
    pytest.param({"image": "a", "timeout": True}, "timeout", id="timeout-bool"),
    pytest.param({"image": "a", "timeout": [30]}, "timeout", id="timeout-list"),
    pytest.param({"image": "a", "timeout": math.nan}, "timeout", id="timeout-nan"),
    pytest.param({"image": "a", "timeout": math.inf}, "timeout", id="timeout-inf"),
    pytest.param({"image": "a", "timeout": "400d"}, "timeout", id="timeout-too-long"),
    pytest.param({"image": "a", "stop_timeout": -1}, "stop_timeout", id="stop-negative"),
    pytest.param({"image": "a", "stop_timeout": "x"}, "stop_timeout", id="stop-word"),
    # resources
    pytest.param({"image": "a", "resources": "1g"}, "resources", id="res-string"),
    pytest.param({"image": "a", "resources": {"disk": 1}}, "resources", id="res-unknown"),
    pytest.param({"image": "a", "resources": {"memory": "lots"}}, "resources.memory", id="mem"),
    pytest.param({"image": "a", "resources": {"memory": 0}}, "resources.memory", id="mem-zero"),
    pytest.param({"image": "a", "resources": {"memory": -1}}, "resources.memory", id="mem-neg"),
    pytest.param({"image": "a", "resources": {"memory": 1.5}}, "resources.memory", id="mem-float"),
    pytest.param({"image": "a", "resources": {"cpus": 0}}, "resources.cpus", id="cpus-zero"),
    pytest.param({"image": "a", "resources": {"cpus": -1}}, "resources.cpus", id="cpus-neg"),
    pytest.param({"image": "a", "resources": {"cpus": "2"}}, "resources.cpus", id="cpus-str"),
    pytest.param({"image": "a", "resources": {"cpus": True}}, "resources.cpus", id="cpus-bool"),
    pytest.param({"image": "a", "resources": {"cpus": math.nan}}, "resources.cpus", id="cpus-nan"),
    pytest.param({"image": "a", "resources": {"cpus": 2000}}, "resources.cpus", id="cpus-huge"),
    pytest.param({"image": "a", "resources": {"pids": 0}}, "resources.pids", id="pids-zero"),
    pytest.param({"image": "a", "resources": {"pids": 1.5}}, "resources.pids", id="pids-float"),
    pytest.param({"image": "a", "resources": {"pids": True}}, "resources.pids", id="pids-bool"),
    # choices
    pytest.param({"image": "a", "pull": "sometimes"}, "pull", id="pull-unknown"),
    pytest.param({"image": "a", "pull": "ALWAYS"}, "pull", id="pull-case"),
    pytest.param({"image": "a", "network": "host"}, "network", id="network-host"),
    pytest.param({"image": "a", "network": 1}, "network", id="network-int"),
    # integers
    pytest.param({"image": "a", "retries": -1}, "retries", id="retries-negative"),
    pytest.param({"image": "a", "retries": 101}, "retries", id="retries-too-many"),
    pytest.param({"image": "a", "retries": "3"}, "retries", id="retries-string"),
    pytest.param({"image": "a", "retries": True}, "retries", id="retries-bool"),
    pytest.param({"image": "a", "retries": 1.0}, "retries", id="retries-float"),
    pytest.param({"image": "a", "priority": 1001}, "priority", id="priority-high"),
    pytest.param({"image": "a", "priority": -1001}, "priority", id="priority-low"),
    pytest.param({"image": "a", "priority": "1"}, "priority", id="priority-string"),
    # labels
    pytest.param({"image": "a", "labels": ["a=b"]}, "labels", id="labels-list"),
    pytest.param({"image": "a", "labels": {"": "x"}}, "labels", id="labels-empty-key"),
    pytest.param({"image": "a", "labels": {"-x": "x"}}, "labels", id="labels-dash-key"),
    pytest.param({"image": "a", "labels": {"a b": "x"}}, "labels", id="labels-space-key"),
    pytest.param({"image": "a", "labels": {"k" * 129: "x"}}, "labels", id="labels-long-key"),
    pytest.param({"image": "a", "labels": {"k": 1}}, "labels.k", id="labels-int-value"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_SPECS)
def test_bad_spec_is_refused_naming_the_field(raw, field):
    with pytest.raises(InvalidParams) as excinfo:
        spec.normalize(raw)
    assert excinfo.value.code == INVALID_PARAMS
    assert _field_of(excinfo.value) == field


def test_unknown_resource_field_is_named():
    with pytest.raises(InvalidParams, match="disk"):
        spec.normalize({"image": "a", "resources": {"memory": "1g", "disk": "10g"}})


@pytest.mark.parametrize(
    "raw",
    [
        {"image": "a", "cmd": ["true"]},
        {"image": "a", "Image": "b"},
        {"image": "a", "secretz": ["X"]},
    ],
)
def test_unknown_fields_are_refused_and_named(raw):
    (unknown,) = set(raw) - {"image"}
    with pytest.raises(InvalidParams) as excinfo:
        spec.normalize(raw)
    assert _field_of(excinfo.value) == "spec"
    assert unknown in excinfo.value.message


@pytest.mark.parametrize("raw", [None, [], "alpine", 3, ["image", "alpine"]])
def test_spec_must_be_an_object(raw):
    with pytest.raises(InvalidParams) as excinfo:
        spec.normalize(raw)
    assert _field_of(excinfo.value) == "spec"


# -- parse_duration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("30s", 30.0),
        (" 10 s ", 10.0),
        ("1.5m", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        (366 * 86400, 366 * 86400.0),
    ],
)
def test_parse_duration(value, seconds):
    result = spec.parse_duration(value, "timeout")
    assert result == pytest.approx(seconds)
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "value",
    [-1, "-1", "abc", "", "5 minutes", "1h30m", True, False, None, [], math.nan, 366 * 86400 + 1],
)
def test_parse_duration_refuses(value):
    with pytest.raises(InvalidParams) as excinfo:
        spec.parse_duration(value, "some_field")
    assert _field_of(excinfo.value) == "some_field"


# -- parse_size ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        (1024, 1024),
        ("100", 100),
        ("1k", 1024),
        ("1.5k", 1536),
        ("512m", 512 * MIB),
        ("512M", 512 * MIB),
        ("512mb", 512 * MIB),
        ("2 MiB", 2 * MIB),
        ("1g", GIB),
        ("1GiB", GIB),
        ("1t", 1024 * GIB),
    ],
)
def test_parse_size(value, size):
    result = spec.parse_size(value, "resources.memory")
    assert result == size
    assert isinstance(result, int)


@pytest.mark.parametrize(
    "value", [0, -1, "0", "0m", "abc", "1x", "1p", "", 1.5, True, None, [1], 2**63]
)
def test_parse_size_refuses(value):
    with pytest.raises(InvalidParams) as excinfo:
        spec.parse_size(value, "resources.memory")
    assert _field_of(excinfo.value) == "resources.memory"


def test_workspace_must_be_an_absolute_path():
    with pytest.raises(InvalidParams, match="workspace: must be an absolute path"):
        spec.normalize({"image": "alpine", "workspace": "project"})


def test_caches_are_paths_or_objects_and_each_path_is_used_once():
    normalized = spec.normalize(
        {
            "image": "a",
            "caches": {"pip": "/root/.cache/pip/", "npm": {"path": "/npm", "shared": True}},
        }
    )
    assert normalized["caches"] == {
        "pip": {"path": "/root/.cache/pip", "shared": False},
        "npm": {"path": "/npm", "shared": True},
    }
    for bad, words in [
        ({"pip": "relative"}, "absolute"),
        ({"pip": "/out"}, "reserved"),
        ({"a": "/x", "b": "/x/"}, "another cache"),
        ({"../x": "/x"}, "not a cache name"),
        ({"pip": {"path": "/x", "shared": "yes"}}, "shared"),
        ({"pip": {"path": "/x", "size": 1}}, "expected a path"),
        (["pip"], "object"),
    ]:
        with pytest.raises(InvalidParams, match=words):
            spec.normalize({"image": "a", "caches": bad})


def test_cache_volumes_differ_by_agent_group_and_name():

    names = {volume_name(a, g, n) for a in ("A", "B") for g in ("x", "*") for n in ("pip", "npm")}
    assert len(names) == 8
    assert volume_name("A", "a-b", "c") != volume_name("A", "a", "b-c")
    job = spec.normalize({"image": "a", "name": "n", "caches": {"pip": "/p"}})
    assert caches_of(job) == {("n", "pip")}
    assert caches_of({**job, "name": None}) == {("-", "pip")}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["01JABC"], [{"id": "01JABC", "condition": "ok"}]),
        (["01jabc:any"], [{"id": "01jabc", "condition": "any"}]),
        ([{"id": "01JABC", "condition": "failed"}], [{"id": "01JABC", "condition": "failed"}]),
        ([{"id": "01JABC"}], [{"id": "01JABC", "condition": "ok"}]),
        (["A", "B:failed"], [{"id": "A", "condition": "ok"}, {"id": "B", "condition": "failed"}]),
    ],
)
def test_after_takes_strings_and_objects(raw, expected):
    normal = spec.normalize({"image": "alpine", "after": raw})["after"]
    assert normal == expected
    # What is stored is accepted again as it is (exports re-normalise it).
    assert spec.normalize({"image": "alpine", "after": normal})["after"] == normal


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("01JABC", "expected a list"),
        (["01JABC:later"], "expected one of ok, any, failed"),
        ([":ok"], "expected a non-empty string"),
        (["01J-ABC"], "as a job ID"),
        ([{"id": "A", "when": "ok"}], 'expected "ID"'),
        ([7], 'expected "ID"'),
        (["A", "A:any"], "named twice"),
        (["A"] * 65, "at most 64"),
    ],
)
def test_bad_after_is_refused_naming_the_field(raw, message):
    with pytest.raises(InvalidParams, match=message) as caught:
        spec.normalize({"image": "alpine", "after": raw})
    assert caught.value.message.startswith("after:")


def test_retry_on_defaults_to_the_reasons_retried_without_it():
    assert spec.normalize({"image": "a", "retry_on": {"not_exit_codes": [2, 1, 2]}})[
        "retry_on"
    ] == {"reasons": ["exit", "oom", "lost"], "exit_codes": None, "not_exit_codes": [1, 2]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([75], "expected an object"),
        ({"codes": [1]}, "unknown field"),
        ({"reasons": ["exit", "weather"]}, "expected one of exit, oom, timeout, lost"),
        ({"reasons": []}, "expected a list of reasons"),
        ({"exit_codes": [256]}, "from 0 to 255"),
        ({"exit_codes": "75"}, "expected a list of exit codes"),
        ({"reasons": ["lost"], "exit_codes": [75]}, "add exit to reasons"),
    ],
)
def test_bad_retry_on_is_refused_naming_the_field(raw, message):
    with pytest.raises(InvalidParams, match=message) as caught:
        spec.normalize({"image": "alpine", "retry_on": raw})
    assert caught.value.message.startswith("retry_on")

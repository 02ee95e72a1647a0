"""Nomad exports: every job of the corpus validates against the JSON Schema kept
in tests/unit/nomad_job.schema.json (from Nomad 2.0.2's API documentation), each
mapped field is asserted, and what Nomad cannot express is refused or warned."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agent.export import Source, export
from agent.export.nomad import priority
from agent.protocol.errors import InvalidParams
from tests.unit import export_corpus as corpus

SCHEMA = json.loads((Path(__file__).parent / "nomad_job.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
S = 1_000_000_000

#: The fields each lossy corpus entry loses on Nomad.
LOST = {
    "workspace": {"workspace"},
    "localhost_image": {"image"},
    "max_log_bytes": {"max_log_bytes"},
    "timeout_with_retries": {"timeout"},
    "pids": {"resources.pids"},
    "cpus_fraction": {"resources.cpus"},
    "pull_never": {"pull"},
    "everything_lost": {
        "workspace",
        "image",
        "max_log_bytes",
        "resources.pids",
        "resources.cpus",
        "pull",
        "timeout",
    },
}
NOTES = {"default_pids", "no_new_privileges", "retention", "history_limit", "default_memory"}


def nomad(fields: dict, *, lossy: bool = False, hardening=None, **source_args) -> dict:
    return export(
        corpus.source(fields, **source_args),
        to="nomad",
        hardening=hardening or corpus.hardening(),
        lossy=lossy,
    )


def job_of(result: dict) -> dict:
    (document,) = result["documents"]
    return document["Job"]


def task_of(result: dict) -> dict:
    return job_of(result)["TaskGroups"][0]["Tasks"][0]


def lost_fields(warnings: list[str]) -> set[str]:
    return {warning.split(":", 1)[0] for warning in warnings} - NOTES


@pytest.mark.parametrize("schedule", [False, True])
@pytest.mark.parametrize("name", sorted(corpus.ALL))
def test_every_job_of_the_corpus_matches_nomads_api(name, schedule):
    extra = {"schedule": corpus.SCHEDULE} if schedule else {"job_id": corpus.JOB_ID}
    result = nomad(corpus.ALL[name], lossy=True, **extra)
    VALIDATOR.validate(result["documents"][0])
    json.dumps(result, allow_nan=False)


def test_the_schema_refuses_a_misspelt_field():
    document = nomad({})["documents"][0]
    document["Job"]["TaskGroups"][0]["Tasks"][0]["Config"]["workdir"] = "/src"
    assert not VALIDATOR.is_valid(document)


@pytest.mark.parametrize("name", [n for n in corpus.ALL if n not in LOST])
def test_what_maps_exports_without_lossy(name):
    assert lost_fields(nomad(corpus.ALL[name])["warnings"]) == set()


@pytest.mark.parametrize("name", sorted(LOST))
def test_what_cannot_map_is_refused_naming_each_field(name):
    with pytest.raises(InvalidParams) as refused:
        nomad(corpus.ALL[name])
    for field in LOST[name]:
        assert f"{field}: " in refused.value.message


@pytest.mark.parametrize("name", sorted(LOST))
def test_lossy_warns_of_each_loss_also_in_meta(name):
    result = nomad(corpus.ALL[name], lossy=True)
    assert lost_fields(result["warnings"]) == LOST[name]
    assert job_of(result)["Meta"]["io.choo.export-warnings"].splitlines() == result["warnings"]


def test_a_job_maps_field_by_field():
    result = nomad(corpus.TOGETHER["everything_mappable"], job_id=corpus.JOB_ID)
    job = job_of(result)
    assert result["kind"] == "batch"
    assert job["ID"] == job["Name"] == result["name"] == "build-" + corpus.JOB_ID[-8:].lower()
    assert job["Type"] == "batch" and job["Priority"] == 50
    assert job["Meta"]["io.choo.name"] == "build"
    assert job["Meta"]["io.choo.job"] == corpus.JOB_ID
    assert job["Meta"]["team"] == "ci"
    assert "Periodic" not in job
    (group,) = job["TaskGroups"]
    assert group["Count"] == 1
    assert group["MaxRunDuration"] == 1800 * S
    assert group["RestartPolicy"]["Attempts"] == 0 and group["RestartPolicy"]["Mode"] == "fail"
    assert group["ReschedulePolicy"]["Attempts"] == 0
    (task,) = group["Tasks"]
    assert task["Driver"] == "podman"
    assert task["User"] == "1000"
    assert task["Env"] == {"CI": "1"}
    assert task["KillTimeout"] == 5 * S
    assert task["Resources"] == {"MemoryMB": 1024, "Cores": 1}
    config = task["Config"]
    assert config["image"] == corpus.IMAGE
    assert config["args"] == ["make", "-j2", "check"]
    assert "command" not in config and "entrypoint" not in config
    assert config["working_dir"] == "/src"
    assert config["force_pull"] is True
    assert "network_mode" not in config  # network default: the driver's own
    assert config["labels"] == {"team": "ci"}
    assert config["cap_drop"] == ["ALL"]
    assert config["cap_add"] == list(corpus.hardening().caps)
    assert config["tmpfs"] == ["/out"]
    (template,) = task["Templates"]
    assert template["Envvars"] is True
    assert 'nomadVar "nomad/jobs/' + job["ID"] + '"' in template["EmbeddedTmpl"]
    assert "GITHUB_TOKEN={{ .GITHUB_TOKEN | toJSON }}" in template["EmbeddedTmpl"]


def test_retries_reschedule_with_the_agents_backoff():
    hardening = corpus.hardening(retry_backoff_base=3, retry_backoff_cap=60)
    policy = job_of(nomad({"retries": 4}, hardening=hardening))["TaskGroups"][0]["ReschedulePolicy"]
    assert policy == {
        "Attempts": 4,
        "Interval": policy["Interval"],
        "Delay": 3 * S,
        "DelayFunction": "exponential",
        "MaxDelay": 60 * S,
        "Unlimited": False,
    }
    assert policy["Interval"] >= 366 * 86400 * S


def test_network_none_and_defaults():
    result = nomad({})
    task = task_of(result)
    assert task["Config"]["network_mode"] == "none"
    assert "pull" not in task["Config"] and "force_pull" not in task["Config"]
    assert task["Resources"] == {"MemoryMB": 4096}
    assert task["KillTimeout"] == 10 * S
    assert "MaxRunDuration" not in job_of(result)["TaskGroups"][0]
    assert "Env" not in task and "User" not in task and "Templates" not in task


def test_the_agents_hardening_is_the_containers():
    hardening = corpus.hardening(
        read_only_rootfs=True, container_init=True, container_caps=[], default_memory=""
    )
    result = nomad({}, hardening=hardening)
    config = task_of(result)["Config"]
    assert config["readonly_rootfs"] is True and config["init"] is True
    assert "cap_add" not in config and config["cap_drop"] == ["ALL"]
    assert "MemoryMB" not in task_of(result)["Resources"]
    assert any(w.startswith("default_memory: ") for w in result["warnings"])


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 50), (1000, 98), (-1000, 2), (10, 50), (21, 51)]
)
def test_priority_keeps_its_order_within_nomads_range(value, expected):
    assert priority(value) == expected
    assert job_of(nomad({"priority": value}))["Priority"] == expected


def test_a_schedule_is_a_periodic_job():
    job = job_of(nomad({}, schedule=corpus.SCHEDULE))
    assert job["ID"] == "nightly" and job["Meta"]["io.choo.schedule"] == "nightly"
    assert job["Periodic"] == {
        "Enabled": True,
        "SpecType": "cron",
        "Spec": "0 3 * * *",
        "ProhibitOverlap": True,
        "TimeZone": "Europe/Paris",
    }


def test_allow_lets_launches_overlap():
    schedule = {**corpus.SCHEDULE, "concurrency": "allow", "timezone": None}
    periodic = job_of(nomad({}, schedule=schedule))["Periodic"]
    assert periodic["ProhibitOverlap"] is False and "TimeZone" not in periodic


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"concurrency": "replace"}, "concurrency"), ({"catch_up": True}, "catch_up")],
)
def test_what_a_periodic_job_cannot_do_is_refused(changes, field):
    schedule = {**corpus.SCHEDULE, **changes}
    with pytest.raises(InvalidParams, match=f"{field}: "):
        nomad({}, schedule=schedule)
    result = nomad({}, schedule=schedule, lossy=True)
    assert lost_fields(result["warnings"]) == {field}


def test_a_job_that_left_files_in_out_is_refused():
    source = Source(spec=corpus.spec({}), job_id=corpus.JOB_ID, archived=True)
    with pytest.raises(InvalidParams, match="/out: "):
        export(source, to="nomad", hardening=corpus.hardening())


def test_memory_below_nomads_least_is_a_loss():
    with pytest.raises(InvalidParams, match="resources.memory: "):
        nomad({"resources": {"memory": "1m"}})
    result = nomad({"resources": {"memory": "1m"}}, lossy=True)
    assert task_of(result)["Resources"]["MemoryMB"] == 10
    assert task_of(nomad({"resources": {"memory": "10m"}}))["Resources"]["MemoryMB"] == 10

"""Kubernetes exports: every manifest of the corpus validates (kubernetes-validate,
strict, the pinned version) and keeps the name and label rules the schema leaves
out; each field maps as chooctl(1)'s table says; what cannot map is refused."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from agent.export import Source, export
from agent.export.names import is_dns_label, is_label_key, is_label_value
from agent.protocol.errors import InvalidParams
from agent.protocol.exports import KUBERNETES_VERSION
from tests.unit import export_corpus as corpus


@pytest.fixture(autouse=True, scope="module")
def _schemas_read_once():
    with corpus.schemas_read_once():
        yield


#: The fields each lossy corpus entry loses on Kubernetes.
LOST = {
    "workspace": {"workspace"},
    "localhost_image": {"image"},
    "max_log_bytes": {"max_log_bytes"},
    "timeout_with_retries": {"timeout"},
    "user_name": {"user"},
    "priority": {"priority"},
    "pids": {"resources.pids"},
    "label_value": {"labels.note"},
    "label_key": {"labels.trailing_"},
    "everything_lost": {
        "workspace",
        "image",
        "max_log_bytes",
        "user",
        "priority",
        "resources.pids",
        "timeout",
    },
}
#: Agent settings Kubernetes cannot honour: always warned of, never refused.
NOTES = {"default_pids"}


def kube(fields: dict, *, kind: str | None = None, lossy: bool = False, **source_args) -> dict:
    return export(
        corpus.source(fields, **source_args),
        to="kubernetes",
        hardening=corpus.hardening(),
        kind=kind,
        lossy=lossy,
    )


def lost_fields(warnings: list[str]) -> set[str]:
    return {warning.split(":", 1)[0] for warning in warnings} - NOTES


def workload_container(result: dict) -> dict:
    return pod_spec(result)["containers"][0]


def pod_spec(result: dict) -> dict:
    doc = result["documents"][0]
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def check_names_and_labels(doc: dict) -> None:
    """The API server's rules that the OpenAPI schema does not carry."""
    limit = 52 if doc["kind"] == "CronJob" else 63
    assert is_dns_label(doc["metadata"]["name"], limit), doc["metadata"]["name"]
    for metadata in metadatas(doc):
        for key, value in metadata.get("labels", {}).items():
            assert is_label_key(key) and is_label_value(value), (key, value)
        for key in metadata.get("annotations", {}):
            assert is_label_key(key), key
    if doc["kind"] != "NetworkPolicy":
        spec = pod_spec({"documents": [doc]})
        names = [c["name"] for c in spec["containers"]] + [v["name"] for v in spec["volumes"]]
        assert all(is_dns_label(name) for name in names), names


def metadatas(doc: dict):
    yield doc["metadata"]
    spec = doc.get("spec", {})
    if "jobTemplate" in spec:
        yield spec["jobTemplate"].get("metadata", {})
        spec = spec["jobTemplate"]["spec"]
    if "template" in spec:
        yield spec["template"].get("metadata", {})


CASES = [
    (name, kind, schedule)
    for name in corpus.ALL
    for kind, schedule in (("job", False), ("pod", False), ("job", True))
]


@pytest.mark.parametrize(("name", "kind", "schedule"), CASES)
def test_every_manifest_of_the_corpus_is_valid_kubernetes(name, kind, schedule):
    extra = {"schedule": corpus.SCHEDULE} if schedule else {"job_id": corpus.JOB_ID}
    result = kube(corpus.ALL[name], kind=kind, lossy=True, **extra)
    for doc in result["documents"]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION + ".0", strict=True)
        check_names_and_labels(doc)
    # What the YAML and JSON writers get is plain data.
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("name", [*corpus.ALONE, "everything_mappable", "retries_no_timeout"])
def test_what_maps_exports_without_lossy_and_warns_only_of_agent_settings(name):
    result = kube(corpus.ALL[name])
    assert lost_fields(result["warnings"]) == set()


@pytest.mark.parametrize("name", sorted(LOST))
def test_what_cannot_map_is_refused_naming_each_field(name):
    with pytest.raises(InvalidParams) as refused:
        kube(corpus.ALL[name])
    for field in LOST[name]:
        assert f"{field}: " in refused.value.message
    assert "--lossy" in refused.value.message


@pytest.mark.parametrize("name", sorted(LOST))
def test_lossy_exports_it_with_a_warning_per_loss_also_in_an_annotation(name):
    result = kube(corpus.ALL[name], lossy=True)
    assert lost_fields(result["warnings"]) == LOST[name]
    annotation = result["documents"][0]["metadata"]["annotations"]["io.choo/export-warnings"]
    assert annotation.splitlines() == result["warnings"]


def test_a_job_maps_field_by_field():
    result = kube(corpus.TOGETHER["everything_mappable"], job_id=corpus.JOB_ID)
    job, policy = result["documents"][0], None
    assert [doc["kind"] for doc in result["documents"]] == ["Job"]  # network default
    assert result["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    assert job["metadata"]["name"] == result["name"] == "build-" + corpus.JOB_ID[-8:].lower()
    assert job["metadata"]["annotations"]["io.choo/name"] == "build"
    assert job["metadata"]["annotations"]["io.choo/job"] == corpus.JOB_ID
    assert job["metadata"]["labels"] == {"team": "ci"}
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 7 * 86400
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "ci"
    assert pod["restartPolicy"] == "Never"
    assert pod["activeDeadlineSeconds"] == 1800
    assert pod["terminationGracePeriodSeconds"] == 5
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == corpus.IMAGE
    assert container["args"] == ["make", "-j2", "check"]
    assert "command" not in container  # it would replace the image's ENTRYPOINT
    assert container["imagePullPolicy"] == "Always"
    assert container["workingDir"] == "/src"
    assert container["env"] == [
        {"name": "CI", "value": "1"},
        {
            "name": "GITHUB_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "github-token", "key": "GITHUB_TOKEN"}},
        },
    ]
    assert container["resources"]["limits"] == {"memory": str(1 << 30), "cpu": "1000m"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    security = container["securityContext"]
    assert security["runAsUser"] == 1000 and "runAsGroup" not in security
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["capabilities"]["add"] == list(corpus.hardening().caps)
    assert {"name": "out", "mountPath": "/out"} in container["volumeMounts"]
    assert policy is None


def test_secret_values_never_leave_the_agent():
    result = kube({"secrets": ["API_KEY"]})
    (entry,) = workload_container(result)["env"]
    assert set(entry) == {"name", "valueFrom"}


def test_defaults_of_a_bare_spec():
    result = kube({})
    container = workload_container(result)
    assert result["name"] == "tool"  # from the image, no job ID for a spec
    assert "args" not in container and "env" not in container
    assert container["imagePullPolicy"] == "IfNotPresent"
    # The agent's default memory limit applies to a job that sets none.
    assert container["resources"]["limits"] == {"memory": str(4 << 30)}
    assert pod_spec(result)["terminationGracePeriodSeconds"] == 10
    assert "activeDeadlineSeconds" not in pod_spec(result)


@pytest.mark.parametrize(
    ("user", "expected"),
    [("1000:100", {"runAsUser": 1000, "runAsGroup": 100}), ("0", {"runAsUser": 0})],
)
def test_a_numeric_user_maps_to_run_as(user, expected):
    security = workload_container(kube({"user": user}))["securityContext"]
    assert {k: security[k] for k in expected} == expected


def test_retries_are_the_backoff_limit_and_every_attempt_a_new_pod():
    job = kube({"retries": 4})["documents"][0]
    assert job["spec"]["backoffLimit"] == 4
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_fractional_values_round_up():
    result = kube({"timeout": 0.2, "stop_timeout": 2.5, "resources": {"cpus": 0.3333}})
    assert pod_spec(result)["activeDeadlineSeconds"] == 1
    assert pod_spec(result)["terminationGracePeriodSeconds"] == 3
    assert workload_container(result)["resources"]["limits"]["cpu"] == "334m"


def test_network_none_adds_a_policy_that_admits_nothing_to_the_jobs_pods():
    result = kube({"network": "none"}, job_id=corpus.JOB_ID)
    job, policy = result["documents"]
    assert policy["kind"] == "NetworkPolicy"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_the_agents_hardening_is_the_containers():
    hardening = corpus.hardening(
        container_caps=["NET_BIND_SERVICE"], read_only_rootfs=True, no_new_privileges=False
    )
    result = export(corpus.source({}), to="kubernetes", hardening=hardening)
    container = workload_container(result)
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"],
        "add": ["NET_BIND_SERVICE"],
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is True
    # Only /out is writable, as under the agent (its read-only root has no tmpfs).
    assert container["volumeMounts"] == [{"name": "out", "mountPath": "/out"}]
    assert pod_spec(result)["volumes"] == [{"name": "out", "emptyDir": {}}]


def test_no_caps_kept_means_none_added():
    result = export(
        corpus.source({}), to="kubernetes", hardening=corpus.hardening(container_caps=[])
    )
    assert workload_container(result)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_retention_forever_sets_no_ttl():
    result = export(corpus.source({}), to="kubernetes", hardening=corpus.hardening(retention=0))
    assert "ttlSecondsAfterFinished" not in result["documents"][0]["spec"]


def test_a_schedule_is_a_cronjob():
    result = kube({"name": "x"}, schedule=corpus.SCHEDULE)
    cron = result["documents"][0]
    assert result["kind"] == "CronJob" and cron["metadata"]["name"] == "nightly"
    assert cron["metadata"]["annotations"]["io.choo/schedule"] == "nightly"
    spec = cron["spec"]
    assert spec["schedule"] == "0 3 * * *"
    assert spec["timeZone"] == "Europe/Paris"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 30  # no catch-up: a late run is skipped
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 7
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize(("policy", "expected"), [("allow", "Allow"), ("replace", "Replace")])
def test_every_concurrency_policy_maps(policy, expected):
    schedule = {**corpus.SCHEDULE, "concurrency": policy, "catch_up": True, "timezone": None}
    spec = kube({}, schedule=schedule)["documents"][0]["spec"]
    assert spec["concurrencyPolicy"] == expected
    assert "startingDeadlineSeconds" not in spec and "timeZone" not in spec


def test_a_cronjob_name_leaves_room_for_its_jobs():
    schedule = {**corpus.SCHEDULE, "name": "n" * 64}
    assert len(kube({}, schedule=schedule)["name"]) <= 52


def test_the_bare_pod_is_the_jobs_template():
    job = kube(corpus.TOGETHER["everything_mappable"])
    pod = kube(corpus.TOGETHER["everything_mappable"], kind="pod")
    assert pod["kind"] == "Pod" and pod["documents"][0]["apiVersion"] == "v1"
    assert pod_spec(pod) == pod_spec(job)


def test_a_bare_pod_cannot_retry_or_repeat():
    with pytest.raises(InvalidParams, match="retries: "):
        kube({"retries": 1}, kind="pod")
    with pytest.raises(InvalidParams, match="cron: "):
        kube({}, kind="pod", schedule=corpus.SCHEDULE)


def test_a_job_that_left_files_in_out_is_refused():
    source = Source(spec=corpus.spec({}), job_id=corpus.JOB_ID, archived=True)
    with pytest.raises(InvalidParams, match="/out: "):
        export(source, to="kubernetes", hardening=corpus.hardening())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"to": "swarm"}, "to: expected kubernetes or nomad"),
        ({"to": "kubernetes", "kind": "deployment"}, "kind: expected job or pod"),
        ({"to": "kubernetes", "lossy": "yes"}, "lossy: expected true or false"),
        ({"to": "nomad", "kind": "pod"}, "kind: only a Kubernetes export"),
    ],
)
def test_bad_choices_are_refused(args, message):
    with pytest.raises(InvalidParams, match=message):
        export(corpus.source({}), hardening=corpus.hardening(), **args)


def test_the_validation_is_strict_enough_to_fail():
    job = kube({})["documents"][0]
    job["spec"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION + ".0", strict=True)

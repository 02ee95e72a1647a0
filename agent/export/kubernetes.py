"""A job as Kubernetes runs it: a batch/v1 Job, a CronJob for a schedule, or a bare Pod.

Pure; the mapping is chooctl(1)'s table. The command becomes the container's
``args``, never ``command``: Podman's command replaces the image's CMD and
keeps its ENTRYPOINT, which is what ``args`` does. Every attempt is a new Pod
(``restartPolicy: Never``), retried ``backoffLimit`` times, as choo makes a
new container for each attempt; which failures are retried (``retry_on``)
is the Job's ``podFailurePolicy`` (pod_failure.py). ``network: none`` has no per-Pod switch in
Kubernetes: it becomes a NetworkPolicy that admits no traffic either way.
"""

from __future__ import annotations

import json
import math
from typing import Any

from agent.export.common import (
    OUT_DIR,
    PREFIX,
    Exported,
    Hardening,
    Losses,
    Source,
    seconds,
    shared_losses,
)
from agent.export.names import MAX_LABEL, is_label_key, is_label_value, secret_name
from agent.export.pod_failure import pod_failure_policy
from agent.protocol.exports import KUBERNETES
from agent.rules.schedule import ON_TIME_GRACE

PULL_POLICIES = {"missing": "IfNotPresent", "always": "Always", "never": "Never"}
CONCURRENCY = {"allow": "Allow", "forbid": "Forbid", "replace": "Replace"}
#: A CronJob's name leaves room for the 11 characters its Jobs' names add.
MAX_CRONJOB_NAME = 52
#: The container's name in the Pod (a job has one container), and its /out volume's.
CONTAINER = "job"
OUT_VOLUME = "out"
#: The Pod label a NetworkPolicy selects the job's Pods by.
SELECTOR = f"{PREFIX}.export"


def manifests(source: Source, hardening: Hardening, losses: Losses, *, pod: bool) -> Exported:
    """The Kubernetes objects of ``source``: its workload, and a NetworkPolicy for network none.

    Raises:
        InvalidParams: (without ``losses.lossy``) what Kubernetes cannot express.
    """
    spec = source.spec
    shared_losses(source, losses, retry_rules=True)
    schedule = source.schedule
    name = source.name(MAX_CRONJOB_NAME if schedule is not None and not pod else MAX_LABEL)
    labels, annotations = _labels(spec, losses)
    annotations.update({f"{PREFIX}/{key}": value for key, value in source.origin().items()})
    pod_labels = {**labels, SELECTOR: name}
    template = _pod_spec(spec, hardening, losses)
    if pod:
        if spec["retries"]:
            losses.lose("retries", "a bare Pod is tried once; export the Job to retry it")
        if schedule is not None:
            losses.lose("cron", "a bare Pod runs once; export the CronJob to run it on a schedule")
        if hardening.retention:
            losses.note("retention", "a bare Pod is kept until it is deleted")
        kind, workload = "Pod", {"apiVersion": "v1", "kind": "Pod", "spec": template}
        metadata_labels = pod_labels
    else:
        job_spec = {
            "backoffLimit": spec["retries"],
            "template": {"metadata": {"labels": pod_labels}, "spec": template},
        }
        failure_policy = pod_failure_policy(spec, losses)
        if failure_policy is not None:
            job_spec["podFailurePolicy"] = failure_policy
        if hardening.retention:
            job_spec["ttlSecondsAfterFinished"] = min(seconds(hardening.retention), 2**31 - 1)
        metadata_labels = labels
        if schedule is None:
            kind, workload = "Job", {"apiVersion": "batch/v1", "kind": "Job", "spec": job_spec}
        else:
            kind = "CronJob"
            workload = {"apiVersion": "batch/v1", "kind": "CronJob", "spec": _cron(schedule)}
            template_of_jobs: dict[str, Any] = {"spec": job_spec}
            if labels:
                template_of_jobs["metadata"] = {"labels": labels}
            workload["spec"]["jobTemplate"] = template_of_jobs
    warnings = losses.warnings()
    if warnings:
        annotations[f"{PREFIX}/export-warnings"] = "\n".join(warnings)
    workload["metadata"] = _metadata(name, metadata_labels, annotations)
    workload = {key: workload[key] for key in ("apiVersion", "kind", "metadata", "spec")}
    documents = [workload]
    if spec["network"] == "none":
        documents.append(_deny_all(name, labels))
    return {
        "to": KUBERNETES,
        "kind": kind,
        "name": name,
        "documents": documents,
        "warnings": warnings,
    }


def _metadata(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return metadata


def _labels(spec: dict[str, Any], losses: Losses) -> tuple[dict[str, str], dict[str, str]]:
    """The spec's labels that are valid Kubernetes labels; the others are lost
    (kept, with --lossy, as one annotation)."""
    labels, kept = {}, {}
    for key, value in spec["labels"].items():
        if is_label_key(key) and is_label_value(value):
            labels[key] = value
        else:
            kept[key] = value
            losses.lose(
                f"labels.{key}",
                "not a valid Kubernetes label (a key of [prefix/]name, a value of at most "
                "63 letters, digits, '-', '_' or '.'); kept in the annotation "
                f"{PREFIX}/labels",
            )
    annotations = {f"{PREFIX}/labels": json.dumps(kept, sort_keys=True)} if kept else {}
    return labels, annotations


def _pod_spec(spec: dict[str, Any], hardening: Hardening, losses: Losses) -> dict[str, Any]:
    """The Pod template: one container, hardened as the agent runs it."""
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec["image"],
        "imagePullPolicy": PULL_POLICIES[spec["pull"]],
    }
    if spec["command"]:
        container["args"] = list(spec["command"])
    env = [{"name": key, "value": value} for key, value in spec["env"].items()]
    env += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name(var), "key": var}}}
        for var in spec["secrets"]
    ]
    if env:
        container["env"] = env
    if spec["workdir"]:
        container["workingDir"] = spec["workdir"]
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": not hardening.no_new_privileges,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": hardening.read_only,
    }
    if hardening.caps:
        security["capabilities"]["add"] = list(hardening.caps)
    security.update(_user(spec["user"], losses))
    container["securityContext"] = security
    resources = _resources(spec, hardening, losses)
    if resources:
        container["resources"] = {"limits": resources, "requests": dict(resources)}
    # /out alone is writable under a read-only root, as the agent runs the job
    # (it asks Podman for no tmpfs at /tmp or /run).
    container["volumeMounts"] = [{"name": OUT_VOLUME, "mountPath": OUT_DIR}]
    if hardening.init:
        losses.note("container_init", "Kubernetes runs no init of its own as PID 1")
    if spec["priority"]:
        losses.lose(
            "priority",
            "Kubernetes orders Pods by a PriorityClass, a cluster object with no number "
            "that choo could pick; set priorityClassName yourself",
        )
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # A choo job gets no credentials but its secrets, and no service variables.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": math.ceil(spec["stop_timeout"]),
        "containers": [container],
        "volumes": [{"name": OUT_VOLUME, "emptyDir": {}}],
    }
    if spec["timeout"]:
        # On the Pod, not the Job: the limit is each attempt's, as choo's timeout.
        pod["activeDeadlineSeconds"] = seconds(spec["timeout"])
    return pod


def _user(user: str | None, losses: Losses) -> dict[str, int]:
    """``uid[:gid]`` as runAsUser/runAsGroup; a user name has no Kubernetes field."""
    if user is None:
        return {}
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (gid.isdigit() or not gid):
        return {"runAsUser": int(uid), **({"runAsGroup": int(gid)} if gid else {})}
    losses.lose("user", f"{user!r}: Kubernetes takes a numeric uid[:gid] only")
    return {}


def _resources(spec: dict[str, Any], hardening: Hardening, losses: Losses) -> dict[str, str]:
    """Limits (and equal requests): memory in bytes, CPU in millicores."""
    resources = spec["resources"]
    out = {}
    memory = resources.get("memory") or hardening.memory
    if memory:
        out["memory"] = str(memory)
    if resources.get("cpus"):
        out["cpu"] = f"{math.ceil(resources['cpus'] * 1000)}m"
    if resources.get("pids"):
        losses.lose(
            "resources.pids",
            "Kubernetes limits processes per node (the kubelet's podPidsLimit), not per Pod",
        )
    elif hardening.pids:
        losses.note("default_pids", "the cluster's podPidsLimit applies instead")
    return out


def _cron(schedule: dict[str, Any]) -> dict[str, Any]:
    """A CronJob's timing and policies from the schedule's settings."""
    out: dict[str, Any] = {
        "schedule": schedule["cron"],
        "concurrencyPolicy": CONCURRENCY[schedule["concurrency"]],
        # choo keeps history_limit finished runs in all; Kubernetes counts each kind.
        "successfulJobsHistoryLimit": schedule["history_limit"],
        "failedJobsHistoryLimit": schedule["history_limit"],
    }
    if schedule.get("timezone"):
        out["timeZone"] = schedule["timezone"]
    if not schedule["catch_up"]:
        # A run that cannot start this late is skipped, as choo skips a missed fire.
        out["startingDeadlineSeconds"] = int(ON_TIME_GRACE)
    return out


def _deny_all(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """``network: none``: a policy that selects the job's Pods and admits no traffic."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, labels, {}),
        "spec": {
            "podSelector": {"matchLabels": {SELECTOR: name}},
            "policyTypes": ["Ingress", "Egress"],
        },
    }

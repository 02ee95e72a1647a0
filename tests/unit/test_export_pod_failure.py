"""retry_on exported as a Job's podFailurePolicy: valid for Kubernetes' own schema,
and deciding every failure as choo's own rule does."""

from __future__ import annotations

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.protocol.errors import InvalidParams
from agent.protocol.exports import KUBERNETES_VERSION
from agent.protocol.states import Reason
from agent.protocol.workflow import RETRY_REASONS
from agent.rules.outcome import retried
from tests.unit import export_corpus as corpus
from tests.unit.test_export_kubernetes import kube

#: The kernel's SIGKILL of an OOM kill, as the container's exit code.
OOM_CODE = 137


def job_spec(retry_on: dict, **fields) -> dict:
    """The exported Job's spec (lossy, so a loss shows as a warning)."""
    result = kube({"retries": 3, "retry_on": retry_on, **fields}, lossy=True)
    job = result["documents"][0]
    kubernetes_validate.validate(job, KUBERNETES_VERSION + ".0", strict=True)
    return {**job["spec"], "warnings": result["warnings"]}


def retry_warnings(spec: dict) -> list[str]:
    """The export's warnings about retries (the hardening's notes left out)."""
    return [w for w in spec["warnings"] if w.startswith(("retry_on:", "timeout:"))]


def kubernetes_retries(policy: dict | None, code: int, *, disrupted: bool = False) -> bool:
    """Whether a Job with ``policy`` retries a Pod that failed with ``code``
    (disrupted: with condition DisruptionTarget): the first rule that matches
    acts, none matching counts the failure (Kubernetes' documented order)."""
    for rule in (policy or {}).get("rules", []):
        conditions = rule.get("onPodConditions")
        if conditions is not None:
            matches = disrupted and {"type": "DisruptionTarget", "status": "True"} in conditions
        else:
            codes = rule["onExitCodes"]
            matches = (code in codes["values"]) == (codes["operator"] == "In")
        if matches:
            return rule["action"] != "FailJob"
    return True


def choo_retries(rule: dict, reason: Reason, code: int | None) -> bool:
    return retried(corpus.spec({"retry_on": rule})["retry_on"], reason, code, 1)[0]


RULES = st.fixed_dictionaries(
    {},
    optional={
        "reasons": st.lists(st.sampled_from(RETRY_REASONS), min_size=1, unique=True).filter(
            lambda reasons: "exit" in reasons
        ),
        "exit_codes": st.lists(st.integers(0, 255), max_size=300),
        "not_exit_codes": st.lists(st.integers(0, 255), max_size=300),
    },
) | st.fixed_dictionaries({"reasons": st.lists(st.sampled_from(RETRY_REASONS), min_size=1)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RULES)
def test_every_exit_code_and_disruption_is_decided_as_choo_decides(rule):
    if rule.get("exit_codes") is not None or rule.get("not_exit_codes"):
        rule.setdefault("reasons", ["exit", "oom", "lost"])
    policy = job_spec(rule).get("podFailurePolicy")
    for code in range(1, 256):
        if code != OOM_CODE:
            assert kubernetes_retries(policy, code) == choo_retries(rule, Reason.EXIT, code), code
    assert kubernetes_retries(policy, OOM_CODE) == choo_retries(rule, Reason.OOM, None)
    lost = choo_retries(rule, Reason.LOST, None)
    assert all(kubernetes_retries(policy, c, disrupted=True) == lost for c in (1, 137, 143))


def test_only_the_codes_choo_retries_are_retried():
    spec = job_spec({"reasons": ["exit"], "exit_codes": [75]})
    assert spec["podFailurePolicy"] == {
        "rules": [
            {
                "action": "FailJob",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0, 75]}},
        ]
    }
    assert spec["backoffLimit"] == 3 and retry_warnings(spec) == []


def test_codes_never_retried_fail_the_job_and_disruptions_count():
    spec = job_spec({"not_exit_codes": [2, 64]})
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2, 64]}},
    ]


def test_an_oom_kill_is_exit_code_137_there_which_is_said():
    spec = job_spec({"reasons": ["exit", "oom"], "exit_codes": [1]})
    assert spec["podFailurePolicy"]["rules"][1]["onExitCodes"]["values"] == [0, 1, 137]
    assert [w for w in retry_warnings(spec) if "exit code 137" in w] == retry_warnings(spec) != []


def test_without_retries_or_a_rule_there_is_no_policy():
    assert "podFailurePolicy" not in kube({"retries": 3})["documents"][0]["spec"]
    job = kube({"retries": 0, "retry_on": {"reasons": ["exit"]}})["documents"][0]
    assert "podFailurePolicy" not in job["spec"]


def test_a_timeout_is_exported_where_the_kill_codes_go_as_choo_decides_timeouts():
    # 143 and 137 fail the Job: a timed-out attempt is not retried, as in choo.
    spec = job_spec({"reasons": ["exit"], "exit_codes": [75]}, timeout=60)
    assert retry_warnings(spec) == []
    # choo retries timeouts here, but the kill codes would fail the Job.
    with pytest.raises(InvalidParams, match="retry_on"):
        kube(
            {
                "retries": 3,
                "timeout": 60,
                "retry_on": {"reasons": ["exit", "timeout"], "exit_codes": [75]},
            }
        )
    # Without a rule, a timeout with retries is still refused (choo retries no timeout).
    with pytest.raises(InvalidParams, match="timeout"):
        kube({"retries": 3, "timeout": 60})


def test_nomad_has_no_retry_rules_and_refuses_them():
    from agent.export import export

    with pytest.raises(InvalidParams, match="retry_on"):
        export(
            corpus.source({"retries": 3, "retry_on": {"reasons": ["exit"]}}),
            to="nomad",
            hardening=corpus.hardening(),
            lossy=False,
        )

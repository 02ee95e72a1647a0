"""A job's ``retry_on`` as a Kubernetes Job's ``podFailurePolicy`` (pure).

choo retries a failed attempt by its reason (exit, oom, timeout, lost, image,
create) and, for an exit, by its exit code (agent/rules/outcome.py decides).
A Job's ``podFailurePolicy`` sees less: the exit codes of the Pod's
containers and the Pod's conditions. So the mapping works from what
Kubernetes shows:

* an **exit** is its code: the codes choo would not retry fail the Job
  (``FailJob`` on those codes, or on every code but the retried ones,
  whichever list is shorter); the others count against ``backoffLimit``;
* an **OOM kill** is exit code 137 there (the kernel's SIGKILL), so 137
  follows ``oom``, not the exit code rule; a job's own exit 137 is then taken
  for one (a note);
* a **lost** container is a disrupted Pod (condition ``DisruptionTarget``):
  counted or failing the Job as choo would; its rule comes first, because a
  disrupted Pod's containers are killed too, with codes the exit rule reads;
* a **timeout** kills the containers (143, or 137 after the grace period),
  and those codes then go by the exit rule: where that differs from choo's
  rule for timeouts, the spec is not exported faithfully (a loss);
* an image or create failure never fails a Pod there: Kubernetes keeps
  pulling or creating until a deadline, whatever the policy.
"""

from __future__ import annotations

from typing import Any

from agent.export.common import Losses
from agent.protocol.states import Reason
from agent.rules.outcome import retried

#: The exit codes a failing container can have (0 is a success).
FAILING_CODES = frozenset(range(1, 256))
#: A container killed by the kernel for memory, or by the kubelet after its grace.
SIGKILL_CODE = 137
#: A container that ended on the kubelet's SIGTERM.
SIGTERM_CODE = 143
#: The condition Kubernetes sets on a Pod evicted, preempted or otherwise disrupted.
DISRUPTED = [{"type": "DisruptionTarget", "status": "True"}]


def pod_failure_policy(spec: dict[str, Any], losses: Losses) -> dict[str, Any] | None:
    """The ``podFailurePolicy`` of a Job that retries as ``spec``'s ``retry_on``
    says, or None when it has none (Kubernetes then retries every failure,
    as choo does exits, OOM kills and lost containers)."""
    rule = spec.get("retry_on")
    if rule is None or not spec["retries"]:
        return None  # with no retries, nothing is retried either way
    reasons = set(rule["reasons"])
    kept = {code for code in FAILING_CODES if retried(rule, Reason.EXIT, code, 1)[0]}
    oom = Reason.OOM.value in reasons
    if (SIGKILL_CODE in kept) != oom:
        losses.note(
            "retry_on",
            f"an out-of-memory kill is exit code {SIGKILL_CODE} in Kubernetes, so that code is"
            f" {'retried' if oom else 'not retried'} as choo treats an OOM kill, also when the"
            " job exits with it itself",
        )
        kept ^= {SIGKILL_CODE}
    killed = {SIGTERM_CODE, SIGKILL_CODE}
    retried_if_killed = killed <= kept if Reason.TIMEOUT.value in reasons else not killed & kept
    if spec.get("timeout") and not retried_if_killed:
        losses.lose(
            "retry_on",
            "an attempt that ran out of time ends in Kubernetes as its containers are killed"
            f" (exit code {SIGTERM_CODE} or {SIGKILL_CODE}), judged by the exit code rule,"
            " which here retries it otherwise than choo's rule for timeouts",
        )
    rules = []
    lost = Reason.LOST.value in reasons
    failing = FAILING_CODES - kept
    if failing or not lost:
        rules.append({"action": "Count" if lost else "FailJob", "onPodConditions": DISRUPTED})
    if failing:
        if len(failing) <= len(kept) + 1:
            codes = {"operator": "In", "values": sorted(failing)}
        else:  # 0 in the list is no match of its own: a Pod that failed has a failing code
            codes = {"operator": "NotIn", "values": sorted(kept | {0})}
        rules.append({"action": "FailJob", "onExitCodes": codes})
    return {"rules": rules} if rules else None

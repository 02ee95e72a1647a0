"""Container hardening, seen from inside the container and on the inspected one.

Resource limits are asserted only where Podman enforces them: rootless Podman
on cgroup v1 (hybrid hosts like this one) accepts and ignores them, which
``agent.info`` reports.
"""

from __future__ import annotations

import json

import pytest

from agent.config import DEFAULT_CAPS
from tests.harness import podman

pytestmark = pytest.mark.podman

#: Bit numbers of capabilities (linux/capability.h).
CAP_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "SYS_ADMIN": 21,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}


def _mask(caps) -> int:
    return sum(1 << CAP_BITS[c] for c in caps)


def _status_of_job(agent, image: str, extra: str = "") -> dict[str, str]:
    script = "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status" + extra
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    ended = agent.call("job.wait", id=job["id"], timeout=60)
    assert ended["state"] == "succeeded", ended
    lines = agent.output_lines(job["id"])
    return dict(line.split(":\t", 1) if ":\t" in line else (line, "") for line in lines)


def test_defaults_seen_from_inside(agent, image):
    status = _status_of_job(agent, image)
    assert int(status["CapEff"], 16) == _mask(DEFAULT_CAPS)
    assert int(status["CapBnd"], 16) == _mask(DEFAULT_CAPS)
    assert status["NoNewPrivs"] == "1"


def test_defaults_on_the_inspected_container(agent, podman_service, image):
    job = agent.call("job.submit", spec={"image": image, "command": ["sleep", "60"]})
    agent.wait_state(job["id"], "running")
    out = podman("--url", podman_service.url, "inspect", f"choo-{job['id']}").stdout
    info = json.loads(out)[0]
    agent.call("job.cancel", id=job["id"])
    assert sorted(info["EffectiveCaps"]) == sorted(f"CAP_{c}" for c in DEFAULT_CAPS)
    assert "no-new-privileges" in info["HostConfig"]["SecurityOpt"]
    assert info["HostConfig"]["ReadonlyRootfs"] is False
    limits = agent.call("agent.info")["podman"]["resource_limits"]
    if limits["enforced"]:
        assert info["HostConfig"]["PidsLimit"] == 4096
        assert info["HostConfig"]["Memory"] == 4 * 1024**3
    agent.call("job.wait", id=job["id"], timeout=60)


def test_agent_info_says_whether_limits_are_enforced(agent):
    info = agent.call("agent.info")
    limits = info["podman"]["resource_limits"]
    assert isinstance(limits["enforced"], bool) and limits["reason"]
    assert limits["cgroup_version"] in ("v1", "v2")
    if limits["rootless"] and limits["cgroup_version"] == "v1":
        assert limits["enforced"] is False
    assert info["containers"] == {
        "caps": list(DEFAULT_CAPS),
        "no_new_privileges": True,
        "default_pids": 4096,
        "default_memory": "4g",
        "read_only_rootfs": False,
    }


def test_configured_hardening(make_agent, image):
    agent = make_agent(container_caps=["CHOWN"], read_only_rootfs=True).start()
    status = _status_of_job(
        agent, image, "; touch /probe 2>/dev/null && echo root=rw || echo root=ro"
    )
    assert int(status["CapEff"], 16) == _mask(["CHOWN"])
    assert "root=ro" in status


def test_pids_limit_is_enforced_where_podman_enforces_limits(make_agent, image):
    agent = make_agent(default_pids=20).start()
    if not agent.call("agent.info")["podman"]["resource_limits"]["enforced"]:
        pytest.skip("Podman does not enforce resource limits on this host (see agent.info)")
    script = "for i in $(seq 40); do sleep 5 & done 2>/dev/null; wait; echo done"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    agent.call("job.wait", id=job["id"], timeout=60)
    output = agent.output(job["id"])
    lines = (output["stdout"] + output["stderr"]).decode(errors="replace").splitlines()
    assert any("can't fork" in line or "Resource" in line for line in lines), lines

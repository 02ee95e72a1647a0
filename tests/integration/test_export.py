"""chooctl export against a real agent, and the exported Pod under ``podman kube play``.

The Pod a spec exports to runs under the rootless test user's Podman and
gives the same output and exit code as ``chooctl run`` of the same spec. The
test image is ``localhost/`` (no registry here), so these exports take
--lossy, which is itself checked: without it the image is refused.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agent.protocol.exports import KUBERNETES_VERSION
from tests.harness import podman

pytestmark = pytest.mark.podman

SCHEMA = json.loads((Path(__file__).parent.parent / "unit" / "nomad_job.schema.json").read_text())
SCRIPT = 'echo "out $A $(id -u):$(id -g) $(pwd)"; echo err >&2; touch /out/made; exit 3'
#: Capabilities, and which of /, /tmp and /out the job may write.
PROBE = (
    "grep CapEff /proc/self/status; for d in / /tmp /out; do "
    'touch $d/probe 2>/dev/null && echo "$d rw" || echo "$d ro"; done; exit 4'
)

#: (agent settings, spec fields beside image and name, the same as chooctl run options,
#: stdout, exit code).
CASES = {
    "user_env_workdir": (
        {},
        {
            "command": ["sh", "-c", SCRIPT],
            "env": {"A": "1"},
            "workdir": "/tmp",
            "user": "1000:1000",
            "labels": {"team": "ci"},
        },
        ["-e", "A=1", "-w", "/tmp", "-u", "1000:1000", "-l", "team=ci"],
        "out 1 1000:1000 /tmp\n",
        3,
    ),
    "hardening": (
        {"container_caps": ["CHOWN"], "read_only_rootfs": True},
        {"command": ["sh", "-c", PROBE]},
        [],
        "CapEff:\t0000000000000001\n/ ro\n/tmp ro\n/out rw\n",
        4,
    ),
}


def _ok(done):
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_exported_pod_plays_as_chooctl_runs_it(case, make_agent, image, tmp_path):
    settings, fields, run_options, stdout, exit_code = CASES[case]
    # No default memory limit: kube play of Podman 4.3.1 cannot create a Pod
    # with one under this machine's cgroups, and both runs must be alike.
    agent = make_agent(default_memory="", **settings).start()
    name = f"export-play-{secrets.token_hex(4)}"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"image": image, "name": name, "pull": "never", **fields}))
    run = agent.chooctl(
        "run", "--name", name, "--pull", "never", *run_options, image, *fields["command"]
    )
    assert (run.returncode, run.stdout) == (exit_code, stdout), run.stderr

    export = ["export", "--spec", str(spec_file), "--to", "kubernetes", "--kind", "pod"]
    refused = agent.chooctl(*export)
    assert refused.returncode == 125
    assert "image: " in refused.stderr and "--lossy" in refused.stderr

    manifest = tmp_path / "pod.yaml"
    exported = agent.chooctl(*export, "--lossy", "-o", str(manifest))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == ""
    assert "chooctl: warning: image: " in exported.stderr
    documents = list(yaml.safe_load_all(manifest.read_text()))
    pod = documents[0]
    assert pod["kind"] == "Pod" and pod["metadata"]["name"] == name
    assert "image: " in pod["metadata"]["annotations"]["io.choo/export-warnings"]
    # Podman 4.3.1 refuses annotation values longer than 63 characters (Kubernetes
    # allows 256 KiB in all): the copy it plays goes without them.
    del pod["metadata"]["annotations"]
    playable = tmp_path / "play.yaml"
    playable.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    try:
        _ok(podman("kube", "play", str(playable)))
        container = f"{name}-job"
        played = _ok(podman("wait", container)).strip()
        logs = podman("logs", container)
    finally:
        podman("kube", "down", str(playable), check=False)
        podman("pod", "rm", "-f", name, check=False)
    assert (int(played), logs.stdout, logs.stderr) == (run.returncode, run.stdout, run.stderr)


def test_export_by_id_to_nomad_over_the_socket(agent, image, tmp_path):
    job_id = _ok(agent.chooctl("run", "-d", "--name", "nj", "--retries", "2", image, "true"))
    job_id = job_id.strip()
    agent.chooctl("wait", job_id)
    out = tmp_path / "job.json"
    done = agent.chooctl("export", job_id[:12], "--to", "nomad", "--lossy", "-o", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    job = document["Job"]
    assert job["Meta"]["io.choo.job"] == job_id and job["Meta"]["io.choo.name"] == "nj"
    assert job["TaskGroups"][0]["ReschedulePolicy"]["Attempts"] == 2
    assert job["TaskGroups"][0]["Tasks"][0]["Config"]["args"] == ["true"]


def test_a_jobs_retry_rules_become_its_pod_failure_policy(agent, image):
    """The rule a job ran under, read back from the agent: Kubernetes retries
    exit 75 and a disrupted Pod, and fails the Job on any other code at once."""
    rule = ["--retries", "2", "--retry-on", "exit:75", "--retry-on", "lost"]
    job_id = _ok(agent.chooctl("run", "-d", *rule, image, "sh", "-c", "exit 75")).strip()
    agent.chooctl("wait", job_id)
    done = agent.chooctl("export", job_id, "--to", "kubernetes", "--lossy", "--json")
    assert done.returncode == 0, done.stderr
    exported = json.loads(done.stdout)
    documents = exported["items"] if exported["kind"] == "List" else [exported]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION + ".0", strict=True)
    job = documents[0]
    assert job["spec"]["podFailurePolicy"]["rules"] == [
        {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0, 75]}},
    ]
    assert "retry_on" not in done.stderr  # mapped, not lost
    nomad = agent.chooctl("export", job_id, "--to", "nomad")
    assert nomad.returncode == 125 and "retry_on: " in nomad.stderr


def test_a_job_that_left_files_in_out_is_refused(agent, image):
    job_id = _ok(agent.chooctl("run", "-d", image, "sh", "-c", "echo x > /out/x")).strip()
    agent.chooctl("wait", job_id)
    assert agent.call("job.get", id=job_id)["artifacts"]["state"] == "packed"
    lossy = agent.chooctl("export", job_id, "--to", "kubernetes", "--lossy")
    assert lossy.returncode == 0, lossy.stderr
    assert "chooctl: warning: /out: " in lossy.stderr
    refused = agent.chooctl("export", job_id, "--to", "kubernetes")
    assert refused.returncode == 125 and "/out: " in refused.stderr


def test_export_a_schedule_as_yaml_and_json(agent, image):
    _ok(
        agent.chooctl(
            "schedule",
            "add",
            "--concurrency",
            "replace",
            "--no-catch-up",
            "--timezone",
            "UTC",
            "nightly",
            "0 3 * * *",
            image,
            "true",
        )
    )
    documents = list(
        yaml.safe_load_all(
            _ok(agent.chooctl("export", "--schedule", "nightly", "--to", "kubernetes", "--lossy"))
        )
    )
    assert [d["kind"] for d in documents] == ["CronJob", "NetworkPolicy"]
    assert documents[0]["spec"]["concurrencyPolicy"] == "Replace"
    listed = json.loads(
        _ok(
            agent.chooctl(
                "export", "--schedule", "nightly", "--to", "kubernetes", "--lossy", "--json"
            )
        )
    )
    assert listed["kind"] == "List" and listed["items"] == documents
    nomad = agent.chooctl("export", "--schedule", "nightly", "--to", "nomad", "--lossy")
    assert json.loads(nomad.stdout)["Job"]["Periodic"]["Spec"] == "0 3 * * *"
    assert "chooctl: warning: concurrency: " in nomad.stderr


def test_usage_errors(agent, tmp_path):
    both = agent.chooctl("export", "01JD", "--schedule", "x", "--to", "nomad")
    assert both.returncode == 125 and "exactly one of" in both.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    done = agent.chooctl("export", "--spec", str(bad), "--to", "nomad")
    assert done.returncode == 125 and "holds no job spec" in done.stderr
    missing = agent.chooctl("export", "01JDQ8Z6X3K7M9N2P4R5T6V7W8", "--to", "nomad")
    assert missing.returncode == 125 and "01JDQ8Z6X3K7M9N2P4R5T6V7W8" in missing.stderr

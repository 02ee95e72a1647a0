"""Workspaces, artifacts, removal, pruning and pull policy, through a real agent and Podman."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile

import pytest

from tests.harness import volumes_of, wait_until

pytestmark = pytest.mark.podman


@pytest.fixture
def files_agent(make_agent, tmp_path):
    return make_agent(workspace_roots=[str(tmp_path)]).start()


def test_workspace_is_a_snapshot_taken_at_submit(files_agent, image, tmp_path):
    agent = files_agent
    ws = tmp_path / "project"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "version").write_text("one\n")
    job_id = agent.chooctl(
        "submit", "--workspace", str(ws), image, "sh", "-c", "sleep 1; pwd; cat src/version"
    ).stdout.strip()
    (ws / "src" / "version").write_text("two\n")
    (ws / "added-later").write_text("x")
    done = agent.call("job.wait", id=job_id, timeout=60)
    assert done["state"] == "succeeded", done
    assert agent.chooctl("logs", job_id).stdout == "/workspace\none\n"
    assert done["workspace"]["source"] == str(ws)
    assert done["workspace"]["size"] == len("one\n")


def test_workspace_outside_the_roots_or_unreadable_is_refused(files_agent, image, tmp_path):
    agent = files_agent
    outside = agent.chooctl("run", "--workspace", "/etc", image, "true")
    assert outside.returncode == 125
    assert "outside the allowed roots" in outside.stderr
    secret = tmp_path / "secret"
    secret.mkdir()
    secret.chmod(0)
    try:
        refused = agent.chooctl("run", "--workspace", str(secret), image, "true")
    finally:
        secret.chmod(0o755)
    assert refused.returncode == 125
    assert "cannot read" in refused.stderr
    assert agent.call("job.list", all=True)["jobs"] == []  # nothing half-written


def test_artifacts_round_trip_byte_for_byte(files_agent, image, tmp_path):
    agent = files_agent
    ws = tmp_path / "ws"
    ws.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 17)  # more than one transfer chunk
    (ws / "blob.bin").write_bytes(payload)
    job_id = agent.chooctl(
        "run",
        "-d",
        "--workspace",
        str(ws),
        image,
        "sh",
        "-c",
        "mkdir -p /out/nested && cp blob.bin /out/nested/ && echo done > /out/note && exit 3",
    ).stdout.strip()
    done = agent.call("job.wait", id=job_id, timeout=60)
    assert (done["state"], done["exit_code"]) == ("failed", 3)  # any end packs /out
    record = done["artifacts"]
    assert record["state"] == "packed"
    archive = tmp_path / "out.tar.gz"
    fetched = agent.chooctl("artifacts", job_id, "-o", str(archive))
    assert fetched.returncode == 0, fetched.stderr
    assert archive.stat().st_size == record["size"]
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == record["sha256"]
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["nested", "nested/blob.bin", "note"]
        assert tar.extractfile("nested/blob.bin").read() == payload
        assert tar.extractfile("note").read() == b"done\n"
    as_json = json.loads(agent.chooctl("artifacts", "--json", job_id).stdout)
    assert as_json["sha256"] == record["sha256"]
    wait_until(lambda: volumes_of(agent) == [], what="no /out volume left")


def test_files_the_agent_cannot_read_are_packed_through_podman(files_agent, image, tmp_path):
    agent = files_agent
    job = agent.call(
        "job.submit",
        spec={"image": image, "command": ["sh", "-c", "echo s > /out/secret; chmod 0 /out/secret"]},
    )
    done = agent.call("job.wait", id=job["id"], timeout=60)
    assert done["artifacts"]["state"] == "packed", done["artifacts"]
    with tarfile.open(done["artifacts"]["path"]) as tar:
        assert tar.getnames() == ["secret"]
        assert tar.extractfile("secret").read() == b"s\n"


def test_empty_out_records_no_artifacts(files_agent, image, tmp_path):
    agent = files_agent
    job_id = agent.chooctl("run", "-d", image, "true").stdout.strip()
    done = agent.call("job.wait", id=job_id, timeout=60)
    assert done["artifacts"]["state"] == "none"
    fetched = agent.chooctl("artifacts", job_id, "-o", str(tmp_path / "none.tgz"))
    assert fetched.returncode == 0
    assert "has no artifacts" in fetched.stderr
    assert not (tmp_path / "none.tgz").exists()


def test_cancelled_job_keeps_its_artifacts(files_agent, image):
    agent = files_agent
    job = agent.call(
        "job.submit",
        spec={"image": image, "command": ["sh", "-c", "echo partial > /out/p; sleep 300"]},
    )
    agent.wait_state(job["id"], "running")
    agent.call("job.cancel", id=job["id"])
    done = agent.call("job.wait", id=job["id"], timeout=60)
    assert done["state"] == "cancelled"
    assert done["artifacts"]["state"] == "packed"


def test_too_much_output_is_recorded_and_the_agent_carries_on(make_agent, image):
    agent = make_agent(artifacts_max_bytes=1000).start()
    big = agent.call(
        "job.submit",
        spec={"image": image, "command": ["sh", "-c", "head -c 5000 /dev/zero > /out/big"]},
    )
    done = agent.call("job.wait", id=big["id"], timeout=60)
    assert done["state"] == "succeeded"
    assert done["artifacts"]["state"] == "too_large"
    assert "artifacts_max_bytes" in done["artifacts"]["message"]
    small = agent.call(
        "job.submit", spec={"image": image, "command": ["sh", "-c", "echo ok > /out/ok"]}
    )
    assert agent.call("job.wait", id=small["id"], timeout=60)["artifacts"]["state"] == "packed"


def test_rm_and_prune_remove_exactly_what_they_should(files_agent, image, tmp_path):
    agent = files_agent
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f").write_text("f")

    def job(command):
        spec = {"image": image, "command": ["sh", "-c", command], "workspace": str(ws)}
        return agent.call("job.submit", spec=spec)["id"]

    ok, failed, cancelled, kept = (job("echo x > /out/x"), job("exit 1"), job("true"), job("true"))
    running = job("sleep 300")
    agent.call("job.cancel", id=cancelled)
    for job_id in (ok, failed, cancelled, kept):
        agent.call("job.wait", id=job_id, timeout=60)
    agent.wait_state(running, "running")
    jobs_dir = agent.state_dir / "jobs"
    assert {p.name for p in jobs_dir.iterdir()} == {ok, failed, cancelled, kept, running}
    assert (jobs_dir / ok / "artifacts.tar.gz").exists()

    # rm: a finished job goes with its files; a running one is refused.
    refused = agent.chooctl("rm", running, kept)
    assert refused.returncode == 125
    assert "only a finished job can be removed" in refused.stderr
    assert refused.stdout.split() == [kept]
    assert not (jobs_dir / kept).exists()

    # prune by state, then by age: only finished jobs, rows and files.
    only_failed = agent.chooctl("prune", "--older-than", "0", "--state", "failed", "-q")
    assert only_failed.stdout.split() == [failed]
    assert agent.chooctl("prune", "--older-than", "1h").stdout.strip() == "removed 0 jobs"
    rest = json.loads(agent.chooctl("prune", "--older-than", "0s", "--json").stdout)
    assert sorted(rest["removed"]) == sorted([ok, cancelled])
    remaining = [j["id"] for j in agent.call("job.list", all=True)["jobs"]]
    assert remaining == [running]
    assert {p.name for p in jobs_dir.iterdir()} == {running}
    assert agent.call("job.get", id=running)["state"] == "running"
    agent.call("job.cancel", id=running)
    agent.call("job.wait", id=running, timeout=60)


def test_retention_prunes_on_its_own(make_agent, image):
    agent = make_agent(retention=2.0).start()
    job = agent.call("job.submit", spec={"image": image, "command": ["true"]})
    agent.call("job.wait", id=job["id"], timeout=60)
    wait_until(
        lambda: agent.call("job.list", all=True)["jobs"] == [],
        timeout=20,
        what="retention to prune the finished job",
    )


def test_pull_policy_never_on_a_missing_image_fails_with_reason_image(agent):
    missing = "localhost/choo-no-such-image:never"
    done = agent.chooctl("run", "--pull", "never", missing, "true")
    assert done.returncode == 125
    job = agent.call("job.get", id=agent.call("job.list", all=True)["jobs"][0]["id"])
    assert (job["state"], job["reason"]) == ("failed", "image")
    assert "pull policy is 'never'" in job["log_tail"]
    assert "never" in done.stderr
    wait_until(lambda: volumes_of(agent) == [], what="no /out volume left")


def test_pull_policy_missing_reports_the_registrys_message(agent):
    # Nothing listens on port 9 of the loopback: the pull fails at once.
    done = agent.chooctl("run", "--pull", "always", "127.0.0.1:9/choo/nothing:1", "true")
    assert done.returncode == 125
    job = agent.call("job.get", id=agent.call("job.list", all=True)["jobs"][0]["id"])
    assert (job["state"], job["reason"]) == ("failed", "image")
    assert "127.0.0.1:9" in job["log_tail"]


@pytest.mark.parametrize("through_podman", [False, True], ids=["from-the-volume", "via-podman"])
def test_links_in_out_are_packed_as_links_never_their_targets(
    files_agent, image, tmp_path, through_podman
):
    agent = files_agent
    marker = f"MARKER-{os.getpid()}-{through_podman}"
    # Host files the job must never get into its archive: the agent's own
    # database (holding this marker in a job's env) and a file of the test's.
    holder = agent.call(
        "job.submit", spec={"image": image, "command": ["true"], "env": {"M": marker}}
    )
    agent.call("job.wait", id=holder["id"], timeout=60)
    host_file = tmp_path / "host-secret"
    host_file.write_text(marker)
    database = agent.state_dir / "choo.db"
    command = (
        f"ln -s {database} /out/db; ln -s {host_file} /out/secret; "
        f"ln -s {agent.state_dir} /out/state; ln -s /etc/shadow /out/shadow; echo ok > /out/ok"
    )
    if through_podman:  # a file the agent cannot read sends the packing through Podman
        command += "; echo s > /out/locked; chmod 0 /out/locked"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", command]})
    done = agent.call("job.wait", id=job["id"], timeout=60)
    assert done["artifacts"]["state"] == "packed", done["artifacts"]
    with tarfile.open(done["artifacts"]["path"]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        expected = {"db", "secret", "state", "shadow", "ok"} | (
            {"locked"} if through_podman else set()
        )
        assert set(members) == expected
        for name, target in (
            ("db", str(database)),
            ("secret", str(host_file)),
            ("state", str(agent.state_dir)),
            ("shadow", "/etc/shadow"),
        ):
            assert members[name].issym() and members[name].linkname == target, name
    with gzip.open(done["artifacts"]["path"]) as raw:
        assert marker.encode() not in raw.read()


def test_files_a_job_made_undeletable_are_removed_with_the_job(files_agent, image, tmp_path):
    agent = files_agent
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f").write_text("f")
    command = (
        "mkdir -p ro/sub && touch ro/sub/f && chmod 0555 ro/sub ro; "
        "mkdir locked && touch locked/f && chmod 0 locked/f locked; "
        "mkdir mapped && touch mapped/f && chown -R 1000:1000 mapped && chmod 0700 mapped; "
        "chown 1000 f; echo o > /out/f && chown 1000 /out/f; chmod 0555 /workspace"
    )
    spec = {"image": image, "command": ["sh", "-c", command], "workspace": str(ws), "user": "0"}
    job = agent.call("job.submit", spec=spec)
    done = agent.call("job.wait", id=job["id"], timeout=60)
    assert done["state"] == "succeeded", done.get("log_tail")
    job_dir = agent.state_dir / "jobs" / job["id"]
    mapped = job_dir / "workspace" / "mapped"
    assert mapped.stat().st_uid != os.getuid(), "the job chowned it to a subordinate uid"
    removed = agent.chooctl("rm", job["id"])
    assert removed.returncode == 0, removed.stderr
    assert not job_dir.exists()
    assert "cannot remove" not in agent.log()
    wait_until(lambda: volumes_of(agent) == [], what="no /out volume left")


def test_the_disk_cap_refuses_a_submit_past_it_and_keeps_nothing(make_agent, image, tmp_path):
    agent = make_agent(workspace_roots=[str(tmp_path)], max_files_bytes=150_000).start()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "data").write_bytes(os.urandom(100_000))
    first = agent.call(
        "job.submit", spec={"image": image, "command": ["true"], "workspace": str(ws)}
    )
    agent.call("job.wait", id=first["id"], timeout=60)
    refused = agent.chooctl("submit", "--workspace", str(ws), image, "true")
    assert refused.returncode == 125
    assert "max_files_bytes (150000 bytes)" in refused.stderr, refused.stderr
    assert "already use 100000 bytes" in refused.stderr
    assert "chooctl prune" in refused.stderr
    assert [j["id"] for j in agent.call("job.list", all=True)["jobs"]] == [first["id"]]
    assert [p.name for p in (agent.state_dir / "jobs").iterdir()] == [first["id"]]
    # Space freed: the same submit goes through.
    agent.chooctl("rm", first["id"])
    again = agent.call(
        "job.submit", spec={"image": image, "command": ["true"], "workspace": str(ws)}
    )
    assert agent.call("job.wait", id=again["id"], timeout=60)["state"] == "succeeded"

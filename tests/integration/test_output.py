"""Job output, byte for byte: what ``podman run --rm`` prints is what choo gives back.

Each class of output that broke before (no final newline, carriage returns,
empty lines, bytes that are not UTF-8, lines of 100 KB and 10 MB, the two
streams) is run once with ``podman run --rm`` and once as a job, and the job's
bytes are compared, stream by stream, as ``chooctl run`` prints them, as
``chooctl logs`` prints them (after the job ended, after its container is
gone, after an agent restart) and as ``job.logs`` carries them over the
socket. Then: a follow broken by an agent restart resumes without repeating
or losing a byte, and a retried job's ``log_tail`` is its last attempt's.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from agent.client import entry_bytes
from tests.harness import HOLD, release, wait_until

pytestmark = pytest.mark.podman

#: name -> shell script; each prints one class of output.
CASES = {
    "no final newline": "printf abc",
    "carriage returns": r"printf 'a\r\nb\rc\n\r\n\rd'",
    "empty lines": r"printf '\n\n\nx\n\n'",
    "not UTF-8": r"printf '\377\376 bad \200\n\300'; printf '\351t\351\n' >&2",
    "a 100,000-byte line": "head -c 100000 /dev/zero | tr '\\0' y; echo",
    "a 10 MB line": "head -c 10000000 /dev/zero | tr '\\0' z",
    "both streams": "echo out; echo err >&2; printf x >&2; printf y; echo; echo e2 >&2",
}


def podman_run(image: str, script: str) -> tuple[bytes, bytes]:
    """What ``podman run --rm`` writes to its stdout and stderr (the reference)."""
    done = subprocess.run(
        ["podman", "--runtime", "runc", "run", "--rm", "--network", "none", image, "sh", "-c"]
        + [script],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def chooctl_bytes(agent, *args: str) -> tuple[bytes, bytes]:
    done = subprocess.run(
        [*agent.chooctl_argv(), *args], capture_output=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def _same(what: str, got: tuple[bytes, bytes], want: tuple[bytes, bytes]) -> None:
    for stream, a, b in zip(("stdout", "stderr"), got, want, strict=True):
        assert a == b, (
            f"{what}: {stream} differs from podman run's: "
            f"{len(a)} bytes {a[:80]!r}...{a[-40:]!r} vs {len(b)} bytes {b[:80]!r}...{b[-40:]!r}"
        )


def test_every_class_of_output_comes_back_exactly(agent, image):
    wanted = {name: podman_run(image, script) for name, script in CASES.items()}
    jobs = {}
    for name, script in CASES.items():
        got = chooctl_bytes(agent, "run", image, "sh", "-c", script)
        _same(f"{name}: chooctl run", got, wanted[name])
        jobs[name] = agent.call("job.list", all=True, limit=1)["jobs"][0]["id"]

    def check_all(when: str) -> None:
        for name, job_id in jobs.items():
            _same(
                f"{name}: chooctl logs {when}", chooctl_bytes(agent, "logs", job_id), wanted[name]
            )
            out = agent.output(job_id)
            _same(f"{name}: job.logs {when}", (out["stdout"], out["stderr"]), wanted[name])

    check_all("after the job ended")
    wait_until(lambda: agent.containers() == [], what="every container removed")
    check_all("after its container is gone")
    agent.stop()
    agent.start()
    check_all("after an agent restart")


def test_job_logs_pages_and_entries_over_the_socket(agent, image):
    """Pages of at most about 1 MiB, each with ``next``; entries carry text or
    base64 data, and a cursor to resume after."""
    script = "head -c 3000000 /dev/zero | tr '\\0' q; printf '\\377\\n'"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    agent.call("job.wait", id=job["id"], timeout=120)
    pages, entries, after = 0, [], None
    while True:
        page = agent.call("job.logs", id=job["id"], **({"after": after} if after else {}))
        pages += 1
        for entry in page["entries"]:
            assert set(entry) >= {"stream", "time", "cursor"}
            assert ("text" in entry) != ("data" in entry), entry.keys()
            entries.append(entry)
        if not page["next"]:
            break
        after = page["next"]
        assert sum(len(e.get("text") or e.get("data")) for e in page["entries"]) < 2 << 20
    assert b"".join(map(entry_bytes, entries)) == b"q" * 3000000 + b"\xff\n"
    assert pages >= 3
    # Only the last entry holds the byte that is not UTF-8.
    assert ["data" in entry for entry in entries] == [False] * (len(entries) - 1) + [True]
    with pytest.raises(Exception, match="after"):
        agent.call("job.logs", id=job["id"], after="not a cursor")


def test_tail_counts_lines_of_all_attempts_and_log_tail_is_the_last_attempts(agent, image):
    script = (
        "n=$(cat /out/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /out/n; "
        'for i in 1 2 3; do echo "attempt $n line $i"; done; exit 1'
    )
    job = agent.call(
        "job.submit", spec={"image": image, "command": ["sh", "-c", script], "retries": 1}
    )
    ended = agent.call("job.wait", id=job["id"], timeout=120)
    assert ended["state"] == "failed" and len(agent.call("job.get", id=job["id"])["attempts"]) == 2
    assert ended["log_tail"] == "attempt 2 line 1\nattempt 2 line 2\nattempt 2 line 3"
    text = agent.output(job["id"], tail=4)["stdout"].decode()
    assert text == "attempt 1 line 3\nattempt 2 line 1\nattempt 2 line 2\nattempt 2 line 3\n"
    assert agent.output(job["id"])["stdout"].decode().count("\n") == 6


def test_a_follow_broken_by_an_agent_restart_resumes_without_repeats(agent, image):
    script = f"echo before; {HOLD}; for i in $(seq 1 200); do echo line $i; done"
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    received: list[bytes] = []
    first = threading.Event()
    lost = threading.Event()
    result: dict = {}

    def follow() -> None:
        with agent.client(timeout=None) as client:

            def on_entry(entry):
                received.append(entry_bytes(entry))
                first.set()

            result.update(client.follow(job["id"], on_entry, on_lost=lost.set))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert first.wait(60), "no output arrived"
    agent.stop()
    assert lost.wait(30), "the follow did not notice the agent going away"
    agent.start()
    release(agent.podman_url, job["id"])
    reader.join(120)
    assert not reader.is_alive(), "the follow did not end with the job"
    assert result["job"]["state"] == "succeeded"
    expected = b"before\n" + b"".join(b"line %d\n" % i for i in range(1, 201))
    assert b"".join(received) == expected


def test_followers_are_woken_by_each_write_and_by_the_end(agent, image):
    """Two followers of a running job: each gets every byte as it is written
    (a line, then a piece without a newline, then a burst), the job's end ends
    both, and the agent wakes them with inotify (it says when it cannot)."""
    script = (
        f"echo one; {HOLD}; rm /tmp/choo-release; printf two; {HOLD}; "
        "for i in $(seq 1 300); do echo burst $i; done"
    )
    job = agent.call("job.submit", spec={"image": image, "command": ["sh", "-c", script]})
    expected = b"one\ntwo" + b"".join(b"burst %d\n" % i for i in range(1, 301))
    followers = []
    for _ in range(2):
        got: list[bytes] = []
        seen = threading.Condition()
        result: dict = {}

        def follow(got=got, seen=seen, result=result) -> None:
            def on_entry(entry):
                with seen:
                    got.append(entry_bytes(entry))
                    seen.notify_all()

            with agent.client(timeout=None) as client:
                result.update(client.follow(job["id"], on_entry))

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        followers.append((thread, got, seen, result))

    def all_have(prefix: bytes) -> None:
        for _thread, got, seen, _result in followers:
            with seen:
                # At least: a release retried by the harness may let the job pass both holds.
                assert seen.wait_for(lambda got=got: b"".join(got).startswith(prefix), 60), (
                    f"a follower has {b''.join(got)!r}, not {prefix!r}"
                )

    all_have(b"one\n")
    release(agent.podman_url, job["id"])
    all_have(b"one\ntwo")
    release(agent.podman_url, job["id"])
    for thread, got, _seen, result in followers:
        thread.join(120)
        assert not thread.is_alive(), "a follow did not end with the job"
        assert result["job"]["state"] == "succeeded"
        assert b"".join(got) == expected
    assert "no inotify for job output" not in agent.log()

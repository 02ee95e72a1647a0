"""The click-free reading of a plain ``chooctl run`` line (agent/cli/fast.py).

Each line is read both ways: what the fast reader makes of it must be what
click's ``run`` would submit, and a line it does not take must go to click.
No agent: click's run is stopped where it would submit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from agent.cli import fast, jobs, main
from agent.cli.output import EXIT_ERROR

#: Lines the fast reader takes (and must read as click does).
TAKEN = [
    ["run", "img"],
    ["run", "img", "true"],
    ["run", "img", "sh", "-c", "echo hi; exit 3"],
    ["run", "img", "--help"],
    ["run", "img", "-d", "--name", "x"],
    ["run", "img", "--", "x"],
    ["run", "-"],
    ["run", ""],
    ["--socket", "/s", "run", "img", "true"],
    ["--socket=/s", "run", "img"],
    ["--socket", "/a", "--socket", "/b", "run", "img"],
    ["--socket", "-x", "run", "img"],
    ["run", "-d", "img", "true"],
    ["run", "--detach", "img"],
    ["run", "-e", "A=1", "--env", "B=x=y", "-e", "EMPTY=", "img"],
    ["run", "--name", "n", "--name", "m", "img"],
    ["run", "--name=n", "img"],
    ["run", "--name=", "img"],
    ["run", "--name", "--help", "img"],
    ["run", "--name", "-d", "img"],
    ["run", "-l", "team=ci", "--label", "tier=gold", "img"],
    ["run", "--secret", "TOKEN", "--secret", "KEY", "img"],
    ["run", "--cpus", "1.5", "--pids", "64", "--memory", "512m", "img"],
    ["run", "--cpus", "2", "--pids", " 7 ", "--priority", "-3", "--retries", "2", "img"],
    ["run", "--pull", "always", "--network", "default", "img"],
    ["run", "--pull=never", "img"],
    ["run", "--timeout", "30m", "--idle-timeout", "5m", "--stop-timeout", "3", "img"],
    ["run", "--max-log-bytes", "10k", "-w", "/src", "-u", "1000", "img"],
    ["run", "--retry-on", "lost", "--retry-on", "exit:75,76", "--retry-on", "not-exit:3", "img"],
    ["run", "--cache", "pip=/root/.cache", "--notify", "ops:failed", "--notify", "all", "img"],
    ["run", "--after", "01ABC", "--after", "01DEF:any", "img"],
]
#: Lines the fast reader leaves to click: help, other commands, options it does not
#: decide, and values click refuses (click says what is wrong).
LEFT = [
    [],
    ["--help"],
    ["-h"],
    ["--version"],
    ["ps"],
    ["submit", "img"],
    ["list", "run"],
    ["run"],
    ["run", "-h"],
    ["run", "--help", "img"],
    ["run", "--", "img"],
    ["run", "-d"],
    ["run", "--name"],
    ["--socket"],
    ["--socket", "/s"],
    ["--sock", "/s", "run", "img"],
    ["-x", "run", "img"],
    ["run", "--socket", "/s", "img"],
    ["run", "--not-before", "18:00", "img"],
    ["run", "--delay", "10m", "img"],
    ["run", "--workspace", "/tmp", "img"],
    ["run", "-dq", "img"],
    ["run", "-eA=1", "img"],
    ["run", "--detach=1", "img"],
    ["run", "--bogus", "img"],
    ["run", "--na", "x", "img"],
    ["run", "--cpus", "x", "img"],
    ["run", "--pids", "1.5", "img"],
    ["run", "--pull", "bogus", "img"],
    ["run", "--pull", "Always", "img"],
    ["run", "-e", "NOT_SET_ANYWHERE_HOPEFULLY", "img"],
    ["run", "-l", "x", "img"],
    ["run", "--cache", "x", "img"],
    ["run", "--retry-on", "exit:a", "img"],
    ["run", "--retry-on", "foo:1", "img"],
]


def through_click(monkeypatch, argv: list[str]):
    """What click's run would do with ``argv``: its socket, spec, detach and start
    params (a dict), or its exit status when it would not submit."""
    seen = {}

    def submit(connect, spec, start, *, detach, socket):
        seen.update(socket=socket, spec=spec, detach=detach, start=start)
        return 0

    monkeypatch.setattr(jobs, "run_job", submit)
    done = CliRunner().invoke(main, argv, env={"CHOO_SOCKET": None})
    return seen or done.exit_code


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_a_plain_run_line_is_read_as_click_reads_it(monkeypatch, argv):
    line = fast.read(argv)
    assert line is not None, "the fast reader left a plain run line to click"
    read = {"socket": line.socket, "spec": line.spec, "detach": line.detach, "start": {}}
    assert read == through_click(monkeypatch, argv)


@pytest.mark.parametrize("argv", LEFT, ids=" ".join)
def test_any_other_line_is_left_to_click(argv):
    assert fast.read(argv) is None


def test_a_line_left_to_click_is_one_click_refuses_or_takes_otherwise(monkeypatch):
    """The lines left are not all refused: some are click's own (help, --not-before)."""
    outcomes = {" ".join(argv): through_click(monkeypatch, argv) for argv in LEFT}
    assert outcomes["run --pull bogus img"] == EXIT_ERROR
    assert outcomes["--help"] == 0
    assert outcomes["run --workspace /tmp img"]["spec"]["workspace"] == "/tmp"
    assert "not_before" in outcomes["run --not-before 18:00 img"]["start"]


def test_the_env_a_variable_passes_is_the_callers(monkeypatch):
    monkeypatch.setenv("FROM_CALLER", "v")
    line = fast.read(["run", "-e", "FROM_CALLER", "img"])
    assert line.spec["env"] == {"FROM_CALLER": "v"}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


#: What a plain run line never imports: click, the other commands, and what would
#: slow its start: the params dataclasses, the result TypedDicts, the spec's checks.
NOT_IMPORTED = (
    "click",
    "agent.cli.jobs",
    "dataclasses",
    "agent.protocol.types",
    "agent.protocol.pausing",
    "agent.protocol.spec",
)


def test_a_plain_run_never_imports_click_nor_the_other_commands():
    done = _python(
        "import sys\n"
        "from agent.cli import fast\n"
        "line = fast.read(['--socket', '/nonexistent/agent.sock', 'run', '-e', 'A=1', 'img'])\n"
        "status = line.run()\n"
        f"loaded = [m for m in sys.modules if m in {NOT_IMPORTED!r}\n"
        "          or m.startswith('agent.cli.')]\n"
        "print(status, sorted(loaded))\n"
    )
    assert done.returncode == 0, done.stderr
    status, loaded = done.stdout.split(" ", 1)
    assert int(status) == EXIT_ERROR and "no agent socket at /nonexistent/agent.sock" in done.stderr
    assert [name for name in NOT_IMPORTED if repr(name) in loaded] == []
    assert "agent.cli.running" in loaded


def test_a_choice_option_reads_the_protocols_allowed_values():
    """``--pull``/``--network`` take their values from agent.protocol.spec, read then."""
    from agent.protocol.spec import NETWORKS, PULL_POLICIES

    assert fast.read(["run", "--pull", PULL_POLICIES[-1], "img"]).spec["pull"] == PULL_POLICIES[-1]
    assert fast.read(["run", "--network", NETWORKS[-1], "img"]).spec["network"] == NETWORKS[-1]


def _program(*argv: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    code = f"import sys\nsys.argv = {['chooctl', *argv]!r}\nfrom agent.cli import entry\nentry()\n"
    return subprocess.run(
        [sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True
    )


def test_the_program_exits_with_a_plain_runs_status_once_all_it_said_is_written():
    done = _program("--socket", "/nonexistent/agent.sock", "run", "img")
    assert done.returncode == EXIT_ERROR
    assert done.stderr.startswith("chooctl: no agent socket at /nonexistent/agent.sock")


def _exit_after(text: str, status: int, stdout) -> subprocess.CompletedProcess:
    code = f"import sys\nfrom agent.cli import _exit\nsys.stdout.write({text!r})\n_exit({status})\n"
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-c", code],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=buffered,
    )


def test_the_exit_of_a_plain_run_writes_what_is_buffered_first():
    done = _exit_after("buffered", 3, subprocess.PIPE)
    assert (done.returncode, done.stdout) == (3, "buffered")


def test_the_exit_of_a_plain_run_leaves_an_unwritable_output_to_pythons_exit():
    """A full stdout (/dev/full) fails at the flush: Python's own exit reports it (120)."""
    with open("/dev/full", "w") as full:
        done = _exit_after("lost", 3, full)
    assert done.returncode == 120 and "No space left on device" in done.stderr


def test_the_program_falls_back_to_click_for_any_other_line():
    done = _python(
        "import sys\n"
        "sys.argv = ['chooctl', 'run', '--pull', 'bogus', 'img']\n"
        "from agent.cli import entry\n"
        "entry()\n"
    )
    assert done.returncode == EXIT_ERROR
    assert "Invalid value for '--pull'" in done.stderr and "Usage: chooctl run" in done.stderr

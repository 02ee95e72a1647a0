"""Start-up checks for what rootless Podman needs, with a fix for each problem.

Each check returns a sentence saying what is wrong and what to do; the agent
refuses to start while any remains, instead of failing obscurely later (a job
that cannot start, or jobs killed when the agent restarts). Checks only look;
they never change the system.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from agent.adapters.podman_service import answers, default_url
from agent.config import Config

#: Enough subordinate ids for images that use uid/gid 65534 (nobody).
MIN_SUBIDS = 65536
LINGER_DIR = Path("/var/lib/systemd/linger")


def _subid_count(path: str, user: str, uid: int) -> int | None:
    """How many subordinate ids ``path`` grants the user (None: file unreadable)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        fields = line.split(":")
        if len(fields) == 3 and fields[0] in (user, str(uid)) and fields[2].isdigit():
            total += int(fields[2])
    return total


def system_service() -> bool:
    """True when systemd's system manager runs us (choo-agent.service).

    A user manager sets ``$MANAGERPID``; the system manager (PID 1) does not.
    """
    return bool(os.environ.get("INVOCATION_ID")) and not os.environ.get("MANAGERPID")


def check(config: Config) -> list[str]:
    """Return the problems found (an empty list when all is well)."""
    uid = os.getuid()
    user = pwd.getpwuid(uid).pw_name
    if uid == 0:
        return [
            "choo-agent runs rootless Podman and must not run as root; run it as an "
            "unprivileged user (e.g. 'runuser -u choo -- choo-agent', "
            "or the choo-agent.service unit)"
        ]
    problems = []
    in_service = system_service()
    for path in ("/etc/subuid", "/etc/subgid"):
        count = _subid_count(path, user, uid)
        if not count or count < MIN_SUBIDS:
            have = "no range" if not count else f"only {count} ids"
            problems.append(
                f"{path} has {have} for {user}; rootless Podman needs {MIN_SUBIDS}: "
                f"'usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}' "
                "(pick a range no other line of the file uses)"
            )
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir:
        fix = (
            "choo-agent.service sets it in its ExecStartPre; reinstall the unit (make install)"
            if in_service
            else f"log in through a session, or create /run/user/{uid} mode 0700 owned by "
            f"{user} and export XDG_RUNTIME_DIR=/run/user/{uid}"
        )
        problems.append(f"XDG_RUNTIME_DIR is not set; rootless Podman needs it ({fix})")
    elif not os.path.isdir(runtime_dir) or os.stat(runtime_dir).st_uid != uid:
        problems.append(
            f"XDG_RUNTIME_DIR {runtime_dir} does not exist or is not owned by {user}; "
            f"create it: install -d -m 0700 -o {user} {runtime_dir}"
        )
    if in_service and not (LINGER_DIR / user).exists():
        problems.append(
            f"linger is off for {user}: its user manager, which runs Podman and so every "
            f"job, would stop with the agent; enable it: 'loginctl enable-linger {user}'"
        )
    problems += _podman_problems(config, user, in_service)
    return problems


def _podman_problems(config: Config, user: str, in_service: bool) -> list[str]:
    if config.podman_url:
        if answers(config.podman_url):
            return []
        return [
            f"nothing answers at podman_url {config.podman_url}; start that Podman API "
            "service, or leave podman_url empty to use the user's podman.socket"
        ]
    url = default_url()
    if answers(url):
        return []
    if in_service:
        # A Podman service started by the agent would live in the agent's own
        # cgroup and sandbox: each restart of the unit would kill every job.
        return [
            f"no Podman API answers at {url}; enable {user}'s podman.socket, as root: "
            f"'runuser -u {user} -- env XDG_RUNTIME_DIR={os.environ.get('XDG_RUNTIME_DIR')} "
            "systemctl --user enable --now podman.socket' (make install does this)"
        ]
    if shutil.which("podman") is None:
        return ["podman is not installed; install it (apt-get install podman)"]
    return []  # the agent starts `podman system service` itself

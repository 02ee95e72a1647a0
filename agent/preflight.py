"""Start-up checks for what rootless Podman needs, with a fix for each problem.

Each check returns a sentence saying what is wrong and what to do; the agent
refuses to start while any remains, instead of failing obscurely later.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from agent.config import Config


def _has_range(path: str, user: str, uid: int) -> bool:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return False
    return any(line.split(":")[0] in (user, str(uid)) for line in lines if ":" in line)


def check(config: Config) -> list[str]:
    """Return the problems found (an empty list when all is well)."""
    problems = []
    uid = os.getuid()
    user = pwd.getpwuid(uid).pw_name
    if uid == 0:
        problems.append(
            "choo-agent runs rootless Podman and must not run as root; run it as an "
            "unprivileged user (e.g. 'runuser -u choo -- choo-agent', "
            "or the choo-agent.service unit)"
        )
        return problems
    if shutil.which("podman") is None and not config.podman_url:
        problems.append("podman is not installed; install it (apt-get install podman)")
    for path in ("/etc/subuid", "/etc/subgid"):
        if not _has_range(path, user, uid):
            problems.append(
                f"{path} has no range for {user}; add one: "
                f"'usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}'"
            )
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime_dir:
        problems.append(
            "XDG_RUNTIME_DIR is not set; rootless Podman needs it (log in through a session, "
            f"or create /run/user/{uid} mode 0700 owned by {user} and export XDG_RUNTIME_DIR)"
        )
    elif not os.path.isdir(runtime_dir) or os.stat(runtime_dir).st_uid != uid:
        problems.append(
            f"XDG_RUNTIME_DIR {runtime_dir} does not exist or is not owned by {user}; "
            f"create it: install -d -m 0700 -o {user} {runtime_dir}"
        )
    return problems

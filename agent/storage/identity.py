"""The agent's identity kept beside its database, so it outlives the database file.

Every container, volume and secret of an agent is labelled with its
``agent_id``. The database holds that id; this module keeps a copy in
``<state_dir>/agent-id``, written atomically (a temporary file, fsynced,
renamed over, the directory fsynced), so a database that is lost or moved
aside is recreated with the same identity and the old resources are still
recognised, swept or adopted. It only reads and writes that one file.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_NAME = "agent-id"


def read(path: Path) -> str | None:
    """The id kept in ``path``, or None when there is none (missing or empty).

    Raises:
        OSError: the file exists but cannot be read.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def keep(path: Path, agent_id: str) -> None:
    """Make ``path`` hold ``agent_id``, durably; nothing is written when it already does.

    Raises:
        OSError: the file or its directory cannot be written.
    """
    if read(path) == agent_id:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, f"{agent_id}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

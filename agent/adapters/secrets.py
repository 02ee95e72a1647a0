"""Where a job's secrets come from: the agent's credential source.

A spec's ``secrets`` names credentials; their values are looked up here only
when the job's container is about to be created, and handed to the Podman
adapter, which passes them to the container alone. This module must never
log, store or return a value anywhere else: log lines name credentials only.

Sources, first match wins:

1. ``$CREDENTIALS_DIRECTORY/NAME``: systemd's ``LoadCredential=`` and
   ``SetCredential=`` (the unit's private, read-only copy);
2. the agent's environment variable ``NAME``, if ``NAME`` is listed in the
   ``secret_env`` setting (e.g. ``GITHUB_TOKEN``); the rest of the agent's
   environment is never handed out.

A name found in neither (or empty, or unusable as an environment value) is
left out, not an error: the job starts without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from agent.config import Config

log = logging.getLogger(__name__)

#: Larger values are refused: an environment variable holds at most 128 KiB,
#: and a credential is a token or a key, not a file to ship.
MAX_SECRET_BYTES = 64 * 1024


class Credentials:
    """Looks credential values up by name; never keeps them."""

    def __init__(
        self,
        config: Config,
        *,
        environ: Mapping[bytes, bytes] | None = None,
        directory: str | os.PathLike | None = None,
    ):
        self.config = config
        self.environ = os.environb if environ is None else environ
        if directory is None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY") or None
        self.directory = Path(directory) if directory else None

    def resolve(self, names: Iterable[str], job_id: str = "") -> dict[str, bytes]:
        """Return ``{name: value}`` for the names that have a usable value."""
        values = {}
        for name in names:
            value = self._lookup(name, job_id)
            if value is not None:
                values[name] = value
        return values

    def available(self) -> list[str]:
        """Names a job may ask for and would get (for ``agent.info``; no values)."""
        names = set()
        if self.directory is not None:
            with contextlib.suppress(OSError):
                names.update(p.name for p in self.directory.iterdir() if p.is_file())
        names.update(n for n in self.config.secret_env if self.environ.get(n.encode()))
        return sorted(names)

    def _lookup(self, name: str, job_id: str) -> bytes | None:
        value = self._from_directory(name)
        where = "$CREDENTIALS_DIRECTORY"
        if value is None and name in self.config.secret_env:
            value = self.environ.get(name.encode())
            where = "the agent's environment"
        if value is None:
            log.info("job %s: secret %s not found; the job runs without it", job_id, name)
            return None
        if not value or len(value) > MAX_SECRET_BYTES or b"\0" in value:
            log.warning(
                "job %s: secret %s from %s is empty, over %d bytes or holds a NUL byte; "
                "the job runs without it",
                job_id,
                name,
                where,
                MAX_SECRET_BYTES,
            )
            return None
        return value

    def _from_directory(self, name: str) -> bytes | None:
        # ``name`` is a variable name (spec.ENV_NAME_RE): it cannot leave the directory.
        if self.directory is None:
            return None
        try:
            with open(self.directory / name, "rb") as f:
                return f.read(MAX_SECRET_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            log.warning("cannot read credential %s: %s", name, exc.strerror)
            return None

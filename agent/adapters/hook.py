"""Hook commands: a program on the host run when a job ends, as the agent's user.

It gets ``CHOO_JOB_ID``, ``CHOO_STATE``, ``CHOO_REASON``, ``CHOO_EXIT_CODE``,
``CHOO_NAME`` (and ``CHOO_EVENT``, ``CHOO_IDEMPOTENCY_KEY``) besides the
agent's ``PATH`` and ``HOME``, the job's record as JSON on its standard
input, and a timeout; its output goes to the agent's log line by line. It
is not given the rest of the agent's environment (the agent's credentials
stay the agent's). This module only runs it: retries are the notifier's.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Any

from agent.adapters.webhook import DeliveryFailed

log = logging.getLogger(__name__)

#: Most output of one run that reaches the agent's log.
MAX_OUTPUT = 64 * 1024


def environment(job: dict[str, Any], event: str, key: str) -> dict[str, str]:
    """The hook's environment for ``job``'s end (empty strings for what it lacks)."""

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(
        CHOO_JOB_ID=job["id"],
        CHOO_STATE=job["state"],
        CHOO_REASON=text(job.get("reason")),
        CHOO_EXIT_CODE=text(job.get("exit_code")),
        CHOO_NAME=text(job.get("name")),
        CHOO_EVENT=event,
        CHOO_IDEMPOTENCY_KEY=key,
    )
    return env


def run(
    argv: list[str], job: dict[str, Any], body: bytes, *, event: str, key: str, timeout: float
) -> None:
    """Run the hook once; exit status 0 is a delivery.

    Raises:
        DeliveryFailed: it could not start, timed out (it is killed) or exited non-zero.
    """
    try:
        done = subprocess.run(
            argv,
            input=body,
            env=environment(job, event, key),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        _log_output(argv, job["id"], exc.output or b"")
        raise DeliveryFailed(f"{argv[0]} did not finish within {timeout:g}s (killed)") from None
    except OSError as exc:
        raise DeliveryFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    _log_output(argv, job["id"], done.stdout)
    if done.returncode != 0:
        raise DeliveryFailed(f"{argv[0]} exited with status {done.returncode}")


def _log_output(argv: list[str], job_id: str, output: bytes) -> None:
    for line in output[:MAX_OUTPUT].decode("utf-8", "replace").splitlines():
        log.info("notify hook %s (job %s): %s", argv[0], job_id, line)

"""The names and labels choo gives what it creates in Podman, and where a job sees its files.

Every container, /out volume and secret of a job is named after the job and
labelled with the agent's ID, so the agent finds its own after a restart and
two agents sharing one Podman never take each other's. Constants and pure
functions only: nothing here calls Podman.
"""

from __future__ import annotations

LABEL_AGENT = "io.choo.agent"
LABEL_JOB = "io.choo.job"
LABEL_ATTEMPT = "io.choo.attempt"
#: Where a job sees its workspace snapshot and its output directory.
WORKSPACE_MOUNT = "/workspace"
OUT_MOUNT = "/out"
#: Podman secrets holding a job's secret values are named with this prefix,
#: the job ID and the attempt; they live only while the container is created
#: and started (Podman copies the values into the container at start).
SECRET_PREFIX = "choo-"


def out_volume_name(job_id: str) -> str:
    """The name of the named volume a job's containers mount at /out."""
    return f"choo-out-{job_id}"


def secret_name(job_id: str, attempt: int, variable: str) -> str:
    """The name of the Podman secret holding ``variable`` for one attempt of a job."""
    return f"{SECRET_PREFIX}{job_id}-{attempt}-{variable}"

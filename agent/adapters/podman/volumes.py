"""A job's /out volume: created labelled as ours, read back as a tar stream, removed.

The volume outlives each container so a job's attempts share it and its
files can be packed after the container is gone. Packing is
agent/adapters/files.py's job; this module only moves the bytes Podman holds.
"""

from __future__ import annotations

import json

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import Conflict, NotFound, done_once, mapped
from agent.adapters.podman.names import LABEL_AGENT, LABEL_JOB, OUT_MOUNT, out_volume_name
from agent.protocol.errors import CreateError


class Volumes(Connection):
    """The /out volume calls of ``Podman``."""

    def create_out_volume(self, job_id: str) -> None:
        """Create the job's /out volume, labelled as ours; one that exists is kept
        (a job's attempts share it, and a create whose reply came late made it).

        Raises:
            CreateError: Podman refused the volume.
            PodmanUnavailable: Podman did not answer.
        """
        name = out_volume_name(job_id)
        labels = {LABEL_AGENT: self.agent_id, LABEL_JOB: job_id}

        def create() -> bool:
            try:
                with mapped(f"create the /out volume of job {job_id}", CreateError):
                    self.client.volumes.create(name, labels=labels)
            except CreateError as exc:
                if "already exists" not in exc.message:
                    raise
            return True

        done_once(create, lambda: self._volume_exists(name) or None, f"create volume {name}")

    def _volume_exists(self, name: str) -> bool:
        with mapped(f"look up volume {name}"):
            return bool(self.client.volumes.exists(name))

    def remove_out_volume(self, job_id: str) -> None:
        """Remove the job's /out volume; one that is gone or still in use is left.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        try:
            with mapped(f"remove the /out volume of job {job_id}"):
                self.client.volumes.remove(out_volume_name(job_id), force=False)
        except (NotFound, Conflict):
            pass

    def list_out_volumes(self) -> list[tuple[str, str]]:
        """(volume name, job ID) of every /out volume labelled as this agent's.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        out = []
        for item in self.our_volumes():
            labels = item.get("Labels") or {}
            if labels.get(LABEL_JOB):
                out.append((item["Name"], labels[LABEL_JOB]))
        return out

    def our_volumes(self) -> list[dict]:
        """Podman's record of every volume labelled as this agent's (/out and caches).

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        with mapped("list volumes"):
            response = self.client.api.get(
                "/volumes/json", params={"filters": json.dumps({"label": [self.ours]})}
            )
            response.raise_for_status()
        return response.json() or []

    def read_out(self, name_or_id: str) -> Archive:
        """A tar stream of a (stopped) container's /out; use as a context manager.

        Raises:
            PodmanUnavailable: Podman did not answer or could not read it.
        """
        with mapped(f"copy /out out of container {name_or_id}"):
            response = self.client.api.get(
                f"/containers/{name_or_id}/archive", params={"path": OUT_MOUNT}, stream=True
            )
            response.raise_for_status()
        return Archive(response)


class Archive:
    """A streamed tar answer: ``with podman.read_out(id) as stream: ...``."""

    def __init__(self, response):
        self.response = response

    def __enter__(self):
        self.response.raw.decode_content = True
        return self.response.raw

    def __exit__(self, *exc) -> None:
        self.response.close()

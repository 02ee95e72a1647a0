"""A job's secret values as Podman secrets, alive only while its container is created and started.

Values travel as ``type=env`` Podman secrets, so they are in no create
request, log or ``inspect`` of a container. Nothing here ever logs or reports
a value: messages name the variable only. Where values come from is
agent/adapters/secrets.py's business.
"""

from __future__ import annotations

import logging

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import NotFound, mapped
from agent.adapters.podman.names import SECRET_PREFIX, secret_name
from agent.protocol.errors import ChooError, CreateError

log = logging.getLogger(__name__)


class Secrets(Connection):
    """The secret calls of ``Podman``."""

    def create_secrets(self, job_id: str, attempt: int, values: dict[str, bytes]) -> dict[str, str]:
        """Store each value as a Podman secret of this attempt.

        Args:
            job_id: the job the values are for.
            attempt: its attempt number (part of each secret's name).
            values: ``{variable: value}``.

        Returns:
            ``{variable: secret name}``; on failure none is left behind.

        Raises:
            CreateError: Podman refused a secret.
            PodmanUnavailable: Podman did not answer.
        """
        created: dict[str, str] = {}
        try:
            for variable, value in values.items():
                name = secret_name(job_id, attempt, variable)
                self.remove_secret(name)  # left by an attempt the agent did not see end
                with mapped(f"store secret {variable} of job {job_id}", CreateError):
                    response = self.client.api.post(
                        "/secrets/create", params={"name": name}, data=value
                    )
                    response.raise_for_status()
                created[variable] = name
        except ChooError:
            for name in created.values():
                self.remove_secret(name)
            raise
        return created

    def remove_secret(self, name: str) -> None:
        """Remove one Podman secret; one that is gone is fine, a failure only logged."""
        try:
            with mapped(f"remove secret {name}"):
                self.client.api.delete(f"/secrets/{name}").raise_for_status()
        except NotFound:
            pass
        except ChooError as exc:
            log.warning("could not remove Podman secret %s: %s", name, exc.message)

    def remove_secrets(self, job_id: str) -> None:
        """Remove every Podman secret of a job (all attempts); none is fine.

        Raises:
            PodmanUnavailable: Podman did not answer when asked for the list.
        """
        prefix = f"{SECRET_PREFIX}{job_id}-"
        with mapped("list secrets"):
            response = self.client.api.get("/secrets/json")
            response.raise_for_status()
        for item in response.json() or []:
            name = (item.get("Spec") or {}).get("Name") or ""
            if name.startswith(prefix):
                self.remove_secret(name)

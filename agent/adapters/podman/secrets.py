"""A job's secret values as Podman secrets, alive only while its container exists.

Each is labelled as the agent's and the job's, so one left behind (the agent
died before removing it, or Podman did not answer the removal) is found and
swept later (agent/runtime/sweeps.py). Nothing here ever logs or reports a
value: messages name the variable only. Where values come from is
agent/adapters/secrets.py's business; how the container gets them
(``secret_delivery``) is run.py's.
"""

from __future__ import annotations

import json
import logging

from agent.adapters.podman.connection import Connection
from agent.adapters.podman.errors import NotFound, done_once, mapped
from agent.adapters.podman.names import LABEL_AGENT, LABEL_JOB, SECRET_PREFIX, secret_name
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
        name = ""
        try:
            for variable, value in values.items():
                name = secret_name(job_id, attempt, variable)
                self._store_secret(job_id, variable, name, value)
                created[variable] = name
        except ChooError:
            # The one being made too: its create may have landed after all.
            for made in {*created.values(), name} - {""}:
                self.remove_secret(made)
            raise
        return created

    def _store_secret(self, job_id: str, variable: str, name: str, value: bytes) -> None:
        """Create one secret afresh, once in effect (a late create is looked up)."""
        what = f"store secret {variable} of job {job_id}"

        def create() -> bool:
            self.remove_secret(name)  # left by an attempt the agent did not see end
            try:
                with mapped(what, CreateError):
                    labels = json.dumps({LABEL_AGENT: self.agent_id, LABEL_JOB: job_id})
                    self.client.api.post(
                        "/secrets/create", params={"name": name, "labels": labels}, data=value
                    ).raise_for_status()
            except CreateError as exc:
                # This very create, answered late, landed between the removal and now.
                if "in use" not in exc.message:
                    raise
            return True

        done_once(create, lambda: self._secret_exists(name) or None, what)

    def _secret_exists(self, name: str) -> bool:
        return self._inspect_secret(name) is not None

    def _inspect_secret(self, name: str) -> dict | None:
        """A secret as Podman inspects it, or None if there is no such secret."""
        try:
            with mapped(f"look up secret {name}"):
                response = self.client.api.get(f"/secrets/{name}/json")
                response.raise_for_status()
        except NotFound:
            return None
        return response.json() or {}

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
        for name, _labels in self._secrets():
            if name.startswith(prefix):
                self.remove_secret(name)

    def list_job_secrets(self) -> list[tuple[str, str]]:
        """This agent's Podman secrets: (name, job ID) of each.

        Podman 4.3 lists secrets unfiltered and without their labels (only an
        inspect has them), so each one named like ours is inspected: a few,
        since the secrets of a job live only while its container does.

        Raises:
            PodmanUnavailable: Podman did not answer.
        """
        found = []
        for name, labels in self._secrets():
            if labels is None and name.startswith(SECRET_PREFIX):
                labels = ((self._inspect_secret(name) or {}).get("Spec") or {}).get("Labels")
            labels = labels or {}
            job = labels.get(LABEL_JOB)
            if job and labels.get(LABEL_AGENT) == self.agent_id:
                found.append((name, job))
        return found

    def _secrets(self) -> list[tuple[str, dict[str, str] | None]]:
        """Every Podman secret: its name, and its labels as listed (None: not given)."""
        with mapped("list secrets"):
            response = self.client.api.get("/secrets/json")
            response.raise_for_status()
        return [
            ((item.get("Spec") or {}).get("Name") or "", (item.get("Spec") or {}).get("Labels"))
            for item in response.json() or []
        ]

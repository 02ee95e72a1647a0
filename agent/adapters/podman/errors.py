"""podman-py's and requests' failures, translated into choo errors, one call at a time.

``with mapped("start container X", CreateError): ...`` turns what podman-py or
the HTTP transport raises into the ``ChooError`` a user can act on, naming
what the agent was doing. Two answers are not failures for the adapter's
callers and come out as private markers instead: ``NotFound`` (404: gone
already) and ``Conflict`` (304/409: already in that state). This module
decides nothing about what to do next.
"""

from __future__ import annotations

import requests
from podman import errors as perr

from agent.protocol.errors import ChooError, PodmanUnavailable


class NotFound(Exception):
    """Podman answered 404: the container, volume or secret does not exist."""


class Conflict(Exception):
    """Podman answered 304 or 409: already in the state asked for, or in use."""


class mapped:
    """Translate podman-py/requests failures of one call into choo errors.

    Args:
        what: the action, completing "Podman could not ..." in messages.
        error: the ``ChooError`` for a refusal. Only with the default,
            ``PodmanUnavailable``, do 404 and 304/409 come out as ``NotFound``
            and ``Conflict`` (a create that meets 404 is a refusal, not "gone").
    """

    def __init__(self, what: str, error: type[ChooError] = PodmanUnavailable):
        self.what = what
        self.error = error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, ChooError):
            return False
        if isinstance(exc, perr.NotFound | perr.ImageNotFound) and self.error is PodmanUnavailable:
            raise NotFound() from exc
        if isinstance(exc, perr.APIError):
            status = getattr(exc, "status_code", None)
            if status is None or isinstance(exc.__context__, requests.ConnectionError):
                raise PodmanUnavailable(f"Podman did not answer when asked to {self.what}: {exc}")
            if status == 404 and self.error is PodmanUnavailable:
                raise NotFound() from exc
            if status in (304, 409) and self.error is PodmanUnavailable:
                raise Conflict() from exc
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise self.error(f"Podman could not {self.what}: {explanation}") from exc
        if isinstance(exc, requests.RequestException | OSError | perr.PodmanError):
            raise PodmanUnavailable(f"Podman did not answer when asked to {self.what}: {exc}")
        return False

"""podman-py's and requests' failures, translated into choo errors, one call at a time.

``with mapped("start container X", CreateError): ...`` turns what podman-py or
the HTTP transport raises into the ``ChooError`` a user can act on, naming
what the agent was doing. Two answers are not failures for the adapter's
callers and come out as private markers instead: ``NotFound`` (404: gone
already) and ``Conflict`` (304/409: already in that state). This module
decides nothing about what to do next, except to tell a Podman that is down
(nothing listens: ``PodmanUnavailable``) from one that is slow (the request
went out, the reply came late or was lost: ``PodmanLate``, which may have
acted, so its caller asks Podman what happened before doing it again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import requests
from podman import errors as perr

from agent.protocol.errors import ChooError, PodmanUnavailable

T = TypeVar("T")

#: How many times a call whose reply came late is asked again before the
#: caller hears ``PodmanLate`` (each try waits up to ``podman_timeout``).
LATE_TRIES = 5


class PodmanLate(PodmanUnavailable):
    """The request reached Podman, but its reply came too late or was lost:
    Podman may have done what was asked. A caller that cannot just repeat the
    call asks Podman what it did; the others treat it as unavailable."""


#: The transport failures that mean the request never reached Podman.
_NEVER_SENT = (FileNotFoundError, ConnectionRefusedError, requests.ConnectTimeout)


def reached_podman(exc: BaseException) -> bool:
    """Whether a transport failure happened after the request was sent.

    podman-py wraps what requests raises (and requests what urllib3 raises),
    so the whole chain of causes is searched for a failure to connect.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _NEVER_SENT):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


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
                raise self._unanswered(exc) from exc
            if status == 404 and self.error is PodmanUnavailable:
                raise NotFound() from exc
            if status in (304, 409) and self.error is PodmanUnavailable:
                raise Conflict() from exc
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise self.error(f"Podman could not {self.what}: {explanation}") from exc
        if isinstance(exc, requests.RequestException | OSError | perr.PodmanError):
            raise self._unanswered(exc) from exc
        return False

    def _unanswered(self, exc: BaseException) -> PodmanUnavailable:
        if reached_podman(exc):
            return PodmanLate(
                f"Podman did not answer in time when asked to {self.what} "
                f"(it may have done it): {exc}"
            )
        return PodmanUnavailable(f"Podman did not answer when asked to {self.what}: {exc}")


def answered(ask: Callable[[], T], tries: int = LATE_TRIES) -> T:
    """The result of a call that only reads (an inspect), asked again while
    its reply comes late.

    Raises:
        PodmanLate: it came late ``tries`` times.
        PodmanUnavailable: Podman is down.
    """
    for _ in range(tries - 1):
        try:
            return ask()
        except PodmanLate:
            continue
    return ask()


def done_once(act: Callable[[], T | None], landed: Callable[[], T | None], what: str) -> T:
    """Do ``act`` once in effect: when its reply is late or lost, ask Podman
    (``landed``) whether it happened, and do it again only if it did not.

    Args:
        act: the call that changes something; returns a true value, or None
            when Podman says it is done already (then ``landed`` is asked).
        landed: what ``act`` would have returned if it happened, else None.
        what: the action, for the message.

    Raises:
        PodmanLate: Podman stayed too slow to tell, ``LATE_TRIES`` times.
        PodmanUnavailable: Podman is down.
    """
    for _ in range(LATE_TRIES):
        try:
            result = act()
        except PodmanLate:
            result = None
        result = result or answered(landed)
        if result:
            return result
    raise PodmanLate(
        f"Podman answered too late, {LATE_TRIES} times, when asked to {what}; "
        "it is overloaded: the agent tries again on its next pass"
    )

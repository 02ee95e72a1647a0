"""Webhook deliveries: one signed HTTP POST of a job's record (stdlib urllib).

The body is the JSON record; ``X-Choo-Signature: sha256=<hex>`` is its
HMAC-SHA256 keyed by the target's credential (when it names one), and
``Idempotency-Key`` is the same on every try of one delivery, so a receiver
can drop repeats. This module only sends: whether and when to try again is
the notifier's, and it never logs the key or the body.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request

from agent import __version__

SIGNATURE_HEADER = "X-Choo-Signature"
KEY_HEADER = "Idempotency-Key"
#: How much of a refusal's body goes into the error kept for ``chooctl inspect``.
_ERROR_BODY = 200


class DeliveryFailed(Exception):
    """A try did not deliver; the message says why (kept as the last error)."""


def signature(body: bytes, key: bytes) -> str:
    """The ``X-Choo-Signature`` value of ``body``: ``sha256=`` and the hex HMAC."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, *, key: bytes | None, idempotency_key: str, timeout: float) -> int:
    """POST ``body`` to ``url``; a 2xx answer is a delivery.

    Args:
        url: the target's http(s) URL.
        body: the JSON bytes.
        key: the signing key (None: sent unsigned).
        idempotency_key: the delivery's key, the same on every try.
        timeout: seconds for the connection and the answer.

    Returns:
        The HTTP status.

    Raises:
        DeliveryFailed: no answer, or one that is not 2xx.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"choo-agent/{__version__}",
        KEY_HEADER: idempotency_key,
    }
    if key is not None:
        headers[SIGNATURE_HEADER] = signature(body, key)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(_ERROR_BODY).decode("utf-8", "replace").strip()
        raise DeliveryFailed(f"{url} answered {exc.code} {exc.reason}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"{url}: {reason}") from None

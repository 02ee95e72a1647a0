"""Names and labels as Kubernetes and Nomad accept them (pure).

A choo name (``[A-Za-z0-9][A-Za-z0-9_.-]*``) is turned into a DNS-1123 label;
a name that had to change (or be cut short) gets a digest of the original, so
two names that differ only in what was changed stay apart. The label checks are the
Kubernetes API server's rules, which its OpenAPI schema does not carry.
"""

from __future__ import annotations

import hashlib
import re

#: A DNS-1123 label: lowercase letters, digits and '-', starting and ending alphanumeric.
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL = 63
MAX_SUBDOMAIN = 253
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
#: Hex digits of the original name's sha256 added to a name that had to change.
DIGEST = 6


def dns_label(text: str, *, limit: int = MAX_LABEL, unique: str | None = None) -> str:
    """A DNS-1123 label of at most ``limit`` characters made from ``text``.

    Args:
        text: any name.
        limit: the longest label the target takes (a CronJob's name: 52).
        unique: appended (after '-') to keep apart objects of one name.

    Returns:
        ``text`` itself when it is a valid label and nothing is appended.
    """
    base = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")
    suffix = [unique] if unique else []
    if base != text or len("-".join([base, *suffix])) > limit:
        # Changed or cut: the digest keeps apart the names that became alike.
        suffix.insert(0, hashlib.sha256(text.encode()).hexdigest()[:DIGEST])
    tail = "-".join(suffix)
    room = limit - (len(tail) + 1 if tail else 0)
    base = base[:room].rstrip("-") or "job"
    return f"{base}-{tail}" if tail else base


def is_dns_label(name: str, limit: int = MAX_LABEL) -> bool:
    """Whether ``name`` is a DNS-1123 label of at most ``limit`` characters."""
    return len(name) <= limit and bool(DNS_LABEL_RE.match(name))


def is_label_key(key: str) -> bool:
    """Whether ``key`` may key a Kubernetes label or annotation: ``[prefix/]name``,
    the prefix a DNS subdomain of at most 253 characters, the name at most 63."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > MAX_SUBDOMAIN or not _SUBDOMAIN_RE.match(prefix)):
        return False
    return len(name) <= MAX_LABEL and bool(_QUALIFIED_NAME_RE.match(name))


def is_label_value(value: str) -> bool:
    """Whether ``value`` may be a Kubernetes label's value (at most 63 characters)."""
    return len(value) <= MAX_LABEL and bool(_LABEL_VALUE_RE.match(value))


def secret_name(variable: str) -> str:
    """The Kubernetes Secret that holds the credential ``variable`` (under that key)."""
    return dns_label(variable.replace("_", "-").lower(), limit=MAX_LABEL)

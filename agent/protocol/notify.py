"""Notification rules and targets as the config and a job spec write them (pure).

A *rule* says when to notify and whom: ``{"on": ["failed"], "target": "ops"}``
(a job's ``notify``), plus an optional ``name`` in the config's ``notify``
(the rule then applies to jobs of that name only). A *target* is defined in
the config's ``notify_targets`` alone, so a client can choose among the
targets an administrator set up but never make the agent post to a URL or run
a command of its own. This module only checks shapes; matching a rule to a
job's end is agent/rules/notify.py's.
"""

from __future__ import annotations

import re
from typing import Any

from agent.protocol.errors import InvalidParams

#: The ends a rule may name: a final state, ``retries_exhausted`` (failed after
#: every retry the spec allowed) or ``any`` (every end).
EVENTS = ("failed", "succeeded", "cancelled", "retries_exhausted", "any")
#: The kinds of target, each with the keys it takes besides ``timeout``.
TARGET_KEYS = {"webhook": ("webhook", "secret"), "command": ("command",)}
#: Seconds a delivery may take when its target sets no ``timeout``.
DEFAULT_TARGET_TIMEOUT = 10.0
TARGET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
CREDENTIAL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_RULES = 16


def parse_rules(value: Any, field: str, *, named: bool) -> list[dict[str, Any]]:
    """Check a list of rules; each comes back as ``{"on": [...], "target": ..., "name"?}``.

    Args:
        value: the list as written.
        field: where it came from, for messages (``notify``).
        named: whether a rule may carry ``name`` (the config's rules may, a job's not).

    Raises:
        InvalidParams: naming the first rule that is wrong.
    """
    if not isinstance(value, list) or len(value) > MAX_RULES:
        raise InvalidParams(
            f"{field}: expected a list of at most {MAX_RULES} rules like "
            f'{{"on": ["failed"], "target": "ops"}}, got {value!r}'
        )
    allowed = {"on", "target", "name"} if named else {"on", "target"}
    rules = []
    for i, rule in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(rule, dict) or set(rule) - allowed or "target" not in rule:
            raise InvalidParams(
                f"{where}: expected an object with target and optionally "
                f"{', '.join(sorted(allowed - {'target'}))}, got {rule!r}"
            )
        on = rule.get("on", ["any"])
        if isinstance(on, str):
            on = [on]
        if not isinstance(on, list) or not on or any(e not in EVENTS for e in on):
            raise InvalidParams(f"{where}.on: expected some of {', '.join(EVENTS)}, got {on!r}")
        out = {"on": list(dict.fromkeys(on)), "target": target_name(rule["target"], where)}
        if rule.get("name") is not None:
            if not isinstance(rule["name"], str) or not rule["name"]:
                raise InvalidParams(f"{where}.name: expected a job name, got {rule['name']!r}")
            out["name"] = rule["name"]
        rules.append(out)
    return rules


def target_name(value: Any, where: str) -> str:
    """``value`` if it can name a target.

    Raises:
        InvalidParams: it cannot.
    """
    if not isinstance(value, str) or not TARGET_NAME_RE.match(value):
        raise InvalidParams(
            f"{where}.target: expected a target name (letters, digits, '_', '.', '-'), "
            f"got {value!r}"
        )
    return value


def parse_targets(value: Any) -> dict[str, dict[str, Any]]:
    """Check the config's ``notify_targets``: name -> ``{"webhook", "secret"?}`` or
    ``{"command": [...]}``, either with an optional ``timeout`` (seconds).

    Returns:
        Each target with its ``kind`` and ``timeout`` filled in.

    Raises:
        InvalidParams: naming the first target that is wrong.
    """
    if not isinstance(value, dict):
        raise InvalidParams(f"notify_targets: expected a table of targets, got {value!r}")
    targets = {}
    for name, target in value.items():
        where = f"notify_targets.{name}"
        target_name(name, "notify_targets")
        kinds = [kind for kind in TARGET_KEYS if isinstance(target, dict) and kind in target]
        if len(kinds) != 1:
            raise InvalidParams(f"{where}: expected one of webhook = URL or command = [argv]")
        kind = kinds[0]
        unknown = set(target) - {*TARGET_KEYS[kind], "timeout"}
        if unknown:
            raise InvalidParams(f"{where}: unknown key(s) {sorted(unknown)} for a {kind} target")
        out: dict[str, Any] = {"kind": kind, "timeout": DEFAULT_TARGET_TIMEOUT}
        timeout = target.get("timeout", DEFAULT_TARGET_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidParams(f"{where}.timeout: expected seconds above 0, got {timeout!r}")
        out["timeout"] = float(timeout)
        if kind == "webhook":
            url = target["webhook"]
            if not isinstance(url, str) or not re.match(r"^https?://[^\s]+$", url):
                raise InvalidParams(f"{where}.webhook: expected an http(s) URL, got {url!r}")
            out["webhook"] = url
            secret = target.get("secret")
            if secret is not None and (
                not isinstance(secret, str) or not CREDENTIAL_RE.match(secret)
            ):
                raise InvalidParams(
                    f"{where}.secret: expected a credential name (like WEBHOOK_KEY), got {secret!r}"
                )
            out["secret"] = secret
        else:
            argv = target["command"]
            if (
                not isinstance(argv, list)
                or not argv
                or not all(isinstance(a, str) and a and "\0" not in a for a in argv)
                or not argv[0].startswith("/")
            ):
                raise InvalidParams(
                    f"{where}.command: expected [absolute path, args...], got {argv!r}"
                )
            out["command"] = list(argv)
        targets[name] = out
    return targets

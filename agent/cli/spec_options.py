"""The job options of ``run``, ``submit`` and ``schedule add``, and the spec they make.

Allowed values and defaults in the help texts come from agent.protocol.spec,
which also validates the spec (in the agent).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from agent.protocol.spec import (
    DEFAULT_NETWORK,
    DEFAULT_PULL,
    DEFAULT_STOP_TIMEOUT,
    NETWORKS,
    PULL_POLICIES,
)
from agent.protocol.workflow import RETRY_REASONS

#: IMAGE COMMAND...: options after IMAGE belong to the command, as with podman run.
RUN_SETTINGS = {"ignore_unknown_options": False, "allow_interspersed_args": False}

_OPTIONS = [
    click.option("--name", help="Logical name (groups runs; per-name limits)."),
    click.option(
        "-e",
        "--env",
        "env",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set an environment variable (repeatable).",
    ),
    click.option(
        "--secret",
        "secrets",
        multiple=True,
        metavar="NAME",
        help="Pass the agent's credential NAME as variable NAME (repeatable); "
        "the value is never stored.",
    ),
    click.option(
        "-l",
        "--label",
        "labels",
        multiple=True,
        metavar="KEY=VALUE",
        help="Add a label (repeatable).",
    ),
    click.option(
        "--timeout",
        metavar="DURATION",
        help="Stop the job after this long (e.g. 90, 30m, 2h); it fails with reason timeout.",
    ),
    click.option(
        "--idle-timeout",
        metavar="DURATION",
        help="Stop the job when it prints nothing for this long (e.g. 10m); it fails with"
        " reason stalled (default: the agent's idle_timeout, off unless set).",
    ),
    click.option(
        "--stop-timeout",
        metavar="DURATION",
        help=f"Grace between SIGTERM and SIGKILL (default {DEFAULT_STOP_TIMEOUT:g}s).",
    ),
    click.option(
        "--max-log-bytes",
        metavar="SIZE",
        help="Keep at most this much output per attempt (e.g. 10m; 0: no cap; default: the"
        " agent's max_log_bytes); the rest is dropped, or the job fails (log_limit_action).",
    ),
    click.option("--memory", metavar="SIZE", help="Memory limit (e.g. 512m)."),
    click.option("--cpus", type=float, help="CPU limit (e.g. 1.5)."),
    click.option("--pids", type=int, help="Process-count limit."),
    click.option(
        "--pull",
        type=click.Choice(PULL_POLICIES),
        help=f"Image pull policy (default {DEFAULT_PULL}).",
    ),
    click.option("--retries", type=int, help="Attempts after a failure (default 0)."),
    click.option(
        "--retry-on",
        "retry_on",
        multiple=True,
        metavar="RULE",
        help=f"Retry only these failures (repeatable): a reason ({', '.join(RETRY_REASONS)}),"
        " exit:CODE[,CODE...] (only these exit codes) or not-exit:CODE[,CODE...]"
        " (never these); default: exit, oom and lost.",
    ),
    click.option(
        "--network", type=click.Choice(NETWORKS), help=f"Network (default {DEFAULT_NETWORK})."
    ),
    click.option("-w", "--workdir", help="Working directory inside the container."),
    click.option(
        "--workspace",
        metavar="DIR",
        # The agent decides what it may read (it may be another user).
        type=click.Path(file_okay=False, readable=False),
        help="Snapshot DIR now and mount the copy at /workspace (the job starts there).",
    ),
    click.option("-u", "--user", help="User inside the container."),
    click.option("--priority", type=int, help="Higher starts first (default 0)."),
    click.option(
        "--cache",
        "caches",
        multiple=True,
        metavar="NAME=PATH",
        help="Mount the cache NAME at PATH, kept between runs of jobs of the same name "
        "(repeatable; see chooctl cache).",
    ),
    click.option(
        "--notify",
        "notify",
        multiple=True,
        metavar="TARGET[:EVENT,...]",
        help="When the job ends, notify the agent's notify target TARGET (repeatable); "
        "EVENTs: failed, succeeded, cancelled, retries_exhausted, any (default any).",
    ),
    click.option(
        "--after",
        multiple=True,
        metavar="ID[:ok|any|failed]",
        help="Start only once job ID (or an ID prefix) ended: succeeded (ok, the default),"
        " failed, or either (any); if it cannot, this job ends cancelled (dependency)."
        " Repeatable: all must be met.",
    ),
]
#: The spec fields that are copied as given when set.
_PLAIN = (
    "name",
    "timeout",
    "idle_timeout",
    "stop_timeout",
    "max_log_bytes",
    "pull",
    "retries",
    "network",
    "workdir",
    "user",
    "priority",
)


def spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add IMAGE, COMMAND... and the job options to a command."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    fn = click.argument("command", nargs=-1, type=click.UNPROCESSED)(fn)
    return click.argument("image")(fn)


def pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    """``("A=1", "B")`` as ``{"A": "1", "B": <the caller's $B>}`` (for env only).

    Raises:
        click.BadParameter: an item is not KEY=VALUE.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            if what == "env" and key in os.environ:
                value = os.environ[key]  # like podman: -e NAME passes the caller's value
            else:
                raise click.BadParameter(f"expected {what} as KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _retry_rule(items: tuple[str, ...]) -> dict[str, Any]:
    """``--retry-on lost --retry-on exit:75`` -> the spec's ``retry_on``
    (the agent checks the reasons and codes)."""
    rule: dict[str, Any] = {"reasons": []}
    for item in items:
        what, sep, codes = item.partition(":")
        if what in ("exit", "not-exit") and sep:
            try:
                numbers = [int(code) for code in codes.split(",")]
            except ValueError:
                raise click.BadParameter(
                    f"expected exit codes like {what}:75,76, got {item!r}", param_hint="--retry-on"
                ) from None
            rule.setdefault("exit_codes" if what == "exit" else "not_exit_codes", []).extend(
                numbers
            )
            what = "exit"
        elif sep:
            raise click.BadParameter(
                f"expected a reason, exit:CODES or not-exit:CODES, got {item!r}",
                param_hint="--retry-on",
            )
        if what not in rule["reasons"]:
            rule["reasons"].append(what)
    return rule


def build_spec(image: str, command: tuple[str, ...], opts: dict[str, Any]) -> dict[str, Any]:
    """The job spec of a command line: only what was given (the agent fills defaults).

    Raises:
        click.BadParameter: an ``-e``/``-l`` item is not KEY=VALUE, or a
            ``--retry-on`` rule is not one.
    """
    spec: dict[str, Any] = {"image": image, "command": list(command)}
    if opts["env"]:
        spec["env"] = pairs(opts["env"], "env")
    if opts["secrets"]:
        spec["secrets"] = list(opts["secrets"])
    if opts["labels"]:
        spec["labels"] = pairs(opts["labels"], "label")
    resources = {k: opts[k] for k in ("memory", "cpus", "pids") if opts[k] is not None}
    if resources:
        spec["resources"] = resources
    for key in _PLAIN:
        if opts[key] is not None:
            spec[key] = opts[key]
    if opts["retry_on"]:
        spec["retry_on"] = _retry_rule(opts["retry_on"])
    if opts["after"]:
        spec["after"] = list(opts["after"])
    if opts["workspace"] is not None:
        spec["workspace"] = os.path.abspath(opts["workspace"])
    if opts["caches"]:
        spec["caches"] = pairs(opts["caches"], "cache")
    if opts["notify"]:
        spec["notify"] = [_notify_rule(item) for item in opts["notify"]]
    return spec


def _notify_rule(item: str) -> dict[str, Any]:
    """``ops`` or ``ops:failed,cancelled`` as a spec's notify rule (the agent checks it)."""
    target, _, events = item.partition(":")
    return {"target": target, "on": [e for e in events.split(",") if e] or ["any"]}

"""The job options of ``run``, ``submit`` and ``schedule add``, and the spec they make.

The options are defined once, as data (``JOB_OPTIONS``): ``spec_options`` makes
click options of them, and agent/cli/fast.py reads a plain ``chooctl run`` line
with the same table, without importing click. Allowed values and defaults in
the help texts come from agent.protocol.spec, which also validates the spec (in
the agent). Nothing here imports click until a click command is built or a
value is refused, nor agent.protocol.spec (its checks cost chooctl's start)
until a help text or a choice needs it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

#: IMAGE COMMAND...: options after IMAGE belong to the command, as with podman run.
RUN_SETTINGS = {"ignore_unknown_options": False, "allow_interspersed_args": False}

#: The ``kind`` of an option whose value is a directory (click.Path(file_okay=False)).
DIRECTORY = "directory"


def _spec() -> Any:
    """agent.protocol.spec, imported at its first use."""
    from agent.protocol import spec

    return spec


def _retry_reasons() -> str:
    """The reasons ``--retry-on`` takes, for its help."""
    from agent.protocol.workflow import RETRY_REASONS

    return ", ".join(RETRY_REASONS)


class Choices:
    """The allowed values of an option: the tuple of agent.protocol.spec named ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    @property
    def values(self) -> tuple[str, ...]:
        return getattr(_spec(), self.name)


class JobOption:
    """One command-line option: its flags, the name of its value and how it is given.

    ``kind`` is None (text), ``int``, ``float``, ``Choices`` or DIRECTORY;
    ``flag`` options take no value, ``multiple`` ones may repeat (their value
    is a tuple, as click gives it). ``help`` is a text, or a function making
    it of the protocol's constants (called when click builds the option).
    ``per_job`` options name one job's circumstances (``--after``), so a
    schedule's template, which every fire copies, does not offer them.
    """

    __slots__ = ("flags", "name", "kind", "flag", "multiple", "metavar", "per_job", "_help")

    def __init__(
        self,
        *flags: str,
        name: str | None = None,
        kind: Any = None,
        flag: bool = False,
        multiple: bool = False,
        metavar: str | None = None,
        per_job: bool = False,
        help: str | Callable[[], str],
    ):
        self.flags = flags
        # click's own rule for an option's name: its first long flag, as an identifier.
        self.name = name or next(f for f in flags if f.startswith("--"))[2:].replace("-", "_")
        self.kind = kind
        self.flag = flag
        self.multiple = multiple
        self.metavar = metavar
        self.per_job = per_job
        self._help = help

    @property
    def help(self) -> str:
        """The option's help text."""
        return self._help if isinstance(self._help, str) else self._help()

    @property
    def default(self) -> Any:
        """The value click gives the option when it is not on the command line."""
        if self.flag:
            return False
        return () if self.multiple else None

    def click(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add this option to a click command (a decorator)."""
        import click

        settings: dict[str, Any] = {"help": self.help}
        if self.flag:
            settings["is_flag"] = True
        if self.multiple:
            settings["multiple"] = True
        if self.metavar is not None:
            settings["metavar"] = self.metavar
        if self.kind in (int, float):
            settings["type"] = self.kind
        elif isinstance(self.kind, Choices):
            settings["type"] = click.Choice(self.kind.values)
        elif self.kind == DIRECTORY:
            # The agent decides what it may read (it may be another user).
            settings["type"] = click.Path(file_okay=False, readable=False)
        return click.option(*self.flags, self.name, **settings)(fn)


JOB_OPTIONS = (
    JobOption("--name", help="Logical name (groups runs; per-name limits)."),
    JobOption(
        "-e",
        "--env",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set an environment variable (repeatable).",
    ),
    JobOption(
        "--secret",
        name="secrets",
        multiple=True,
        metavar="NAME",
        help="Pass the agent's credential NAME as variable NAME (repeatable); "
        "the value is never stored.",
    ),
    JobOption(
        "-l",
        "--label",
        name="labels",
        multiple=True,
        metavar="KEY=VALUE",
        help="Add a label (repeatable).",
    ),
    JobOption(
        "--timeout",
        metavar="DURATION",
        help="Stop the job after this long (e.g. 90, 30m, 2h); it fails with reason timeout.",
    ),
    JobOption(
        "--idle-timeout",
        metavar="DURATION",
        help="Stop the job when it prints nothing for this long (e.g. 10m); it fails with"
        " reason stalled (default: the agent's idle_timeout, off unless set).",
    ),
    JobOption(
        "--stop-timeout",
        metavar="DURATION",
        help=lambda: (
            f"Grace between SIGTERM and SIGKILL (default {_spec().DEFAULT_STOP_TIMEOUT:g}s)."
        ),
    ),
    JobOption(
        "--max-log-bytes",
        metavar="SIZE",
        help="Keep at most this much output per attempt (e.g. 10m; 0: no cap; default: the"
        " agent's max_log_bytes); the rest is dropped, or the job fails (log_limit_action).",
    ),
    JobOption("--memory", metavar="SIZE", help="Memory limit (e.g. 512m)."),
    JobOption("--cpus", kind=float, help="CPU limit (e.g. 1.5)."),
    JobOption("--pids", kind=int, help="Process-count limit."),
    JobOption(
        "--pull",
        kind=Choices("PULL_POLICIES"),
        help=lambda: f"Image pull policy (default {_spec().DEFAULT_PULL}).",
    ),
    JobOption("--retries", kind=int, help="Attempts after a failure (default 0)."),
    JobOption(
        "--retry-on",
        multiple=True,
        metavar="RULE",
        help=lambda: (
            f"Retry only these failures (repeatable): a reason ({_retry_reasons()}),"
            " exit:CODE[,CODE...] (only these exit codes) or not-exit:CODE[,CODE...]"
            " (never these); default: exit, oom and lost."
        ),
    ),
    JobOption(
        "--network",
        kind=Choices("NETWORKS"),
        help=lambda: f"Network (default {_spec().DEFAULT_NETWORK}).",
    ),
    JobOption("-w", "--workdir", help="Working directory inside the container."),
    JobOption(
        "--workspace",
        metavar="DIR",
        kind=DIRECTORY,
        help="Snapshot DIR now and mount the copy at /workspace (the job starts there).",
    ),
    JobOption("-u", "--user", help="User inside the container."),
    JobOption("--priority", kind=int, help="Higher starts first (default 0)."),
    JobOption(
        "--cache",
        name="caches",
        multiple=True,
        metavar="NAME=PATH",
        help="Mount the cache NAME at PATH, kept between runs of jobs of the same name "
        "(repeatable; see chooctl cache).",
    ),
    JobOption(
        "--notify",
        multiple=True,
        metavar="TARGET[:EVENT,...]",
        help="When the job ends, notify the agent's notify target TARGET (repeatable); "
        "EVENTs: failed, succeeded, cancelled, retries_exhausted, any (default any).",
    ),
    JobOption(
        "--after",
        multiple=True,
        metavar="ID[:ok|any|failed]",
        per_job=True,
        help="Start only once job ID (or an ID prefix) ended: succeeded (ok, the default),"
        " failed, or either (any); if it cannot, this job ends cancelled (dependency)."
        " Repeatable: all must be met.",
    ),
)
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


class BadOption(ValueError):
    """An option's value that cannot be right (click shows it as a BadParameter, exit 125)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        #: The option to name in the message (None: none).
        self.hint = hint


@contextlib.contextmanager
def click_errors() -> Iterator[None]:
    """Raise a BadOption inside as click's BadParameter (for a click command)."""
    try:
        yield
    except BadOption as exc:
        import click

        raise click.BadParameter(exc.message, param_hint=exc.hint) from None


def spec_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add IMAGE, COMMAND... and the job options to a click command."""
    return _add_spec_options(fn, JOB_OPTIONS)


def template_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add IMAGE, COMMAND... and the job options a schedule's template may hold.

    A ``per_job`` option is left out of the help and refused with why, not
    with click's "no such option".
    """
    import click

    def refuse(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value:
            raise click.UsageError(
                f"a schedule's template cannot hold {param.opts[0]}: every run is a new"
                " job, so none can wait on one job; give it to `chooctl submit` instead",
                ctx,
            )
        return value

    for option in JOB_OPTIONS:
        if option.per_job:
            fn = click.option(
                *option.flags,
                option.name,
                multiple=option.multiple,
                hidden=True,
                expose_value=False,
                callback=refuse,
            )(fn)
    return _add_spec_options(fn, tuple(o for o in JOB_OPTIONS if not o.per_job))


def _add_spec_options(fn: Callable[..., Any], options: tuple[JobOption, ...]) -> Callable[..., Any]:
    import click

    for option in reversed(options):
        fn = option.click(fn)
    fn = click.argument("command", nargs=-1, type=click.UNPROCESSED)(fn)
    return click.argument("image")(fn)


def parse_pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    """``("A=1", "B")`` as ``{"A": "1", "B": <the caller's $B>}`` (for env only).

    Raises:
        BadOption: an item is not KEY=VALUE.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            if what == "env" and key in os.environ:
                value = os.environ[key]  # like podman: -e NAME passes the caller's value
            else:
                raise BadOption(f"expected {what} as KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    """``parse_pairs`` for a click command.

    Raises:
        click.BadParameter: an item is not KEY=VALUE.
    """
    with click_errors():
        return parse_pairs(items, what)


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
                raise BadOption(
                    f"expected exit codes like {what}:75,76, got {item!r}", "--retry-on"
                ) from None
            rule.setdefault("exit_codes" if what == "exit" else "not_exit_codes", []).extend(
                numbers
            )
            what = "exit"
        elif sep:
            raise BadOption(
                f"expected a reason, exit:CODES or not-exit:CODES, got {item!r}", "--retry-on"
            )
        if what not in rule["reasons"]:
            rule["reasons"].append(what)
    return rule


def spec_of(image: str, command: tuple[str, ...], opts: dict[str, Any]) -> dict[str, Any]:
    """The job spec of a command line: only what was given (the agent fills defaults).

    Args:
        opts: each job option's value by its name, as click gives them (a
            template's command has no ``per_job`` options).

    Raises:
        BadOption: an ``-e``/``-l``/``--cache`` item is not KEY=VALUE, or a
            ``--retry-on`` rule is not one.
    """
    spec: dict[str, Any] = {"image": image, "command": list(command)}
    if opts["env"]:
        spec["env"] = parse_pairs(opts["env"], "env")
    if opts["secrets"]:
        spec["secrets"] = list(opts["secrets"])
    if opts["labels"]:
        spec["labels"] = parse_pairs(opts["labels"], "label")
    resources = {k: opts[k] for k in ("memory", "cpus", "pids") if opts[k] is not None}
    if resources:
        spec["resources"] = resources
    for key in _PLAIN:
        if opts[key] is not None:
            spec[key] = opts[key]
    if opts["retry_on"]:
        spec["retry_on"] = _retry_rule(opts["retry_on"])
    if opts.get("after"):
        spec["after"] = list(opts["after"])
    if opts["workspace"] is not None:
        spec["workspace"] = os.path.abspath(opts["workspace"])
    if opts["caches"]:
        spec["caches"] = parse_pairs(opts["caches"], "cache")
    if opts["notify"]:
        spec["notify"] = [_notify_rule(item) for item in opts["notify"]]
    return spec


def build_spec(image: str, command: tuple[str, ...], opts: dict[str, Any]) -> dict[str, Any]:
    """``spec_of`` for a click command.

    Raises:
        click.BadParameter: as ``spec_of``'s BadOption.
    """
    with click_errors():
        return spec_of(image, command, opts)


def _notify_rule(item: str) -> dict[str, Any]:
    """``ops`` or ``ops:failed,cancelled`` as a spec's notify rule (the agent checks it)."""
    target, _, events = item.partition(":")
    return {"target": target, "on": [e for e in events.split(",") if e] or ["any"]}

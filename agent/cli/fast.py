"""The click-free start of ``chooctl run``: a plain run line is read without click.

``chooctl [--socket PATH] run [JOB OPTIONS] [-d] IMAGE [COMMAND...]`` is read
here with the same option table click's ``run`` is built from
(agent/cli/spec_options.py's JOB_OPTIONS and agent/cli/running.py's DETACH),
and run by the same code (running.run_job). Any line this reader is not sure
of gives None, and click reads it instead, so help, usage errors and every
other command stay click's: an unknown or clustered option, ``-h``/``--help``,
``--``, ``--not-before``/``--delay``, ``--workspace``, a value click would
refuse (not a number, not a choice, not KEY=VALUE), a missing IMAGE. It must
never import click: importing click costs more than the rest of chooctl's start.
"""

from __future__ import annotations

from typing import Any

from agent.cli.output import EXIT_ERROR, EXIT_INTERRUPTED, echo, warn
from agent.cli.running import DETACH, run_job
from agent.cli.spec_options import (
    DIRECTORY,
    JOB_OPTIONS,
    BadOption,
    Choices,
    JobOption,
    spec_of,
)
from agent.client import Client
from agent.protocol.errors import ChooError

#: ``run``'s options by flag, as this reader takes them.
_BY_FLAG: dict[str, JobOption] = {
    flag: option for option in (*JOB_OPTIONS, DETACH) for flag in option.flags
}
_SOCKET = "--socket"


class RunLine:
    """A plain ``chooctl run`` line, read: the socket, the spec and ``--detach``."""

    def __init__(self, socket: str | None, spec: dict[str, Any], detach: bool):
        self.socket = socket
        self.spec = spec
        self.detach = detach

    def run(self) -> int:
        """Run it as ``chooctl run`` does; errors as chooctl's group shows them.

        Returns:
            chooctl's exit status.
        """
        try:
            return run_job(
                lambda: Client(self.socket), self.spec, {}, detach=self.detach, socket=self.socket
            )
        except ChooError as exc:
            warn(exc.message)
            return EXIT_ERROR
        except KeyboardInterrupt:
            echo("\nAborted!", err=True)
            return EXIT_INTERRUPTED


def read(argv: list[str]) -> RunLine | None:
    """``argv`` (without the program's name) as a plain run line, or None.

    None means "let click read it": the line is something else, or something
    this reader does not decide (see the module's docstring).
    """
    socket, at = None, 0
    while at < len(argv) and argv[at].startswith("-"):
        if argv[at] == _SOCKET and at + 1 < len(argv):
            socket, at = argv[at + 1], at + 2
        elif argv[at].startswith(_SOCKET + "="):
            socket, at = argv[at][len(_SOCKET) + 1 :], at + 1
        else:
            return None
    if argv[at : at + 1] != ["run"]:
        return None
    at += 1
    values = {option.name: option.default for option in _BY_FLAG.values()}
    while at < len(argv) and argv[at].startswith("-") and argv[at] != "-":
        flag, inline, given = argv[at], None, 1
        if flag.startswith("--") and "=" in flag:
            flag, _, inline = flag.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None or option.kind == DIRECTORY:
            return None
        if option.flag:
            if inline is not None:
                return None
            values[option.name] = True
        else:
            if inline is None:
                if at + 1 >= len(argv):
                    return None
                inline, given = argv[at + 1], 2
            value = _value(option, inline)
            if value is None:
                return None
            values[option.name] = (*values[option.name], value) if option.multiple else value
        at += given
    if at >= len(argv):
        return None
    detach = values.pop(DETACH.name)
    try:
        spec = spec_of(argv[at], tuple(argv[at + 1 :]), values)
    except BadOption:
        return None
    return RunLine(socket, spec, detach)


def _value(option: JobOption, text: str) -> Any:
    """An option's value as click converts it, or None where click would refuse it."""
    if option.kind in (int, float):
        try:
            return option.kind(text)
        except ValueError:
            return None
    if isinstance(option.kind, Choices) and text not in option.kind.values:
        return None
    return text

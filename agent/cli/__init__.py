"""``chooctl``: the command line of choo.

Every command talks to the agent through agent.client; nothing here touches
the database or Podman. The commands live by group: jobs.py (run, submit,
ps, inspect, logs, wait, cancel), manage.py (rm, prune, artifacts, info,
events, completion), workflow.py (release, rerun), schedules.py (schedule ...),
export.py (export), caches.py (cache ls, cache rm); group.py names them all
and loads each module only when needed. Exit status follows ``podman run``
(output.py): the job's own exit code where there is one, 125 when chooctl or
the agent fails, 126/127 when the job's command could not be run / was not
found, 130 after Ctrl-C.

``main`` is the click group (imported at its first use); the ``chooctl``
program is ``entry``, which runs a plain ``chooctl run`` line without click
(fast.py, then exits without the interpreter's teardown) and hands everything
else to ``main``. Importing this package must stay cheap: it never imports
click.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from agent.cli.output import EXIT_CANNOT_RUN, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NOT_FOUND

__all__ = ["EXIT_CANNOT_RUN", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_NOT_FOUND", "entry", "main"]


def entry() -> None:
    """The ``chooctl`` program: exits with chooctl's status."""
    from agent.cli import fast

    line = fast.read(sys.argv[1:])
    if line is not None:
        _exit(line.run())
    from agent.cli.group import main as group

    group.main()


def _exit(status: int) -> None:
    """Exit with ``status`` once stdout and stderr are written, without tearing the
    interpreter down: a plain run has nothing to clean up (no atexit handler, no
    file but the standard streams), and the teardown would cost it more than its
    submit. A stream that cannot be flushed leaves it to Python's own exit, which
    reports it as it always does."""
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: chooctl was started without it
                stream.flush()
    except (OSError, ValueError):
        sys.exit(status)
    os._exit(status)


def __getattr__(name: str) -> Any:
    """``agent.cli.main``, the click group, imported (with click) at its first use."""
    if name == "main":
        from agent.cli.group import main as group

        return group
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``choo-agent``'s command line: options, the configuration, preflight, the
state directory's lock, signals and exit statuses.

It builds one ``Agent`` (agent/daemon.py, the composition root) and turns
what happens to it into the documented exit statuses. Signals reach the main
loop through a wakeup fd; no handler does work of its own.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
from pathlib import Path

import click

from agent import __version__
from agent import config as configuration
from agent.adapters import preflight
from agent.adapters.journal import setup_logging
from agent.adapters.start_clock import StartClock
from agent.adapters.state_lock import StateDirBusy, StateLock
from agent.daemon import Agent
from agent.protocol.errors import ChooError
from agent.storage.database import DatabaseDamaged

log = logging.getLogger("choo-agent")

#: Exit statuses (choo-agent(8), EXIT STATUS). The unit does not restart on
#: EXIT_CONFIG or EXIT_DATABASE_DAMAGED: only a person can fix those.
EXIT_START_FAILED = 1
EXIT_DATABASE_DAMAGED = 65  # EX_DATAERR
EXIT_STATE_DIR_BUSY = 75  # EX_TEMPFAIL: it may succeed once the other agent is gone
EXIT_CONFIG = 78  # EX_CONFIG


def _serve(agent: Agent) -> int:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    try:
        agent.start()
        while True:
            select.select([read_fd], [], [])
            for signum in os.read(read_fd, 64):
                if signum == signal.SIGHUP:
                    agent.reload()
                elif signum in (signal.SIGTERM, signal.SIGINT):
                    agent.shutdown()
                    return 0
    finally:
        signal.set_wakeup_fd(-1)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="TOML configuration file (default: see choo-agent.toml(5)).",
)
@click.option(
    "--socket",
    type=click.Path(path_type=Path),
    help="Where to listen (overrides the config's socket).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Where the database lives (overrides state_dir).",
)
@click.option("--podman-url", help="Podman API URL, e.g. unix:///run/user/1000/podman/podman.sock.")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity."
)
@click.version_option(__version__, prog_name="choo-agent")
def main(config_path, socket, state_dir, podman_url, log_level) -> int:
    """Run the choo agent in the foreground.

    It keeps its database under the state directory, listens for JSON-RPC on
    a Unix socket, and drives rootless Podman. Stop it with Ctrl-C or SIGTERM;
    running jobs keep running and are adopted on the next start.
    """
    clock = StartClock()
    clock.mark("python and imports")
    overrides = {
        key: str(value)
        for key, value in (
            ("socket", socket),
            ("state_dir", state_dir),
            ("podman_url", podman_url),
            ("log_level", log_level),
        )
        if value
    }
    try:
        config = configuration.load(config_path, overrides)
    except ChooError as exc:
        click.echo(f"choo-agent: {exc.message}", err=True)
        sys.exit(EXIT_CONFIG)
    setup_logging(config.log_level)
    problems = preflight.check(config)
    if problems:
        for problem in problems:
            log.error("%s", problem)
        sys.exit(EXIT_START_FAILED)
    clock.mark("configuration and preflight")
    # Before anything of the state directory is opened, and held until exit.
    lock = StateLock(config.state_dir)
    try:
        lock.acquire()
    except StateDirBusy as exc:
        log.error("cannot start: %s", exc.message)
        sys.exit(EXIT_STATE_DIR_BUSY)
    except OSError as exc:
        log.error("cannot start: cannot lock the state directory %s: %s", config.state_dir, exc)
        sys.exit(EXIT_START_FAILED)
    agent = Agent(config, config_path, overrides, clock=clock)
    try:
        code = _serve(agent)
    except DatabaseDamaged as exc:
        log.error("cannot start: %s", exc.message)
        sys.exit(EXIT_DATABASE_DAMAGED)
    except (ChooError, OSError) as exc:
        log.error("cannot start: %s", getattr(exc, "message", None) or exc)
        if agent.podman_service is not None:
            agent.podman_service.stop()
        sys.exit(EXIT_START_FAILED)
    finally:
        lock.release()
    sys.exit(code)

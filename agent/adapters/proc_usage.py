"""Reading what a container uses from the host: /proc and cgroup v2 files.

Finds each container's ``conmon`` (its ``-c`` container ID and ``-n`` name on
the command line) and samples the processes beneath it: from the container's
cgroup v2 directory when the host has a unified hierarchy with the container
in a cgroup of its own (exact figures), else by summing the process tree's
/proc files (sampled figures; this is what cgroup v1 rootless hosts give).
Only reads files; the arithmetic is ``agent.rules.usage``, the schedule
``agent.runtime.usage``. Never talks to Podman, never writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.rules.usage import (
    ProcStat,
    Sample,
    cgroup_sample,
    descendants,
    parse_keyed,
    parse_stat,
    tree_sample,
)

#: The cgroup v2 files of an exact sample; a directory without the first one
#: is no container's own cgroup (or the host is cgroup v1).
_CGROUP_FILES = ("cpu.stat", "memory.current", "pids.current")


@dataclass(frozen=True)
class Monitor:
    """One container's conmon, as found on the host."""

    container_id: str
    name: str
    pid: int


@dataclass(frozen=True)
class Snapshot:
    """Every process on the host at one moment: stat lines and the conmons."""

    stats: dict[int, ProcStat]
    monitors: dict[str, Monitor]

    def parents(self) -> dict[int, int]:
        return {pid: stat.ppid for pid, stat in self.stats.items()}


class ProcReader:
    """Reads the host's /proc and cgroup files.

    Args:
        proc: where procfs is mounted (tests pass a fake tree).
        cgroup_root: where the cgroup v2 hierarchy is mounted.
    """

    def __init__(self, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")):
        self.proc = proc
        self.cgroup_root = cgroup_root
        self.unified = (cgroup_root / "cgroup.controllers").exists()
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        #: conmon pid -> its container (None: not a conmon of a container), so
        #: each command line is read once.
        self._cmdlines: dict[int, Monitor | None] = {}

    def snapshot(self) -> Snapshot:
        """Read every process's stat line and find the conmons among them."""
        stats: dict[int, ProcStat] = {}
        conmons: list[int] = []
        for entry in os.scandir(self.proc):
            if not entry.name.isdigit():
                continue
            text = _read(Path(entry.path) / "stat")
            if text is None:
                continue  # it exited meanwhile
            pid = int(entry.name)
            stats[pid] = parse_stat(text)
            if "(conmon)" in text:
                conmons.append(pid)
        self._cmdlines = {pid: self._monitor(pid) for pid in conmons}
        monitors = {m.container_id: m for m in self._cmdlines.values() if m is not None}
        return Snapshot(stats=stats, monitors=monitors)

    def sample(self, snapshot: Snapshot, monitor: Monitor) -> Sample | None:
        """Sample the processes beneath one conmon.

        Args:
            snapshot: the host's processes, as just read.
            monitor: the container's conmon.

        Returns:
            The sample, or None when the container has no process left.
        """
        tree = descendants(snapshot.parents(), monitor.pid)[1:]  # conmon itself is not the job
        if not tree:
            return None
        exact = self._cgroup(tree[0])
        if exact is not None:
            return exact
        return tree_sample(
            (snapshot.stats[pid] for pid in tree),
            (self._keyed(pid, "io") for pid in tree),
            ((self._keyed(pid, "status") or {}).get("VmHWM", 0) for pid in tree),
            ticks_per_second=self.ticks,
            page_size=self.page_size,
        )

    def _monitor(self, pid: int) -> Monitor | None:
        if pid in self._cmdlines:
            return self._cmdlines[pid]
        raw = _read(self.proc / str(pid) / "cmdline")
        args = raw.split("\0") if raw else []
        found = {}
        for flag, value in zip(args, args[1:], strict=False):
            if flag in ("-c", "-n") and flag not in found:
                found[flag] = value
        if len(found) < 2:
            return None
        return Monitor(container_id=found["-c"], name=found["-n"], pid=pid)

    def _keyed(self, pid: int, name: str) -> dict[str, int] | None:
        text = _read(self.proc / str(pid) / name)
        return parse_keyed(text) if text is not None else None

    def _cgroup(self, pid: int) -> Sample | None:
        """The exact sample of the cgroup ``pid`` is in, on a cgroup v2 host
        where that cgroup is the container's own; else None."""
        if not self.unified:
            return None
        text = _read(self.proc / str(pid) / "cgroup") or ""
        path = next((line[3:] for line in text.splitlines() if line.startswith("0::")), None)
        if not path or path == "/":
            return None
        directory = self.cgroup_root / path.lstrip("/")
        files = [_read(directory / name) for name in _CGROUP_FILES]
        if None in files:
            return None
        cpu_stat, memory_current, pids = files
        return cgroup_sample(
            cpu_stat,
            memory_current,
            _read(directory / "memory.peak"),
            _read(directory / "io.stat"),
            pids,
        )


def _read(path: Path) -> str | None:
    """A small procfs or cgroup file's text; None when it is gone or unreadable."""
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None

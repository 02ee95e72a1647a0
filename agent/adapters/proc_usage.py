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

import functools
import os
from collections.abc import Collection
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


#: Bytes asked of one read of a procfs or cgroup file (most are far smaller).
_READ = 16 * 1024
#: Every how many looks the whole of /proc is read (to find new conmons and
#: new processes of the trees); in between, only the processes already known
#: to be in a wanted container's tree. A process that lives and dies between
#: two full reads is still counted: its CPU and I/O go to its parent's.
RESCAN_EVERY = 5
#: Every how many looks each process's /proc/PID/io and VmHWM are read: they
#: only grow, so reading them less often loses nothing but their last growth.
DETAIL_EVERY = 5


@dataclass(frozen=True)
class Snapshot:
    """The processes that matter at one moment: stat lines and the conmons."""

    stats: dict[int, ProcStat]
    monitors: dict[str, Monitor]
    #: Whether this look also reads each process's io and status files.
    detailed: bool = True

    @functools.cached_property
    def children(self) -> dict[int, list[int]]:
        """pid -> its children, among the processes read (worked out once)."""
        children: dict[int, list[int]] = {}
        for pid, stat in self.stats.items():
            children.setdefault(stat.ppid, []).append(pid)
        return children


class ProcReader:
    """Reads the host's /proc and cgroup files.

    Args:
        proc: where procfs is mounted (tests pass a fake tree).
        cgroup_root: where the cgroup v2 hierarchy is mounted.
    """

    def __init__(self, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")):
        self.proc = proc
        self.cgroup_root = cgroup_root
        #: The same, as text: a look builds a few hundred paths, and pathlib's
        #: objects cost more than reading the files.
        self._proc = os.fspath(proc)
        self._cgroups = os.fspath(cgroup_root)
        self.unified = (cgroup_root / "cgroup.controllers").exists()
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.page_size = os.sysconf("SC_PAGE_SIZE")
        #: conmon pid -> its container (None: not a conmon of a container), so
        #: each command line is read once.
        self._cmdlines: dict[int, Monitor | None] = {}
        #: The wanted conmons and their trees' pids, as of the last look.
        self._known: set[int] = set()
        self._looks = 0

    @property
    def full_next(self) -> bool:
        """Whether the next look reads the whole of /proc (the only one that
        finds a conmon started since the last such look)."""
        return self._looks % RESCAN_EVERY == 0 or not self._known

    def snapshot(self, names: Collection[str] | None = None) -> Snapshot:
        """Read the stat lines of the processes that matter, and find the conmons.

        Args:
            names: the container names wanted (None: every container's).

        Returns:
            The processes of the wanted containers' trees (every process on
            the host at a full look, every ``RESCAN_EVERY``th).
        """
        full = self.full_next
        detailed = self._looks % DETAIL_EVERY == 0
        self._looks += 1
        pids = (int(e.name) for e in os.scandir(self.proc) if e.name.isdigit()) if full else None
        stats: dict[int, ProcStat] = {}
        conmons: list[int] = []
        for pid in pids if pids is not None else sorted(self._known):
            text = self._proc_file(pid, "stat")
            if text is None:
                continue  # it exited meanwhile
            stats[pid] = parse_stat(text)
            if "(conmon)" in text:
                conmons.append(pid)
        if full:
            self._cmdlines = {pid: self._monitor(pid) for pid in conmons}
        monitors = {
            m.container_id: m
            for pid, m in self._cmdlines.items()
            if m is not None and pid in stats and (names is None or m.name in names)
        }
        snapshot = Snapshot(stats=stats, monitors=monitors, detailed=detailed)
        children = snapshot.children
        self._known = {pid for m in monitors.values() for pid in descendants(children, m.pid)}
        return snapshot

    def sample(self, snapshot: Snapshot, monitor: Monitor) -> Sample | None:
        """Sample the processes beneath one conmon.

        Args:
            snapshot: the processes, as just read.
            monitor: the container's conmon.

        Returns:
            The sample, or None when the container has no process left.
        """
        tree = descendants(snapshot.children, monitor.pid)[1:]  # conmon itself is not the job
        if not tree:
            return None
        exact = self._cgroup(tree[0], monitor.pid)
        if exact is not None:
            return exact
        detailed = snapshot.detailed
        return tree_sample(
            (snapshot.stats[pid] for pid in tree),
            (self._keyed(pid, "io") if detailed else None for pid in tree),
            ((self._keyed(pid, "status") or {}).get("VmHWM", 0) if detailed else 0 for pid in tree),
            ticks_per_second=self.ticks,
            page_size=self.page_size,
        )

    def _monitor(self, pid: int) -> Monitor | None:
        if pid in self._cmdlines:
            return self._cmdlines[pid]
        raw = self._proc_file(pid, "cmdline")
        args = raw.split("\0") if raw else []
        found = {}
        for flag, value in zip(args, args[1:], strict=False):
            if flag in ("-c", "-n") and flag not in found:
                found[flag] = value
        if len(found) < 2:
            return None
        return Monitor(container_id=found["-c"], name=found["-n"], pid=pid)

    def _keyed(self, pid: int, name: str) -> dict[str, int] | None:
        text = self._proc_file(pid, name)
        return parse_keyed(text) if text is not None else None

    def _cgroup(self, pid: int, monitor: int) -> Sample | None:
        """The exact sample of the cgroup ``pid`` is in, on a cgroup v2 host
        where that cgroup is the container's own (not its conmon's: a
        container run without cgroups shares the agent's); else None."""
        if not self.unified:
            return None
        path = self._cgroup_path(pid)
        if not path or path == "/" or path == self._cgroup_path(monitor):
            return None
        directory = f"{self._cgroups}/{path.lstrip('/')}"
        files = [_read(f"{directory}/{name}") for name in _CGROUP_FILES]
        if None in files:
            return None
        cpu_stat, memory_current, pids = files
        return cgroup_sample(
            cpu_stat,
            memory_current,
            _read(f"{directory}/memory.peak"),
            _read(f"{directory}/io.stat"),
            pids,
        )

    def _cgroup_path(self, pid: int) -> str | None:
        """The process's cgroup v2 path (its ``0::`` line), or None."""
        text = self._proc_file(pid, "cgroup") or ""
        return next((line[3:] for line in text.splitlines() if line.startswith("0::")), None)

    def _proc_file(self, pid: int, name: str) -> str | None:
        return _read(f"{self._proc}/{pid}/{name}")


def _read(path: str) -> str | None:
    """A small procfs or cgroup file's text; None when it is gone or unreadable.

    Read with bare system calls: the sampler reads a few hundred of these a
    second, and a Python file object costs several times the read itself."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    chunks = []
    try:
        while chunk := os.read(fd, _READ):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)

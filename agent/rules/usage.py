"""The arithmetic of a job's resource usage: parsing /proc and cgroup v2 text,
and folding samples of a container's process tree into one attempt's figures.

Pure: every function takes the text a file held (or numbers) and returns
numbers; reading the files is ``agent.adapters.proc_usage``'s job, and the
sampling thread is ``agent.runtime.usage``'s. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProcStat:
    """One process, as its ``/proc/PID/stat`` line tells it."""

    ppid: int
    #: utime + stime + cutime + cstime, in clock ticks: the process's own CPU
    #: and that of every child it has reaped (so a process tree's sum counts
    #: each process once, living or reaped).
    cpu_ticks: int
    #: Resident set, in pages.
    rss_pages: int


def parse_stat(text: str) -> ProcStat:
    """Parse a ``/proc/PID/stat`` line (proc(5)).

    Args:
        text: the line; the command name (in parentheses) may hold spaces.

    Returns:
        The parent, CPU ticks and resident pages.

    Raises:
        ValueError: the line is not a stat line.
    """
    rest = text[text.rindex(")") + 2 :].split()
    # Fields after the name, 0-based: 1 ppid, 11-14 utime stime cutime cstime, 21 rss.
    return ProcStat(
        ppid=int(rest[1]),
        cpu_ticks=sum(int(value) for value in rest[11:15]),
        rss_pages=int(rest[21]),
    )


def parse_keyed(text: str) -> dict[str, int]:
    """Parse ``key value`` or ``key: value kB`` lines (``/proc/PID/io``,
    ``/proc/PID/status``, ``cpu.stat``) into integers; other lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_io_stat(text: str) -> tuple[int, int]:
    """Bytes read and written, summed over the devices of a cgroup v2 ``io.stat``.

    Args:
        text: lines like ``8:0 rbytes=4096 wbytes=0 rios=1 wios=0 ...``.

    Returns:
        (read bytes, written bytes).
    """
    read = written = 0
    for line in text.splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                written += int(value)
    return read, written


def descendants(children: Mapping[int, list[int]], root: int) -> list[int]:
    """``root`` and every process below it.

    Args:
        children: pid -> its children's pids.
        root: the process whose tree is wanted.

    Returns:
        The pids of the tree, ``root`` first.
    """
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


@dataclass(frozen=True)
class Sample:
    """One look at a container: cumulative counters and current levels.

    The counters (CPU, I/O) only ever grow while the container lives; the
    levels (memory, processes) go up and down.
    """

    cpu_seconds: float
    memory: int
    io_read: int | None
    io_write: int | None
    pids: int
    #: The highest memory seen by the kernel itself since the start (a cgroup's
    #: ``memory.peak``, or the largest ``VmHWM`` of one process), when known.
    memory_peak: int | None = None
    #: Figures read from a cgroup (exact) rather than summed from /proc.
    exact: bool = False


@dataclass
class Totals:
    """One attempt's usage so far, folded from its samples."""

    cpu_seconds: float = 0.0
    memory_peak: int = 0
    io_read: int | None = None
    io_write: int | None = None
    pids_peak: int = 0
    samples: int = 0
    exact: bool = True
    #: CPU seconds and time of the latest sample, for the live CPU %.
    last: tuple[float, float] | None = field(default=None, repr=False)
    cpu_percent: float | None = None
    memory: int = 0

    def add(self, sample: Sample, now: float) -> None:
        """Fold one sample in.

        Counters keep their largest value: a process that exits between two
        samples is counted by its parent once reaped, but one still unreaped
        by a parent outside the tree would make the sum dip for a moment.

        Args:
            sample: the container as seen at ``now``.
            now: a monotonic time, in seconds.
        """
        if self.last is not None and now > self.last[1]:
            used = max(0.0, sample.cpu_seconds - self.last[0])
            self.cpu_percent = 100.0 * used / (now - self.last[1])
        self.last = (max(self.cpu_seconds, sample.cpu_seconds), now)
        self.cpu_seconds = max(self.cpu_seconds, sample.cpu_seconds)
        self.memory = sample.memory
        self.memory_peak = max(self.memory_peak, sample.memory, sample.memory_peak or 0)
        self.io_read = _largest(self.io_read, sample.io_read)
        self.io_write = _largest(self.io_write, sample.io_write)
        self.pids_peak = max(self.pids_peak, sample.pids)
        self.exact = self.exact and sample.exact
        self.samples += 1

    def columns(self) -> dict[str, object]:
        """The attempt's usage columns (none when no sample was ever taken)."""
        if not self.samples:
            return {}
        return {
            "cpu_seconds": round(self.cpu_seconds, 3),
            "memory_peak": self.memory_peak,
            "io_read": self.io_read,
            "io_write": self.io_write,
            "pids_peak": self.pids_peak,
            "usage_sampled": not self.exact,
        }


def _largest(old: int | None, new: int | None) -> int | None:
    if new is None:
        return old
    return new if old is None else max(old, new)


def tree_sample(
    stats: Iterable[ProcStat],
    io: Iterable[Mapping[str, int] | None],
    hwm_kib: Iterable[int],
    *,
    ticks_per_second: int,
    page_size: int,
) -> Sample:
    """One sample of a process tree read from /proc.

    Args:
        stats: each process's stat line, parsed.
        io: each process's ``/proc/PID/io`` (None where it could not be read;
            then the tree's I/O is unknown).
        hwm_kib: each process's ``VmHWM`` (its resident high-water mark), in KiB.
        ticks_per_second: ``SC_CLK_TCK``.
        page_size: bytes per page.

    Returns:
        The tree's sample (``exact`` false).
    """
    stats = list(stats)
    ios = list(io)
    known = [entry for entry in ios if entry is not None]
    complete = bool(ios) and len(known) == len(ios)
    return Sample(
        cpu_seconds=sum(stat.cpu_ticks for stat in stats) / ticks_per_second,
        memory=sum(stat.rss_pages for stat in stats) * page_size,
        io_read=sum(entry.get("read_bytes", 0) for entry in known) if complete else None,
        io_write=sum(entry.get("write_bytes", 0) for entry in known) if complete else None,
        pids=len(stats),
        memory_peak=max(hwm_kib, default=0) * 1024,
    )


def cgroup_sample(
    cpu_stat: str, memory_current: str, memory_peak: str | None, io_stat: str | None, pids: str
) -> Sample:
    """One exact sample of a container's cgroup v2 directory.

    Args:
        cpu_stat: ``cpu.stat`` (``usage_usec``).
        memory_current: ``memory.current``.
        memory_peak: ``memory.peak`` (None on kernels before 5.19).
        io_stat: ``io.stat`` (None without the io controller).
        pids: ``pids.current``.

    Returns:
        The cgroup's sample (``exact`` true).
    """
    read, written = parse_io_stat(io_stat) if io_stat is not None else (None, None)
    return Sample(
        cpu_seconds=parse_keyed(cpu_stat).get("usage_usec", 0) / 1e6,
        memory=int(memory_current),
        io_read=read,
        io_write=written,
        pids=int(pids),
        memory_peak=int(memory_peak) if memory_peak is not None else None,
        exact=True,
    )

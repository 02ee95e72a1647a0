"""Fakes of the runtime's ports (agent/runtime/ports.py): a Podman, an event
source and job files that keep their state in memory, a clock that moves only
when told, and an executor that runs work inline. The fake Podman writes each
container's "output" to its log file, as conmon would.

tests/unit/test_controller.py checks that each fake has the same methods, with
the same parameters, as the real adapter it stands for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from concurrent.futures import Executor, Future
from datetime import UTC, datetime
from pathlib import Path

from agent.adapters.podman import ContainerState
from agent.protocol.errors import CreateError


class Inline(Executor):
    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # pragma: no cover - surfaced by the test's asserts
            future.set_exception(exc)
        return future


class FakePodman:
    def __init__(self, clock):
        self.clock = clock
        self.containers: dict[str, ContainerState] = {}
        self.signals: list[tuple[str, str]] = []
        self.created: list[str] = []
        self.started: list[str] = []
        self.read_outs: list[tuple[str, bool]] = []
        self.volumes: set[str] = set()
        self.secrets: list[tuple[str, str]] = []
        self.log_paths: list[str] = []
        #: What ``runs_as_root`` answers; the /out each run was given (None: volume).
        self.root = True
        self.out_dirs: list[str | None] = []
        #: Refuse a create given a host directory, as a Podman that cannot see it does.
        self.unseen_out_dirs = False

    def run(
        self,
        job_id,
        attempt,
        spec,
        log_path,
        on_pull=None,
        workspace=None,
        secrets=None,
        hardening=None,
        *,
        checkpoint=lambda: None,
        pull_timeout=600.0,
        out_dir=None,
    ):
        checkpoint()
        cid = f"c-{job_id}-{attempt}"
        self.log_paths.append(log_path)
        self.out_dirs.append(out_dir)
        if out_dir is not None and self.unseen_out_dirs:
            raise CreateError(
                f"create container for job {job_id}: statfs {out_dir}: no such file or directory"
            )
        if out_dir is None:
            self.volumes.add(job_id)
        with open(log_path, "ab") as log:
            log.write(
                b"2026-12-01T22:23:30.410197384+00:00 stdout F "
                + f"last words of attempt {attempt}".encode()
                + b"\n"
            )
        self.created.append(cid)
        self.containers[job_id] = ContainerState(
            id=cid,
            name=f"choo-{job_id}",
            job_id=job_id,
            attempt=attempt,
            status="running",
            created_at=self.clock(),
        )
        return cid

    def runs_as_root(self, spec):
        return self.root

    def exit(self, job_id, code, oom=False):
        c = self.containers[job_id]
        self.containers[job_id] = dataclasses.replace(
            c, status="exited", exit_code=code, oom_killed=oom
        )

    def list_ours(self):
        return list(self.containers.values())

    def inspect(self, name_or_id):
        return next((c for c in self.containers.values() if c.id == name_or_id), None)

    def remove(self, name_or_id):
        self.containers = {k: c for k, c in self.containers.items() if c.id != name_or_id}

    def signal(self, name_or_id, sig):
        self.signals.append((name_or_id, sig))

    # The /out volumes of jobs (by job ID), as far as a test put any there.
    def list_out_volumes(self):
        return [(f"choo-out-{job_id}", job_id) for job_id in self.volumes]

    def remove_out_volume(self, job_id):
        self.volumes.discard(job_id)

    # Secrets: (name, job ID) pairs a test put there.

    def remove_secrets(self, job_id):
        self.secrets = [(name, job) for name, job in self.secrets if job != job_id]

    def list_job_secrets(self):
        return list(self.secrets)

    def start(self, name_or_id):
        self.started.append(name_or_id)
        for k, c in self.containers.items():
            if c.id == name_or_id:
                self.containers[k] = dataclasses.replace(c, status="running")

    def read_out(self, name_or_id):
        """/out as Podman streams it (the fake's is empty); notes whether the
        container still existed when it was read."""
        self.read_outs.append((name_or_id, self.inspect(name_or_id) is not None))
        return contextlib.nullcontext(io.BytesIO())


class FakeEvents:
    def __init__(self, *batches):
        self.batches = list(batches)

    def events(self, read_timeout):
        yield from self.batches.pop(0) if self.batches else []


class FakeExits:
    """Exit files: hands out its batches of container IDs, then sets ``done``;
    ``statuses`` is what each container's exit file says (none: it is gone)."""

    def __init__(self, done, *batches, statuses=None):
        self.done = done
        self.batches = list(batches)
        self.statuses = statuses or {}

    def open(self):
        return None

    def read(self, timeout):
        if not self.batches:
            self.done.set()
            return []
        return self.batches.pop(0)

    def status(self, container_id):
        return self.statuses.get(container_id)

    def oom(self, container_id):
        status = self.statuses.get(container_id)
        return None if status is None else status.oom

    def close(self):
        pass


class FakeFiles:
    """Packs nothing; records what it was asked to pack. Its /out directories
    are a set of job IDs (``out``)."""

    def __init__(self):
        self.packed: list[str] = []
        self.out: set[str] = set()
        #: ``out_dirs_enabled``; why, as ``use_out_dirs`` last said.
        self.out_enabled = True
        self.out_reason = ""

    def workspace_dir(self, job_id):
        return None

    def pack(self, job_id, stream):
        self.packed.append(job_id)
        return {"artifacts_state": "packed", "artifacts_size": 0}

    def pack_dir(self, job_id, source):
        return None  # as for files the agent cannot read: packed through Podman

    def out_dir(self, job_id):
        return Path("/out-dirs", job_id) if job_id in self.out else None

    def make_out_dir(self, job_id):
        self.out.add(job_id)
        return Path("/out-dirs", job_id)

    def remove_out_dir(self, job_id):
        self.out.discard(job_id)
        return True

    def out_dir_jobs(self):
        return sorted(self.out)

    def out_dirs_enabled(self):
        return self.out_enabled

    def use_out_dirs(self, enabled, reason):
        changed = enabled != self.out_enabled
        self.out_enabled, self.out_reason = enabled, reason
        return changed


class Clock:
    """A wall clock and a monotonic one that move only when told.

    Setting ``now`` lets time pass (both move); ``step`` moves the wall clock
    alone, as NTP does.
    """

    def __init__(self, now: float | None = None):
        self.mono = 1_000_000.0
        self.offset = 0.0
        if now is not None:
            self.now = now

    @property
    def now(self):
        return self.mono + self.offset

    @now.setter
    def now(self, value):
        self.mono += value - self.now

    def __call__(self):
        return self.now

    def monotonic(self):
        return self.mono

    def step(self, seconds):
        self.offset += seconds

    def sleep(self, seconds):
        self.mono += seconds


def t(text: str) -> float:
    """A UTC wall time written as ISO 8601 (``"2026-01-05 10:00:10"``), as a timestamp."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

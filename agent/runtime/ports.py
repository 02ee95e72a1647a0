"""What the runtime needs from its adapters, as ``typing.Protocol``s.

Each Protocol lists exactly the methods the runtime calls, with the adapter's
own signatures: ``agent.adapters.podman.Podman`` (containers, /out volumes,
whose a job's process is, secrets; and, on a connection of its own, the event
stream), and ``agent.adapters.files.JobFiles`` (workspaces, archives, /out
directories). (Job output files, ``agent.adapters.joblogs.JobLogs``, are used
as they are: tests hand in the real one over a temporary directory.)
The controller's parameters are typed with them, and a unit test checks that
the real classes and the tests' fakes both match them, so a fake cannot drift.
Holds no code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, Protocol

from agent.adapters.podman import ContainerState, Hardening
from agent.adapters.podman.exits import ExitStatus


class PodmanPort(Protocol):
    """The Podman calls of the loop and its workers (``agent.adapters.podman.Podman``)."""

    def run(
        self,
        job_id: str,
        attempt: int,
        spec: dict[str, Any],
        log_path: str,
        on_pull: Callable[[str], None] = ...,
        workspace: str | None = None,
        secrets: dict[str, bytes] | None = None,
        hardening: Hardening | None = None,
        *,
        checkpoint: Callable[[], None] = ...,
        pull_timeout: float = ...,
        out_dir: str | None = None,
    ) -> str: ...

    def runs_as_root(self, spec: dict[str, Any]) -> bool | None: ...

    def start(self, name_or_id: str) -> None: ...

    def inspect(self, name_or_id: str) -> ContainerState | None: ...

    def list_ours(self) -> list[ContainerState]: ...

    def signal(self, name_or_id: str, sig: str) -> None: ...

    def remove(self, name_or_id: str) -> None: ...

    def read_out(self, name_or_id: str) -> AbstractContextManager[IO[bytes]]: ...

    def list_out_volumes(self) -> list[tuple[str, str]]: ...

    def remove_out_volume(self, job_id: str) -> None: ...

    def remove_secrets(self, job_id: str) -> None: ...

    def list_job_secrets(self) -> list[tuple[str, str]]: ...


class EventSource(Protocol):
    """Podman's event stream (``agent.adapters.podman.Podman.events``)."""

    def events(self, read_timeout: float) -> Iterator[dict[str, Any]]: ...


class ExitSource(Protocol):
    """Conmon's exit files (``agent.adapters.podman.exits.ExitFiles``)."""

    def open(self) -> str | None: ...

    def read(self, timeout: float) -> list[str]: ...

    def status(self, container_id: str) -> ExitStatus | None: ...

    def oom(self, container_id: str) -> bool | None: ...

    def close(self) -> None: ...


class ArtifactFiles(Protocol):
    """A job's workspace and /out archive (``agent.adapters.files.JobFiles``)."""

    def workspace_dir(self, job_id: str) -> Path | None: ...

    def pack(self, job_id: str, stream: IO[bytes]) -> dict[str, Any]: ...

    def pack_dir(self, job_id: str, source: Path) -> dict[str, Any] | None: ...

    def out_dir(self, job_id: str) -> Path | None: ...

    def make_out_dir(self, job_id: str) -> Path: ...

    def remove_out_dir(self, job_id: str) -> bool: ...

    def out_dir_jobs(self) -> list[str]: ...

    def out_dirs_enabled(self) -> bool: ...

    def use_out_dirs(self, enabled: bool, reason: str) -> bool: ...

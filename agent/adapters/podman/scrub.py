"""Deleting a tree only the agent's user namespace may delete: a throwaway container.

A job runs as root of the agent's user namespace, so it can ``chown`` what it
leaves in its workspace to a subordinate uid; the agent, outside that
namespace, may then neither empty nor delete those directories. Podman's
processes run inside it: ``Scrubber.remove`` has Podman run ``rm -rf`` in a
short-lived container that bind-mounts the tree's parent. This works under
the installed unit, whose sandbox (``RestrictNamespaces=``,
``NoNewPrivileges=``) forbids the agent to enter the namespace itself
(``podman unshare``), because the container is made by the Podman service
in the agent's user manager.

The container needs no image: its root is a directory of the agent's
(``rootfs``) holding the host's ``/usr`` (and ``/bin``, ``/lib``... as on
the host: links or read-only mounts), so ``rm`` is the host's own and image
garbage collection or an image without ``rm`` cannot break removal. It has
no network, only the two capabilities ``rm`` needs, ``choo-scrub-<name>``
as its name (so never two at a time for one directory, in Podman as in this
process), the agent's label and ``LABEL_SCRUB`` (so ``sweep`` finds any a
dead agent left), a deadline, and is removed afterwards. Whether and when
to remove is the caller's (agent/adapters/files.py); nothing here raises.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from pathlib import Path

from agent.adapters.podman.containers import Containers
from agent.adapters.podman.errors import NotFound, done_once, mapped
from agent.adapters.podman.names import LABEL_AGENT
from agent.protocol.errors import ChooError

log = logging.getLogger(__name__)

#: The container's root directory, under the agent's state directory.
ROOTFS_DIR = "scrub-root"
#: Marks a scrub container; its value is the directory it deletes.
LABEL_SCRUB = "io.choo.scrub"
#: The longest one ``rm -rf`` may take before its container is killed.
SCRUB_TIMEOUT = 300.0
#: The host's top-level directories ``rm`` and its libraries may live in.
HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: Where ``rm`` is looked for (a merged /usr has both).
RM_PATHS = ("/usr/bin/rm", "/bin/rm")
#: Where the tree's parent is mounted inside the container.
TARGET = "/scrub"
#: What root of the user namespace needs to delete whatever a job made:
#: enter and empty directories it does not own, and unlink in sticky ones.
CAPS = ("DAC_OVERRIDE", "FOWNER")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")


class Scrubber:
    """Removes trees through a throwaway container, one at a time per directory.

    Args:
        podman: the Podman connection to use (its runtime and ulimits apply).
        rootfs: a directory of the agent's to serve as the container's root
            (made and kept up to date here; nothing else may use it).
        timeout: the longest one removal may run.
    """

    def __init__(self, podman: Containers, rootfs: Path, *, timeout: float = SCRUB_TIMEOUT):
        self.podman = podman
        self.rootfs = rootfs
        self.timeout = timeout
        self._in_flight: set[str] = set()
        self._changed = threading.Condition()

    def remove(self, path: Path) -> OSError | None:
        """Delete ``path`` and everything below it as root of the user namespace.

        A second call for the same directory while one runs waits for it.

        Returns:
            None when ``path`` is gone, else why not (what to do included).
        """
        name = scrub_name(path)
        with self._changed:
            while name in self._in_flight:
                self._changed.wait()
            self._in_flight.add(name)
        try:
            if not os.path.lexists(path):
                return None
            return self._remove(path, name)
        finally:
            with self._changed:
                self._in_flight.discard(name)
                self._changed.notify_all()

    def _remove(self, path: Path, name: str) -> OSError | None:
        try:
            # A container by this name is a dead agent's, or a removal that
            # failed: never two at once for one directory.
            self.podman.remove(name)
            container_id = self._create(path, name)
            self.podman.start(container_id)
            code = self._wait(container_id)
            detail = "" if code == 0 else self._output(container_id)
        except (ChooError, OSError) as exc:
            detail = exc.message if isinstance(exc, ChooError) else str(exc)
            code = None
        finally:
            try:
                self.podman.remove(name)
            except ChooError as exc:
                log.warning(
                    "scrub container %s stays until the next removal of %s or the agent's "
                    "next start: %s",
                    name,
                    path,
                    exc.message,
                )
        if not os.path.lexists(path):
            log.info("removed %s through the scrub container %s", path, name)
            return None
        status = "did not finish" if code is None else f"exit status {code}"
        return OSError(
            f"rm -rf {path} in a scrub container failed ({status}): {detail or 'no output'}"
        )

    def _create(self, path: Path, name: str) -> str:
        """Create the scrub container for ``path`` (or adopt the one a late reply made)."""
        payload = {
            "name": name,
            "rootfs": str(self.rootfs),
            "command": [_rm(), "-rf", "--", f"{TARGET}/{path.name}"],
            "user": "0:0",
            "mounts": [
                {
                    "type": "bind",
                    "source": str(path.parent),
                    "destination": TARGET,
                    "options": ["rbind"],
                },
                *self._host_mounts(),
            ],
            "labels": {LABEL_AGENT: self.podman.agent_id, LABEL_SCRUB: str(path)},
            "netns": {"nsmode": "none"},
            "cap_drop": ["ALL"],
            "cap_add": list(CAPS),
            "no_new_privileges": True,
            "log_configuration": {"driver": "k8s-file"},
            "r_limits": [
                {"type": key, "soft": soft, "hard": hard}
                for key, (soft, hard) in self.podman.ulimits.items()
            ],
        }
        if self.podman.runtime:
            payload["oci_runtime"] = self.podman.runtime

        def create() -> str | None:
            with mapped(f"create the scrub container {name}", ChooError):
                response = self.podman.client.api.post(
                    "/containers/create",
                    headers={"content-type": "application/json"},
                    data=json.dumps(payload),
                )
                response.raise_for_status()
            return response.json()["Id"]

        def made() -> str | None:
            found = self.podman.inspect(name)
            return None if found is None else found.id

        return done_once(create, made, f"create the scrub container {name}")

    def _host_mounts(self) -> list[dict]:
        """Lay out ``rootfs`` as the host's root for ``rm``: each of ``HOST_DIRS``
        that is a link on the host is the same link here, each directory a
        read-only mount (returned)."""
        self.rootfs.mkdir(mode=0o700, parents=True, exist_ok=True)
        mounts = []
        for entry in HOST_DIRS:
            host, here = Path("/", entry), self.rootfs / entry
            if host.is_symlink():
                target = os.readlink(host)
                if not here.is_symlink() or os.readlink(here) != target:
                    if here.is_symlink():
                        here.unlink()
                    elif here.is_dir():
                        here.rmdir()
                    here.symlink_to(target)
            elif host.is_dir():
                if here.is_symlink():
                    here.unlink()
                here.mkdir(exist_ok=True)
                mounts.append(
                    {
                        "type": "bind",
                        "source": str(host),
                        "destination": f"/{entry}",
                        "options": ["rbind", "ro"],
                    }
                )
        return mounts

    def _wait(self, container_id: str) -> int | None:
        """The exit status of the container, or None when it ran past the deadline."""
        with mapped(f"wait for the scrub container {container_id[:12]}"):
            response = self.podman.client.api.post(
                f"/containers/{container_id}/wait",
                params={"condition": ["exited", "stopped"], "interval": "50ms"},
                timeout=(self.podman.timeout, self.timeout),
            )
            response.raise_for_status()
        return int(response.text.strip() or -1)

    def _output(self, container_id: str) -> str:
        """What ``rm`` printed (its last lines), for the error."""
        try:
            with mapped(f"read the output of the scrub container {container_id[:12]}"):
                container = self.podman.client.containers.get(container_id)
                text = b"".join(container.logs(stdout=True, stderr=True)).decode(errors="replace")
        except (ChooError, NotFound):
            return ""
        return text.strip()[-500:]

    def sweep(self) -> list[str]:
        """Remove the scrub containers of this agent's that no removal is using
        (a dead agent's, or one whose removal failed).

        Returns:
            Their names.
        """
        try:
            with mapped("list scrub containers"):
                response = self.podman.client.api.get(
                    "/containers/json",
                    params={
                        "all": "true",
                        "filters": json.dumps({"label": [self.podman.ours, LABEL_SCRUB]}),
                    },
                )
                response.raise_for_status()
            found = [(item.get("Names") or [""])[0].lstrip("/") for item in response.json() or []]
        except ChooError as exc:
            log.warning("cannot look for stray scrub containers: %s", exc.message)
            return []
        removed = []
        for name in found:
            with self._changed:
                if name in self._in_flight:
                    continue
            try:
                self.podman.remove(name)
            except ChooError as exc:
                log.warning("cannot remove the stray scrub container %s: %s", name, exc.message)
                continue
            log.info("removed the stray scrub container %s", name)
            removed.append(name)
        return removed


def scrub_name(path: Path) -> str:
    """The scrub container's name for ``path``: ``choo-scrub-`` and the
    directory's own name (a job ID), or a hash of the path for any other."""
    if _SAFE_NAME.fullmatch(path.name):
        return f"choo-scrub-{path.name}"
    return f"choo-scrub-{hashlib.sha256(str(path).encode()).hexdigest()[:24]}"


def _rm() -> str:
    for candidate in RM_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise OSError(f"no rm on this host (looked for {', '.join(RM_PATHS)})")

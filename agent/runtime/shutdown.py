"""``stop_containers_on_exit``: the agent's running jobs stopped, and ended, on its way out.

Each running job is first recorded as stopped for the shutdown
(``stop_reason = "shutdown"``), then its container is stopped (its stop
signal, SIGKILL after the job's ``stop_timeout``) and its end recorded by the
finisher: ``cancelled`` with reason ``shutdown``, never ``failed``, never
retried (rules/outcome.py). All jobs are stopped at once, so the whole takes
about the longest grace, not their sum; a container that exits by itself
meanwhile is simply done. Whatever is not finished within the bound is
finished by the next start's recovery pass, which reads the same recorded
reason. A job still being created (no running container yet) is left to the
next start, which starts it: its command never ran.

``remove_ended_out_dirs`` runs on every way out: the /out host directories
of jobs that ended (a cancel just before the stop, say) whose cleanup the
stop cut short go at once, a local removal. The /out volumes of such jobs
(jobs running as a non-root user) are Podman calls: they are left to the
next start, whose first pass sweeps them (agent/runtime/sweeps.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.adapters.files import JobFiles
from agent.adapters.podman import ContainerState, Podman
from agent.config import Config
from agent.protocol.errors import ChooError
from agent.protocol.spec import DEFAULT_STOP_TIMEOUT
from agent.protocol.states import ACTIVE, TERMINAL
from agent.rules.outcome import SHUTDOWN
from agent.runtime.finish import Finisher
from agent.runtime.pool import BoundedPool
from agent.storage.store import Store

log = logging.getLogger(__name__)

#: Time, past the longest stop grace, left to record the ends (pack /out, remove).
FINISH_GRACE = 10.0


def stop_running_jobs(
    store: Store,
    podman: Podman,
    finisher: Finisher,
    *,
    clock: Callable[[], float],
    podman_timeout: float,
    extend: Callable[[float], None] = lambda seconds: None,
) -> int:
    """Stop every running job's container and record each job ``cancelled``/``shutdown``.

    Args:
        store: the job store.
        podman: the Podman connection (the loop has stopped using it).
        finisher: records an exited container's end and removes it.
        clock: the time, in seconds (the stop's record).
        podman_timeout: seconds one Podman call may take.
        extend: asks the service manager for that many more seconds.

    Returns:
        How many jobs were stopped.

    Raises:
        PodmanUnavailable: Podman did not answer the listing (nothing was stopped).
    """
    containers = {c.job_id: c for c in podman.list_ours() if c.job_id and c.running}
    jobs = [j for j in store.nonterminal() if j["state"] in ACTIVE and j["id"] in containers]
    if not jobs:
        return 0
    longest = max(j["spec"].get("stop_timeout", DEFAULT_STOP_TIMEOUT) for j in jobs)
    bound = longest + podman_timeout + FINISH_GRACE
    extend(bound + 5)
    log.info("stopping %d running job(s) (stop_containers_on_exit), within %.0fs", len(jobs), bound)
    now = clock()
    for job in jobs:
        # Recorded first: should the agent die mid-stop, the next start still
        # ends the job cancelled/shutdown rather than failed, and runs it never again.
        if job["stop_reason"] is None:
            store.update(job["id"], stop_reason=SHUTDOWN, stop_sent_at=now)
    pool = BoundedPool(len(jobs), grace=bound, name="shutdown")
    for job in jobs:
        pool.submit(_stop_and_finish, store, podman, finisher, job["id"], containers[job["id"]])
    pool.shutdown(wait=True)
    return len(jobs)


def _stop_and_finish(
    store: Store, podman: Podman, finisher: Finisher, job_id: str, container: ContainerState
) -> None:
    """Stop one job's container and record its end; a failure is left to the next start."""
    try:
        job = store.get(job_id)
        grace = job["spec"].get("stop_timeout", DEFAULT_STOP_TIMEOUT)
        podman.stop(container.id, grace)
        stopped = podman.inspect(container.id)
        if stopped is None:
            finisher.lost(job)
        else:
            finisher.finish(job, stopped)
    except ChooError as exc:  # Podman did not answer: expected enough for no traceback
        log.warning("job %s: %s; the next start records its end", job_id, exc.message)
    except Exception:
        # Whatever went wrong, the recorded stop reason lets the next start finish it.
        log.exception("job %s: stopping it failed; the next start records its end", job_id)


def remove_ended_out_dirs(store: Store, files: JobFiles, config: Config) -> int:
    """Remove the /out directories of jobs that ended or are unknown (the loop has stopped).

    Under ``keep_containers`` none is touched: a kept container keeps its
    /out, and only the next start's sweep, which lists the containers, can
    tell which are kept. What only a scrub container could delete (files
    chowned to a subordinate uid) is left to that sweep too: it must not
    hold the stop.

    Args:
        store: the job store (still open).
        files: the jobs' files.
        config: ``keep_containers``.

    Returns:
        How many directories were removed (0 when the database cannot be
        read: the next start's sweep removes them).
    """
    if config.keep_containers:
        return 0
    job_ids = files.out_dir_jobs()
    if not job_ids:
        return 0
    try:
        states = store.states_of(job_ids)
    except Exception as exc:  # on the way out: the next start's sweep covers it
        log.warning("cannot tell which /out directories to remove: %s", exc)
        return 0
    removed = 0
    for job_id in job_ids:
        state = states.get(job_id)
        if (state is None or state in TERMINAL) and files.out.remove(job_id, helped=False):
            removed += 1
    if removed:
        log.info("removed the /out directories of %d ended job(s)", removed)
    return removed

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
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.adapters.podman import ContainerState, Podman
from agent.protocol.errors import ChooError
from agent.protocol.spec import DEFAULT_STOP_TIMEOUT
from agent.protocol.states import ACTIVE
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

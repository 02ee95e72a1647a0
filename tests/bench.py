"""``make bench``: choo against bare Podman, measured side by side in one run.

Prints medians and ratios, never a verdict: these machines are shared and
noisy, so targets live here as figures to read, not as test assertions.

    .venv/bin/python tests/bench.py [--image REF] [--pairs N] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import IMAGE, AgentProcess, PodmanService  # noqa: E402

PODMAN_RUN = ["podman", "run", "--rm", "--runtime", "runc", "--network", "none"]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def report(title: str, ours: list[float], theirs: list[float], target: float) -> None:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    print(f"\n## {title}")
    print(f"  pairs:           {len(ours)}")
    print(f"  choo   median:   {statistics.median(ours) * 1000:8.1f} ms")
    print(f"  podman median:   {statistics.median(theirs) * 1000:8.1f} ms")
    print(
        f"  ratio  median:   {statistics.median(ratios):8.3f}  "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= {target})"
    )


def bench_run(agent: AgentProcess, image: str, pairs: int) -> None:
    """`chooctl run IMAGE true` against `podman run --rm IMAGE true`, alternating."""
    ours_argv = [*agent.chooctl_argv(), "run", image, "true"]
    theirs_argv = [*PODMAN_RUN, image, "true"]
    timed(ours_argv), timed(theirs_argv)  # warm-up: page cache, image layers
    ours, theirs = [], []
    for _ in range(pairs):
        ours.append(timed(ours_argv))
        theirs.append(timed(theirs_argv))
    report("chooctl run true vs podman run --rm true", ours, theirs, 1.25)


BENCHES = {"run": bench_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), default=sorted(BENCHES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="choo-bench-") as tmp:
        root = Path(tmp)
        service = PodmanService(root)
        service.start()
        agent_root = root / "agent"
        agent_root.mkdir()
        agent = AgentProcess(agent_root, service.url, {"log_level": "info"})
        try:
            agent.start()
            for name in args.only:
                BENCHES[name](agent, args.image, args.pairs)
        finally:
            agent.stop()
            agent.remove_containers()
            service.stop()


if __name__ == "__main__":
    main()

"""``make bench`` (client part): how long ``chooctl run`` takes before its submit leaves.

Against a real agent (its own Podman service and socket), each run of
``chooctl --socket S run IMAGE true`` is timed from just before the process is
spawned to the job's ``submitted_at`` (the agent's clock at the submit, the
same host clock), and from the job's ``ended_at`` to the process's exit (what
chooctl takes after the end). Side by side, alternated ABBA: the installed
chooctl (a plain run line is read without click), the same line forced
through click, a bare ``python -c pass`` of the same interpreter (the floor),
``podman run --rm IMAGE true`` (as tests/bench.py runs it: the ratio of the
issue's first bench row), and with ``--compare TREE`` the chooctl of another
source tree (e.g. a checkout from before a change). Then ``-X importtime``'s costliest modules of
the installed chooctl's run. Prints medians and p90s, never a verdict (the
target, under 30 ms of chooctl's own before the submit, is a figure to read).

    .venv/bin/python tests/bench_client.py [--image REF] [--runs N] [--compare TREE]
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.bench import PODMAN_RUN  # noqa: E402
from tests.harness import IMAGE, AgentProcess, PodmanService  # noqa: E402

#: chooctl's click group run as the program, as chooctl was before it had a click-free path.
_THROUGH_CLICK = "import sys; from agent.cli.group import main; main.main(prog_name='chooctl')"
#: The chooctl of another tree: its ``entry`` if it has one, else its click group.
_OTHER_TREE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); import agent.cli as c; "
    "sys.exit(c.entry() if hasattr(c, 'entry') else c.main())"
)
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"median {statistics.median(values) * 1000:7.1f} ms   "
        f"p90 {_percentile(values, 0.9) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
    )


class Variant:
    """One way of running chooctl, and what each of its runs measured."""

    def __init__(self, title: str, argv: Callable[[list[str]], list[str]], submits: bool = True):
        self.title = title
        self.argv = argv
        self.submits = submits
        self.to_submit: list[float] = []
        self.after_end: list[float] = []
        self.total: list[float] = []
        #: The process's own CPU time (user + system): what load on the machine inflates least.
        self.cpu: list[float] = []

    def once(self, agent: AgentProcess, line: list[str], record: bool = True) -> None:
        """Run it once; with ``record``, keep its figures."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start_wall, start = time.time(), time.perf_counter()
        done = subprocess.run(self.argv(line), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        total, end_wall = time.perf_counter() - start, time.time()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"bench: {self.title} failed: {done.stderr.decode()[-500:]}")
        if not record:
            return
        self.total.append(total)
        self.cpu.append(
            after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
        )
        if self.submits:
            job = agent.call("job.list", limit=1)["jobs"][0]
            self.to_submit.append(job["submitted_at"] - start_wall)
            self.after_end.append(end_wall - job["ended_at"])

    def report(self) -> None:
        print(f"  {self.title}")
        if self.submits:
            print(f"    spawn to submit:  {_ms(self.to_submit)}")
            print(f"    end to exit:      {_ms(self.after_end)}")
        print(f"    whole run:        {_ms(self.total)}")
        print(f"    its CPU time:     {_ms(self.cpu)}")


def import_costs(argv: list[str], runs: int = 5, top: int = 12) -> None:
    """``-X importtime`` of ``argv``: each module's own cost, the least of ``runs`` runs."""
    best: dict[str, int] = {}
    for _ in range(runs):
        err = subprocess.run(argv, capture_output=True, text=True).stderr
        for own, _cumulative, module in _IMPORT_LINE.findall(err):
            best[module] = min(int(own), best.get(module, 1 << 62))
    print(f"\n## -X importtime of chooctl run (each module's own time, least of {runs})")
    print(f"  modules: {len(best)}   sum: {sum(best.values()) / 1000:.1f} ms")
    for module, own in sorted(best.items(), key=lambda item: -item[1])[:top]:
        print(f"  {own / 1000:7.2f} ms  {module}")


def bench_client(agent: AgentProcess, image: str, runs: int, compare: Path | None) -> None:
    """The variants side by side, ABBA, then the import costs."""
    chooctl = agent.chooctl_argv()
    python = sys.executable
    line = ["run", image, "true"]
    variants = [
        Variant("chooctl run (installed)", lambda rest: [*chooctl, *rest]),
        Variant(
            "chooctl run through click",
            lambda rest: [python, "-c", _THROUGH_CLICK, *chooctl[1:], *rest],
        ),
        Variant("python -c pass (the floor)", lambda rest: [python, "-c", "pass"], False),
        Variant("podman run --rm true", lambda rest: [*PODMAN_RUN, image, "true"], False),
    ]
    if compare is not None:
        variants.append(
            Variant(
                f"chooctl run of {compare}",
                lambda rest: [python, "-c", _OTHER_TREE, str(compare), *chooctl[1:], *rest],
            )
        )
    for variant in variants:
        variant.once(agent, line, record=False)  # warm-up: page cache, bytecode, image
    for number in range(runs):
        for variant in variants if number % 2 == 0 else reversed(variants):
            variant.once(agent, line)
    print(f"\n## chooctl start-up: {' '.join(line)} against a real agent ({runs} runs each, ABBA)")
    for variant in variants:
        variant.report()
    podman = variants[3].total
    print("  whole run / podman run --rm true, pair by pair (target <= 1.00):")
    for variant in variants:
        if variant.submits:
            ratios = [ours / theirs for ours, theirs in zip(variant.total, podman, strict=True)]
            print(f"    {variant.title + ':':40s} median {statistics.median(ratios):.3f}")
    import_costs([python, "-X", "importtime", *chooctl, *line])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--compare", type=Path, help="another source tree's chooctl, too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="choo-bench-client-") as tmp:
        root = Path(tmp)
        service = PodmanService(root)
        service.start()
        agent = AgentProcess(root / "agent", service.url, {"log_level": "info"})
        agent.root.mkdir()
        try:
            bench_client(agent.start(), args.image, args.runs, args.compare)
        finally:
            agent.stop()
            agent.remove_containers()
            service.stop()


if __name__ == "__main__":
    main()

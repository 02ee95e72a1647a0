"""agent.rules.admission: which queued jobs may start now, and retry backoff."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agent.config import Config
from agent.rules.admission import admit, backoff
from agent.runtime import steps

NOW = 1_000_000.0


def job(
    id: str,
    state: str = "queued",
    *,
    name: str | None = None,
    priority: int = 0,
    not_before: float | None = None,
    cancel_requested: bool = False,
) -> dict:
    return {
        "id": id,
        "state": state,
        "name": name,
        "priority": priority,
        "not_before": not_before,
        "cancel_requested": cancel_requested,
    }


def ids(jobs: list[dict]) -> list[str]:
    return [j["id"] for j in jobs]


def run(jobs, max_concurrent=4, name_limits=None, now=NOW) -> list[str]:
    return ids(admit(jobs, max_concurrent=max_concurrent, name_limits=name_limits or {}, now=now))


def test_nothing_to_admit():
    assert run([]) == []


def test_admits_up_to_max_concurrent():
    jobs = [job(f"J{n:02}") for n in range(10)]
    assert run(jobs, max_concurrent=3) == ["J00", "J01", "J02"]


@pytest.mark.parametrize("active_state", ["starting", "running"])
def test_active_jobs_use_capacity(active_state):
    jobs = [job("A", active_state), job("B", active_state), job("C"), job("D")]
    assert run(jobs, max_concurrent=3) == ["C"]


def test_full_or_overfull_capacity_admits_nothing():
    queued = [job("Q1"), job("Q2")]
    assert run([job("R1", "running"), job("R2", "running"), *queued], max_concurrent=2) == []
    # max_concurrent lowered below the running count by a config reload
    running = [job(f"R{n}", "running") for n in range(5)]
    assert run([*running, *queued], max_concurrent=2) == []


def test_terminal_jobs_neither_count_nor_start():
    jobs = [job("S", "succeeded"), job("F", "failed"), job("C", "cancelled"), job("Q")]
    assert run(jobs, max_concurrent=1) == ["Q"]


def test_priority_first_then_submission_order():
    jobs = [
        job("01C", priority=0),
        job("01A", priority=0),
        job("01D", priority=5),
        job("01B", priority=-1),
        job("01E", priority=5),
    ]
    assert run(jobs, max_concurrent=10) == ["01D", "01E", "01A", "01C", "01B"]
    assert run(jobs, max_concurrent=2) == ["01D", "01E"]


def test_input_order_does_not_matter():
    jobs = [job(f"J{n:02}", priority=n % 3) for n in range(12)]
    shuffled = jobs[:]
    random.Random(7).shuffle(shuffled)
    assert run(shuffled, max_concurrent=5) == run(jobs, max_concurrent=5)


def test_per_name_limit_counts_active_jobs():
    jobs = [job("R", "running", name="build"), job("B1", name="build"), job("T1", name="test")]
    assert run(jobs, name_limits={"build": 1}) == ["T1"]


def test_per_name_limit_counts_jobs_admitted_in_the_same_pass():
    jobs = [job("B1", name="build"), job("B2", name="build"), job("B3", name="build")]
    assert run(jobs, name_limits={"build": 2}) == ["B1", "B2"]


def test_a_name_at_its_limit_does_not_block_later_jobs():
    jobs = [
        job("01A", name="build", priority=9),
        job("01B", name="build", priority=9),
        job("01C", priority=0),
        job("01D", name="test", priority=0),
    ]
    assert run(jobs, max_concurrent=3, name_limits={"build": 1}) == ["01A", "01C", "01D"]


def test_names_without_a_limit_and_unnamed_jobs_are_unconstrained():
    jobs = [job(f"B{n}", name="build") for n in range(3)] + [job(f"U{n}") for n in range(3)]
    assert run(jobs, max_concurrent=10, name_limits={"other": 1}) == ids(jobs)


def test_retry_backoff_is_respected():
    jobs = [
        job("01A", not_before=NOW + 5),
        job("01B", not_before=NOW),
        job("01C", not_before=NOW - 5),
        job("01D"),
    ]
    assert run(jobs, max_concurrent=10) == ["01B", "01C", "01D"]
    assert run(jobs, max_concurrent=10, now=NOW + 5) == ["01A", "01B", "01C", "01D"]


def test_a_backed_off_job_does_not_use_capacity():
    jobs = [job("01A", priority=9, not_before=NOW + 60), job("01B")]
    assert run(jobs, max_concurrent=1) == ["01B"]


def test_cancel_requested_jobs_are_skipped():
    jobs = [job("01A", cancel_requested=True), job("01B")]
    assert run(jobs, max_concurrent=1) == ["01B"]


def test_admit_returns_the_job_dicts_and_leaves_input_alone():
    jobs = [job("01B"), job("01A")]
    before = [dict(j) for j in jobs]
    chosen = admit(jobs, max_concurrent=2, name_limits={}, now=NOW)
    assert chosen[0] is jobs[1]
    assert jobs == before


@pytest.mark.parametrize("seed", range(25))
def test_random_job_sets_keep_every_rule(seed):
    rng = random.Random(seed)
    names = [None, "a", "b", "c"]
    limits = {"a": 1, "b": 2}
    jobs = [
        job(
            f"01{n:04}",
            rng.choice(["queued"] * 4 + ["starting", "running", "succeeded", "failed"]),
            name=rng.choice(names),
            priority=rng.randint(-2, 2),
            not_before=rng.choice([None, NOW - 1, NOW + 1]),
            cancel_requested=rng.random() < 0.1,
        )
        for n in range(rng.randint(0, 30))
    ]
    max_concurrent = rng.randint(1, 8)
    chosen = admit(jobs, max_concurrent=max_concurrent, name_limits=limits, now=NOW)

    active = [j for j in jobs if j["state"] in ("starting", "running")]
    free = max(0, max_concurrent - len(active))
    assert len(chosen) <= free
    assert len({j["id"] for j in chosen}) == len(chosen)
    for j in chosen:
        assert j["state"] == "queued" and not j["cancel_requested"]
        assert j["not_before"] is None or j["not_before"] <= NOW
    keys = [(-j["priority"], j["id"]) for j in chosen]
    assert keys == sorted(keys)
    per_name = Counter(j["name"] for j in active + chosen if j["name"])
    for name, limit in limits.items():
        # a name may already be over its limit from before; admission never adds to it
        added = sum(1 for j in chosen if j["name"] == name)
        assert added == 0 or per_name[name] <= limit

    # Greedy and complete: while capacity is left, every eligible job not
    # chosen was held back by its name's limit.
    if len(chosen) < free:
        for j in jobs:
            eligible = (
                j["state"] == "queued"
                and not j["cancel_requested"]
                and (j["not_before"] is None or j["not_before"] <= NOW)
            )
            if eligible and j not in chosen:
                assert j["name"] in limits and per_name[j["name"]] >= limits[j["name"]]


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 10.0), (1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0), (7, 360.0), (101, 360.0)],
)
def test_backoff_doubles_up_to_the_cap(attempt, expected):
    assert backoff(attempt, base=10.0, cap=360.0) == expected


def test_backoff_never_decreases():
    delays = [backoff(n, base=1.5, cap=100.0) for n in range(1, 40)]
    assert delays == sorted(delays)
    assert delays[-1] == 100.0


def _cached(job_id, state, name="build", shared=False, priority=0):
    caches = {"pip": {"path": "/root/.cache/pip", "shared": shared}}
    return {
        "id": job_id,
        "name": name,
        "state": state,
        "priority": priority,
        "cancel_requested": False,
        "not_before": None,
        "spec": {"name": name, "caches": caches},
    }


def test_one_job_at_a_time_uses_a_cache():

    running = _cached("01", "running")
    waiting = _cached("02", "queued")
    other = _cached("03", "queued", name="other")
    assert [
        j["id"] for j in admit([running, waiting, other], max_concurrent=4, name_limits={}, now=0)
    ] == ["03"]
    # Two queued users of one cache: only the first starts.
    both = [_cached("04", "queued"), _cached("05", "queued")]
    assert [j["id"] for j in admit(both, max_concurrent=4, name_limits={}, now=0)] == ["04"]
    # A shared cache is one for every name.
    shared = [
        _cached("06", "running", name="a", shared=True),
        _cached("07", "queued", name="b", shared=True),
    ]
    assert admit(shared, max_concurrent=4, name_limits={}, now=0) == []


def test_full_jitter_waits_that_part_of_the_backoff():
    assert backoff(3, base=10.0, cap=360.0, fraction=0.25) == 10.0
    assert backoff(9, base=10.0, cap=360.0, fraction=0.5) == 180.0
    assert backoff(1, base=10.0, cap=360.0, fraction=0.0) == 0.0


def test_retry_jitter_draws_the_fraction_and_off_waits_it_all(monkeypatch, tmp_path):
    config = Config(socket=tmp_path / "s", state_dir=tmp_path, retry_backoff_base=10)
    monkeypatch.setattr(steps.random, "random", lambda: 0.3)
    assert steps.retry_delay({"attempt": 2}, config) == pytest.approx(6.0)
    config.retry_jitter = False
    assert steps.retry_delay({"attempt": 2}, config) == 20.0


def test_held_jobs_and_jobs_held_back_are_never_admitted_and_take_no_capacity():
    jobs = [job("01A"), {**job("01B"), "held": True}, job("01C"), job("01D")]
    chosen = admit(jobs, max_concurrent=2, name_limits={}, now=NOW, held={"01A"})
    assert ids(chosen) == ["01C", "01D"]

"""Which images the collector chooses (pure rules), and what the store says jobs use."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.api.images import prune_images
from agent.protocol import spec as specs
from agent.protocol.errors import Unauthorized
from agent.protocol.states import State
from agent.rules.image_gc import choose, pinned

DAY = 86400.0
NOW = 1000 * DAY


def image(name, *, created_days_ago, size=100):
    return {
        "id": f"id-{name}",
        "tags": [f"localhost/{name}:latest"],
        "created": NOW - created_days_ago * DAY,
        "size": size,
    }


IMAGES = [
    image("old", created_days_ago=30),
    image("older", created_days_ago=60),
    image("used", created_days_ago=90),
    image("pinned", created_days_ago=90),
    image("new", created_days_ago=1),
    image("recently-run", created_days_ago=90),
]


def chosen(**overrides):
    args = dict(
        in_use={"id-used"},
        keep=["localhost/pin*"],
        keep_ids=set(),
        last_used={"id-recently-run": NOW - DAY / 2},
        now=NOW,
        age=7 * DAY,
        free=None,
        min_free=0,
    )
    args.update(overrides)
    return [(i["id"], why) for i, why in choose(IMAGES, **args)]


def test_unused_images_past_the_age_go_oldest_first():
    assert chosen() == [("id-older", "age"), ("id-old", "age")]


def test_an_image_in_use_pinned_new_or_recently_run_stays():
    gone = {image_id for image_id, _ in chosen(age=0.5 * DAY)}
    assert "id-used" not in gone and "id-pinned" not in gone
    assert {"id-new", "id-recently-run"} <= gone  # both past half a day
    assert "id-recently-run" not in {i for i, _ in chosen()}


def test_age_zero_never_removes_by_age():
    assert chosen(age=0) == []


def test_low_free_space_takes_the_longest_unused_until_enough():
    # 150 free, 400 wanted: the two aged ones (200), then the next longest unused.
    assert chosen(free=150, min_free=400) == [
        ("id-older", "age"),
        ("id-old", "age"),
        ("id-new", "space"),
    ]
    assert chosen(age=0, free=1000, min_free=400) == []


def test_pins_by_pattern_or_resolved_id():
    assert pinned(IMAGES[0], ["localhost/old:*"], set())
    assert pinned(IMAGES[0], [], {"id-old"})
    assert not pinned(IMAGES[0], ["localhost/old"], set())  # a pattern matches whole names


@pytest.fixture
def store(feed_store):
    """A real store (tests/unit/conftest.py's)."""
    return feed_store


def test_the_store_names_images_of_live_jobs_and_schedules(store):
    def submit(image_ref):
        spec = specs.normalize({"image": image_ref})
        return store.add_job(spec, trigger="cli", queue_limit=10)["id"]

    submit("localhost/queued")
    done = submit("localhost/done")
    store.transition(done, State.CANCELLED)
    store.add_schedule(
        name="nightly",
        cron="0 3 * * *",
        spec=specs.normalize({"image": "localhost/scheduled"}),
        created_at=0.0,
        last_fire=0.0,
    )
    assert store.images_in_use() == {"localhost/queued", "localhost/scheduled"}
    last = store.images_last_used()
    assert last["localhost/done"] >= store.get(done)["ended_at"]


def test_only_an_admin_may_prune_images():
    passes = []
    service = SimpleNamespace(
        owners=SimpleNamespace(is_admin=lambda peer: peer == "admin"),
        image_gc=SimpleNamespace(collect=lambda: passes.append(1) or {"removed": []}),
    )
    with pytest.raises(Unauthorized, match="only an admin"):
        prune_images(service, peer="alice")
    assert passes == []
    assert prune_images(service, peer="admin") == {"removed": []}

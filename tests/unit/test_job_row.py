"""Every write's first read (``_job_row``) runs a SELECT peewee built once, and
reads the row into the same model, with the same values, peewee's own
``get`` would; a transition writes back only the columns it set."""

from __future__ import annotations

import pytest

from agent.protocol.errors import NoSuchJob
from agent.protocol.states import State
from tests.unit.test_controller import submit


@pytest.fixture
def store(feed_store):
    """A real store (tests/unit/conftest.py's)."""
    return feed_store


def test_the_row_is_peewees_own_for_every_job_and_state(store):
    Job = store.models.Job
    first, second = submit(store), submit(store, env={"A": "1"})
    store.transition(second, State.STARTING, new_attempt="rpc")
    for job_id in (first, second, first):
        row = store._job_row(job_id)
        assert isinstance(row, Job)
        assert row.__data__ == Job.get(Job.id == job_id).__data__
        assert row.dirty_fields == []  # a save writes only what the caller sets


def test_an_unknown_id_is_no_such_job(store):
    submit(store)
    with pytest.raises(NoSuchJob, match="no job 0000"):
        store._job_row("0" * 26)


def test_a_transition_keeps_the_columns_it_does_not_set(store):
    job_id = submit(store, env={"A": "1"})
    before = store.get(job_id)
    after = store.transition(job_id, State.STARTING, new_attempt="rpc")
    assert (after["state"], after["attempt"]) == ("starting", before["attempt"] + 1)
    assert after["spec"] == before["spec"]
    assert store.get(job_id) == after

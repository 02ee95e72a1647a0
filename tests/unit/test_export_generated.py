"""Generated specs: whatever valid spec choo takes, every export is valid for its
engine (or refused as a loss, never an internal error), with --lossy always made."""

from __future__ import annotations

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.export import Source, export
from agent.protocol.exports import KUBERNETES_VERSION
from agent.protocol.spec import ENV_NAME_RE, LABEL_KEY_RE, NAME_RE, normalize
from tests.unit import export_corpus as corpus
from tests.unit.test_export_kubernetes import check_names_and_labels
from tests.unit.test_export_nomad import VALIDATOR

TEXT = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20
)
SPECS = st.fixed_dictionaries(
    {"image": st.sampled_from([corpus.IMAGE, "localhost/x:1", "docker.io/a/b@sha256:" + "0" * 64])},
    optional={
        "command": st.lists(TEXT, max_size=3),
        "name": st.from_regex(NAME_RE, fullmatch=True),
        "env": st.dictionaries(st.from_regex(ENV_NAME_RE, fullmatch=True), TEXT, max_size=3),
        "labels": st.dictionaries(st.from_regex(LABEL_KEY_RE, fullmatch=True), TEXT, max_size=3),
        "timeout": st.floats(0.001, 366 * 86400),
        "stop_timeout": st.floats(0, 3600),
        "retries": st.integers(0, 100),
        "priority": st.integers(-1000, 1000),
        "pull": st.sampled_from(["missing", "always", "never"]),
        "network": st.sampled_from(["none", "default"]),
        "user": st.sampled_from(["0", "1000:1000", "nobody", "65534:65534"]),
        "workdir": st.sampled_from(["/", "/src", "/a b"]),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "memory": st.integers(1, 1 << 40),
                "cpus": st.floats(0.001, 1024),
                "pids": st.integers(1, 1 << 22),
            },
        ),
    },
)
SCHEDULES = st.none() | st.fixed_dictionaries(
    {
        "name": st.from_regex(NAME_RE, fullmatch=True),
        "cron": st.sampled_from(["*/5 * * * *", "@daily", "0 3 * * 1-5"]),
        "timezone": st.sampled_from([None, "UTC", "America/New_York"]),
        "concurrency": st.sampled_from(["allow", "forbid", "replace"]),
        "catch_up": st.booleans(),
        "history_limit": st.integers(0, 1000),
    }
)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def _schemas_read_once():
    with corpus.schemas_read_once():
        yield


@SLOW
@given(SPECS, SCHEDULES, st.sampled_from(["job", "pod"]))
def test_every_kubernetes_export_is_valid(fields, schedule, kind):
    source = Source(spec=normalize(fields), schedule=schedule)
    result = export(source, to="kubernetes", hardening=corpus.hardening(), kind=kind, lossy=True)
    for doc in result["documents"]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION + ".0", strict=True)
        check_names_and_labels(doc)


@SLOW
@given(SPECS, SCHEDULES)
def test_every_nomad_export_is_valid(fields, schedule):
    source = Source(spec=normalize(fields), schedule=schedule)
    result = export(source, to="nomad", hardening=corpus.hardening(), lossy=True)
    VALIDATOR.validate(result["documents"][0])

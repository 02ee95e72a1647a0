"""DNS-1123 names and Kubernetes label rules (agent/export/names.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.export.names import dns_label, is_dns_label, is_label_key, is_label_value, secret_name
from agent.protocol.spec import NAME_RE

CHOO_NAMES = st.from_regex(NAME_RE, fullmatch=True)


def test_a_valid_name_is_kept():
    assert dns_label("nightly-build") == "nightly-build"


def test_a_changed_name_gets_a_digest_of_the_original():
    assert dns_label("Nightly_Build").startswith("nightly-build-")
    assert dns_label("a_b") != dns_label("a.b") != dns_label("a-b")


def test_the_unique_part_is_appended_within_the_limit():
    name = dns_label("x" * 80, unique="abcd1234", limit=52)
    assert len(name) <= 52 and name.endswith("-abcd1234")


def test_two_long_names_cut_short_stay_apart():
    assert dns_label("a" * 63 + "b") != dns_label("a" * 63 + "c")


def test_a_name_of_nothing_valid_still_gives_a_label():
    assert is_dns_label(dns_label("___"))


@given(CHOO_NAMES, st.sampled_from([52, 63]), st.one_of(st.none(), st.just("01jdq8z6")))
def test_every_choo_name_becomes_a_dns_label(name, limit, unique):
    assert is_dns_label(dns_label(name, limit=limit, unique=unique), limit)


@given(CHOO_NAMES, CHOO_NAMES)
def test_distinct_names_stay_distinct(a, b):
    if a != b:
        assert dns_label(a) != dns_label(b)


def test_label_keys():
    assert is_label_key("team") and is_label_key("example.com/tier") and is_label_key("a.b_c-d")
    assert not is_label_key("trailing_") and not is_label_key("Bad.Prefix/x")
    assert not is_label_key("x" * 64) and not is_label_key("")


def test_label_values():
    assert is_label_value("") and is_label_value("v1.2_3-a")
    assert not is_label_value("has space") and not is_label_value("x" * 64)
    assert not is_label_value("-leading")


def test_secret_names():
    assert secret_name("GITHUB_TOKEN") == "github-token"
    assert is_dns_label(secret_name("_X"))

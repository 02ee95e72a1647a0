"""The fault-injecting relay itself, against the real Podman service: requests
pass through untouched, and a rule delays, hangs or drops only what it names."""

from __future__ import annotations

import threading

import podman
import pytest
import requests

from tests.podman_relay import Rule

pytestmark = pytest.mark.podman


def test_requests_pass_and_only_the_chosen_replies_are_late(podman_relay, image):
    client = podman.PodmanClient(base_url=podman_relay.url, timeout=5)
    assert client.version()["Version"]
    passed = threading.Event()
    podman_relay.add(Rule("GET", r"/images/json", delay=0.5, after=lambda r: passed.set()))
    tags = [tag for i in client.images.list() for tag in i.tags or []]
    assert any(tag.startswith(image) for tag in tags)
    assert passed.is_set()
    assert podman_relay.count("GET", r"/images/json") == 1
    assert client.version()["Version"]  # unmatched requests still pass


def test_a_hung_reply_times_out_and_a_dropped_one_breaks_after_podman_acted(
    podman_relay, image, tmp_path
):
    client = podman.PodmanClient(base_url=podman_relay.url, timeout=1)
    podman_relay.add(Rule("GET", r"/version", hang=True))
    with pytest.raises((requests.exceptions.RequestException, podman.errors.APIError)):
        client.version()
    podman_relay.clear()
    assert client.version()["Version"]
    name = f"relay-drop-{tmp_path.name}"
    podman_relay.add(Rule("POST", r"/volumes/create", drop=True, when=lambda n: n == 1))
    with pytest.raises((requests.exceptions.RequestException, podman.errors.APIError)):
        client.volumes.create(name)
    try:
        assert client.volumes.exists(name)  # Podman made it; only the reply was lost
    finally:
        client.volumes.remove(name, force=True)

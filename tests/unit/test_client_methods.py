"""Every RPC method of the protocol has a typed method on agent.client.Client."""

from __future__ import annotations

import inspect

import pytest

from agent.client import Client
from agent.protocol import methods

#: Dummy values for the required params of the typed methods, by param name.
DUMMIES = {"spec": {"image": "alpine"}, "cron": "@daily"}


class Recording(Client):
    def __init__(self):
        super().__init__("/nonexistent.sock")
        self.sent: list[str] = []

    def stream(self, method, params, on_notification):
        self.sent.append(method)
        return {}


def typed_name(method: str) -> str:
    """``job.submit`` -> ``submit``, ``schedule.add`` -> ``schedule_add``,
    ``image.prune`` -> ``prune_images``."""
    group, _, leaf = method.partition(".")
    if group in ("image", "cache"):
        return f"{leaf}_{group}s"
    return f"schedule_{leaf}" if group == "schedule" else leaf


@pytest.mark.parametrize("method", methods.METHODS)
def test_each_method_has_a_typed_client_method_that_sends_it(method):
    client = Recording()
    typed = getattr(client, typed_name(method), None)
    assert typed is not None, f"Client has no method {typed_name(method)} for {method}"
    required = [
        p.name
        for p in inspect.signature(typed).parameters.values()
        if p.default is p.empty and p.kind is not p.VAR_KEYWORD
    ]
    typed(*(DUMMIES.get(name, "X") for name in required))
    assert client.sent == [method]

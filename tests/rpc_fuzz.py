"""Hypothesis strategies for fuzzing the JSON-RPC surface (unit and socket tests)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from agent.protocol import methods as protocol

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
METHODS = st.sampled_from([*protocol.METHODS, "nope", "", "job.", "agent.ping "]).filter(
    lambda m: m not in ("job.wait", "job.logs", "events.subscribe")  # may block by design
)
SCALAR_ISH = (
    st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["30s", "2h", "-1", "1e9", "512m", "9" * 40 + "g", "", "none", "default"])
)


def specs(image: str) -> st.SearchStrategy:
    """Job specs, mostly plausible, with hostile values in every field."""
    return st.fixed_dictionaries(
        {"image": st.sampled_from([image, "localhost/choo-missing:1", "Bad Image"]) | JSON},
        optional={
            "command": st.lists(st.text(max_size=5), max_size=3) | JSON,
            "name": st.text(max_size=8) | JSON,
            "env": st.dictionaries(st.text(max_size=6), st.text(max_size=6) | JSON, max_size=3),
            "secrets": st.lists(st.text(max_size=8) | JSON, max_size=3) | JSON,
            "labels": st.dictionaries(st.text(max_size=6), st.text(max_size=6) | JSON, max_size=3),
            "timeout": SCALAR_ISH | JSON,
            "stop_timeout": SCALAR_ISH,
            "resources": st.dictionaries(
                st.sampled_from(["memory", "cpus", "pids", "x"]), SCALAR_ISH
            )
            | JSON,
            "retries": SCALAR_ISH,
            "priority": SCALAR_ISH,
            "pull": SCALAR_ISH,
            "network": SCALAR_ISH,
            "workdir": st.text(max_size=8) | JSON,
            "user": st.text(max_size=8) | JSON,
            "bogus": JSON,
        },
    )


def requests(image: str) -> st.SearchStrategy:
    """Request objects, valid and not."""
    return st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2])},
        optional={
            "id": st.none() | st.integers() | st.text(max_size=5) | st.booleans() | st.floats(),
            "method": METHODS | st.integers(),
            "params": st.fixed_dictionaries({"spec": specs(image)})
            | st.dictionaries(st.sampled_from(["id", "spec", "state", "limit", "x"]), JSON)
            | st.lists(JSON, max_size=3)
            | JSON,
        },
    )


def lines(image: str) -> st.SearchStrategy:
    """Request lines as text: requests, batches, any JSON, any text."""
    return (
        requests(image).map(json.dumps)
        | st.lists(requests(image) | JSON, max_size=5).map(json.dumps)
        | JSON.map(json.dumps)
        | st.text(max_size=60)
    )


def raw_lines(image: str) -> st.SearchStrategy:
    """Request lines as bytes, including ones that are not UTF-8 (never a newline)."""
    return (
        lines(image).map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=80)
    ).map(lambda b: b.replace(b"\n", b" "))

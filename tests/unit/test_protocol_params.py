"""The params of the RPC methods: declared once (agent/protocol/params.py), made
frozen dataclasses by agent/protocol/methods.py, sent by the client as plain dicts.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import pytest

from agent.protocol import methods, params

DECLARED = [
    value
    for value in vars(params).values()
    if inspect.isclass(value) and value.__module__ == params.__name__
]


def test_there_are_declarations():
    assert len(DECLARED) >= 15


@pytest.mark.parametrize("declared", DECLARED, ids=lambda d: d.__name__)
def test_each_declaration_is_made_one_frozen_dataclass_of_its_fields(declared):
    made = getattr(methods, declared.__name__)
    assert made is getattr(methods, declared.__name__) and made is not declared
    assert dataclasses.is_dataclass(made) and made.__dataclass_params__.frozen
    assert made.__module__ == methods.__name__
    assert made.__doc__ == declared.__doc__ or declared.__doc__ is None  # else: a signature
    fields = dataclasses.fields(made)
    assert [f.name for f in fields] == list(vars(declared).get("__annotations__", {}))
    for field in fields:
        assert field.default == vars(declared).get(field.name, dataclasses.MISSING)


def test_a_params_dataclass_is_the_one_its_method_binds_and_imports_name():
    from agent.protocol.methods import SubmitParams

    assert methods.BY_NAME[methods.SUBMIT].params is SubmitParams
    assert SubmitParams(spec={}).trigger == methods.DEFAULT_TRIGGER
    with pytest.raises(dataclasses.FrozenInstanceError):
        SubmitParams(spec={}).hold = True  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = methods.Nothing


@pytest.mark.parametrize("method", methods.DEFINITIONS, ids=lambda m: m.name)
def test_a_methods_param_names_and_required_ones_are_its_dataclass_fields(method):
    fields = dataclasses.fields(method.params)
    assert method.param_names() == [f.name for f in fields]
    assert method.required() == [f.name for f in fields if f.default is dataclasses.MISSING]


def test_wire_params_keeps_what_differs_from_the_defaults_in_positional_order():
    sent = methods.wire_params(
        params.ListParams, {"all": False, "limit": methods.DEFAULT_LIST_LIMIT, "name": "n"}
    )
    assert list(sent.items()) == [("name", "n"), ("all", False)]
    assert methods.wire_params(params.JobRef, {"id": "01J"}) == {"id": "01J"}
    assert methods.wire_params(params.NoParams, {}) == {}


def test_wire_params_refuses_what_the_dataclass_would():
    with pytest.raises(TypeError, match="SubmitParams has no field 'hlod'"):
        methods.wire_params(params.SubmitParams, {"spec": {}, "hlod": True})
    with pytest.raises(TypeError, match="JobRef needs the field 'id'"):
        methods.wire_params(params.JobRef, {})


def test_wire_params_reads_a_dataclass_too():
    from agent.protocol import pausing

    sent = methods.wire_params(pausing.LimitParams, {"name": "n", "limit": None, "default": True})
    assert sent == {"name": "n", "default": True}


def test_importing_the_protocol_for_a_call_builds_no_dataclass():
    code = (
        "import sys\n"
        "from agent.protocol import methods, params\n"
        "methods.wire_params(params.SubmitParams, {'spec': {}})\n"
        "print(sorted(m for m in ('dataclasses', 'agent.protocol.types') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

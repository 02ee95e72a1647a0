"""What the agent imports before it answers: modules only some calls or
settings need are imported on first use, not at start (issue 13: start to
READY). Each check runs in a fresh interpreter, whose ``sys.modules`` is
the agent's."""

from __future__ import annotations

import subprocess
import sys

#: Modules the start-up path must not import: the exporters (``job.export``),
#: prometheus_client (``agent.metrics`` and the metrics outputs), croniter and
#: dateutil (schedules).
LAZY = (
    "agent.api.export",
    "agent.export",
    "agent.api.metrics",
    "prometheus_client",
    "croniter",
    "dateutil",
)


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _loaded(code: str) -> list[str]:
    out = _python(f"import sys\n{code}\nprint(' '.join(m for m in {LAZY!r} if m in sys.modules))")
    return out.split()


def test_importing_the_agent_imports_none_of_the_lazy_modules():
    assert _loaded("import agent.entry") == []


def test_the_lazy_modules_load_when_their_calls_need_them():
    """The guard above can fail: these are the modules the calls do import."""
    loaded = _loaded(
        "import agent.entry\n"
        "from agent.rules import schedule\n"
        "import os\n"
        "os.environ['TZ'] = 'EST+5'\n"  # a POSIX rule: dateutil reads it
        "schedule.next_fire('*/5 * * * *', 0.0)\n"
        "from types import SimpleNamespace\n"
        "from agent.api import rpc\n"
        "call = SimpleNamespace(service=None, peer=None)\n"
        "for use_case in (rpc._export, rpc._metrics):\n"
        "    try:\n"
        "        use_case(call, None)\n"
        "    except AttributeError:\n"  # no service: it failed past its import
        "        pass\n"
    )
    assert loaded == list(LAZY)


def test_no_metrics_output_configured_builds_no_registry():
    code = (
        "from types import SimpleNamespace\n"
        "from agent.daemon import Agent\n"
        "config = SimpleNamespace(metrics_textfile='', metrics_listen='', metrics_interval=15)\n"
        "agent = SimpleNamespace(config=config, store=None, controller=None)\n"
        "assert Agent._metrics_outputs(agent) is None\n"
    )
    assert _loaded(code) == []


def test_a_metrics_textfile_gets_its_writer(tmp_path):
    code = (
        "from types import SimpleNamespace\n"
        "from agent.daemon import Agent\n"
        f"config = SimpleNamespace(metrics_textfile={str(tmp_path / 'choo.prom')!r},\n"
        "    metrics_listen='', metrics_interval=15)\n"
        "agent = SimpleNamespace(config=config, store=None, controller=None)\n"
        "writer = Agent._metrics_outputs(agent)\n"
        "print(type(writer).__name__, writer.path.name)\n"
    )
    out = _python(code).split()
    assert out[:2] == ["TextfileWriter", "choo.prom"]

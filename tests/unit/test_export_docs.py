"""The export docs are true: chooctl(1)'s table names every spec and schedule field,
and the README's worked example prints what the export prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.api.checks import job_spec
from agent.config import Config
from agent.export import Hardening, Source, export
from agent.protocol.spec import FIELDS

REPO = Path(__file__).resolve().parents[2]
SCHEDULE_FIELDS = ("cron", "timezone", "concurrency", "catch_up", "history_limit")


def table_rows() -> list[str]:
    """The first words of the rows of chooctl(1)'s export table."""
    text = (REPO / "man" / "chooctl.1").read_text()
    section = text[text.index(".Ss export") : text.index(".Sh ENVIRONMENT")]
    start = section.index(".Bl -column")
    table = section[start : section.index(".El", start)]
    return [line for line in table.splitlines() if line.startswith(".It ")]


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "resources"] + list(SCHEDULE_FIELDS))
def test_the_table_has_a_row_for_every_field(field):
    assert any(re.search(rf"\bLi {field}\b", row.split(" Ta ")[0]) for row in table_rows()), field


@pytest.mark.parametrize("field", ["memory", "cpus", "pids"])
def test_the_table_has_a_row_for_every_resource(field):
    assert any(f"Li resources.{field}" in row for row in table_rows())


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Moving to Kubernetes or Nomad") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


def printed_warnings(example: str, target: str) -> list[str]:
    """The warning lines shown after the example's export to ``target``."""
    lines = example.splitlines()
    start = next(i for i, line in enumerate(lines) if "export" in line and f"--to {target}" in line)
    out = []
    for line in lines[start + 1 :]:
        if line.startswith("$ "):
            break
        out.append(line.removeprefix("chooctl: warning: "))
    return out


@pytest.mark.parametrize("target", ["kubernetes", "nomad"])
def test_the_readme_example_prints_what_the_export_prints(target):
    example = readme_example()
    assert "--no-catch-up --timezone UTC --retries 2 --memory 512m" in example
    assert "nightly '0 3 * * *' ghcr.io/acme/tools:1.4 make check" in example
    spec = {
        "image": "ghcr.io/acme/tools:1.4",
        "command": ["make", "check"],
        "retries": 2,
        "resources": {"memory": "512m"},
    }
    schedule = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "concurrency": "allow",
        "catch_up": False,
        "history_limit": 10,
    }
    result = export(
        Source(spec=job_spec(spec, Config()), schedule=schedule),
        to=target,
        hardening=Hardening.of(Config()),
    )
    assert printed_warnings(example, target) == result["warnings"]
    if target == "kubernetes":
        cron = result["documents"][0]["spec"]
        assert cron["startingDeadlineSeconds"] == 30 and cron["timeZone"] == "UTC"
        job = cron["jobTemplate"]["spec"]
        container = job["template"]["spec"]["containers"][0]
        assert job["backoffLimit"] == 2 and container["args"] == ["make", "check"]
        assert container["resources"]["limits"]["memory"] == str(512 << 20)
        assert [d["kind"] for d in result["documents"]] == ["CronJob", "NetworkPolicy"]

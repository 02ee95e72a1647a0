"""The socat + jq examples of README.md and choo-agent(8) work against a real agent.

Examples are found where a reader finds them: in README.md, every fenced
```` ```sh ```` block that uses socat; in choo-agent(8), as rendered by mandoc,
every literal display of the EXAMPLES section that uses socat, whose ``$ ``
lines are commands and whose other lines are sample output. The documented
socket path and demo image are replaced by the test agent's and the test
image, and each document's examples run in order, as a reader would run them,
with bash against one agent.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.podman

REPO = Path(__file__).resolve().parents[2]
DOC_SOCKET = "$XDG_RUNTIME_DIR/choo/agent.sock"
DOC_IMAGE = "localhost/choo-demo"


class Example:
    def __init__(self, source: str, script: str, sample: list[str]):
        self.source = source
        self.script = script
        self.sample = sample  # sample output lines shown in the docs, if any

    def __repr__(self) -> str:
        return f"{self.source}:\n{self.script}"


def readme_examples() -> list[Example]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)
    return [
        Example(f"README.md block {i}", block, [])
        for i, block in enumerate(blocks, 1)
        if "socat" in block
    ]


def man_examples() -> list[Example]:
    if shutil.which("mandoc") is None:
        pytest.fail("mandoc is not installed: use 'make test', which installs it")
    rendered = subprocess.run(
        ["mandoc", "-T", "ascii", str(REPO / "man" / "choo-agent.8")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rendered = re.sub(r".\x08", "", rendered)
    examples_section = rendered.split("\nEXAMPLES\n", 1)[1].split("\nSEE ALSO\n", 1)[0]
    # Literal displays are indented deeper than the section's prose (5 columns).
    blocks: list[list[str]] = [[]]
    for line in examples_section.splitlines():
        if line.startswith(" " * 8):
            blocks[-1].append(line.strip())
        elif blocks[-1]:
            blocks.append([])
    out = []
    for i, lines in enumerate(blocks, 1):
        if not any("socat" in line for line in lines):
            continue
        commands, sample = [], []
        continued = False
        for line in lines:
            if continued or line.startswith("$ "):
                commands.append(line if continued else line[2:])
                continued = line.endswith("\\")
            else:
                sample.append(line)
        out.append(Example(f"choo-agent.8 EXAMPLES display {i}", "\n".join(commands), sample))
    return out


def json_values(text: str) -> list[Any]:
    """Every JSON text in ``text`` (jq prints a stream of them); ValueError if not JSON."""
    decoder = json.JSONDecoder()
    values, pos, text = [], 0, text.strip()
    while pos < len(text):
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return values


def shape(value: Any) -> Any:
    """A value's structure: keys and types, not the data (IDs, counts, times vary)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def run_example(example: Example, agent, image: str, cwd: Path) -> list[Any]:
    assert DOC_SOCKET in example.script, f"example does not use {DOC_SOCKET}: {example!r}"
    script = example.script.replace(DOC_SOCKET, shlex.quote(str(agent.socket)))
    script = script.replace(DOC_IMAGE, image)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=os.environ.copy(),
    )
    where = f"{example!r}\nstdout: {done.stdout}\nstderr: {done.stderr}\nagent log:\n{agent.log()}"
    assert done.returncode == 0, where
    try:
        values = json_values(done.stdout)
    except ValueError as exc:
        raise AssertionError(f"output is not JSON ({exc}): {where}") from None
    assert values, f"no output: {where}"
    for value in values:
        assert value is not None, f"a null in the output: {where}"
        if isinstance(value, dict) and "jsonrpc" in value:
            assert "result" in value and "error" not in value, f"an error answer: {where}"
    if example.sample:
        shown = json_values("\n".join(example.sample))
        assert [shape(v) for v in values] == [shape(v) for v in shown], (
            f"the sample output has another shape than the real one: {where}"
        )
    return values


@pytest.fixture(scope="module")
def tools():
    for tool in ("socat", "jq", "bash"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: use 'make test', which installs it")


def test_the_docs_have_examples_to_run():
    assert len(readme_examples()) >= 3
    man = man_examples()
    assert len(man) >= 3
    assert any(example.sample for example in man)


def test_readme_socat_examples_work(tools, agent, image, tmp_path):
    outputs = [run_example(e, agent, image, tmp_path) for e in readme_examples()]
    methods = "\n".join(e.script for e in readme_examples())
    for method in ("agent.ping", "job.submit", "job.wait", "job.logs", "job.list"):
        assert method in methods
    assert any(
        v == "pong" or (isinstance(v, dict) and v.get("result") == "pong")
        for out in outputs
        for v in out
    )


def test_man_page_socat_examples_work(tools, agent, image, tmp_path):
    for example in man_examples():
        run_example(example, agent, image, tmp_path)

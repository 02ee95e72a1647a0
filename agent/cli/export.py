"""chooctl export: a job, schedule or spec as Kubernetes or Nomad manifests.

The agent maps (job.export); chooctl reads the spec file, writes the result
as YAML or JSON to stdout or ``-o FILE``, and each warning to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from agent.cli.group import connect
from agent.protocol.errors import InvalidParams
from agent.protocol.exports import KINDS, KUBERNETES, TARGETS


@click.command("export")
@click.argument("job_id", metavar="[ID]", required=False)
@click.option(
    "--schedule",
    "schedule",
    metavar="NAME",
    help="Export this schedule (a CronJob, or a periodic Nomad job).",
)
@click.option(
    "--spec",
    "spec_file",
    metavar="FILE",
    help="Export this job spec (JSON or YAML; '-' for stdin), checked as a submit would.",
)
@click.option("--to", "to", type=click.Choice(TARGETS), required=True, help="The engine.")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="Kubernetes: the Job (default; a CronJob for a schedule) or the bare Pod.",
)
@click.option("--json", "as_json", is_flag=True, help="Kubernetes: JSON instead of YAML.")
@click.option(
    "--lossy", is_flag=True, help="Export what has no equivalent anyway, with a warning for each."
)
@click.pass_context
def export(
    ctx: click.Context,
    job_id: str | None,
    schedule: str | None,
    spec_file: str | None,
    to: str,
    output: str | None,
    kind: str | None,
    as_json: bool,
    lossy: bool,
) -> None:
    """Print a job (by ID), a schedule or a spec as Kubernetes or Nomad manifests.

    Name exactly one of ID, --schedule NAME and --spec FILE. What the engine
    cannot do as choo does is refused, naming the field; --lossy exports it
    anyway and warns of each loss on stderr (and in the manifest).
    """
    if sum(x is not None for x in (job_id, schedule, spec_file)) != 1:
        raise click.UsageError("name exactly one of ID, --schedule NAME or --spec FILE")
    spec = _read_spec(spec_file) if spec_file is not None else None
    with connect(ctx) as client:
        result = client.export(
            to, job_id=job_id, schedule=schedule, spec=spec, kind=kind, lossy=lossy
        )
    for warning in result["warnings"]:
        click.echo(f"chooctl: warning: {warning}", err=True)
    _write(render(result, as_json=as_json), output)


def render(result: dict[str, Any], *, as_json: bool) -> str:
    """The text of an export: YAML documents, or JSON (several Kubernetes objects
    as one ``v1`` List). Nomad's is always JSON, the form its API takes."""
    documents = result["documents"]
    if result["to"] == KUBERNETES and not as_json:
        import yaml  # noqa: PLC0415 (only export needs YAML: every other command starts faster)

        return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True)
    if len(documents) == 1:
        value = documents[0]
    else:
        value = {"apiVersion": "v1", "kind": "List", "items": documents}
    return json.dumps(value, indent=2) + "\n"


def _read_spec(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise click.UsageError(f"--spec: cannot read {path}: {exc.strerror}") from None
    import yaml  # noqa: PLC0415 (as in render)

    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidParams(f"--spec: {path} is not JSON or YAML: {exc}") from None
    if not isinstance(spec, dict):
        raise InvalidParams(f"--spec: {path} holds no job spec (expected an object)")
    return spec


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    # Written beside and renamed over: a reader never sees half a manifest.
    partial = f"{output}.partial"
    try:
        Path(partial).write_text(text)
        os.replace(partial, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(partial).unlink(missing_ok=True)
        raise click.UsageError(f"-o: cannot write {output}: {exc.strerror}") from None
